import type { Message } from "../session/types.js";
import type { ContextOp, MessageMark } from "./types.js";

/**
 * The model's context as a function of the transcript and the operations recorded on it. Nothing
 * here changes a message: compaction, clear and rewind only move where the context starts, which
 * summary stands for the part before it, and which ranges are left out.
 */
export interface ContextView {
  /** Messages before this transcript index are not in the context. */
  start: number;
  /** The summary message standing for what came before `start`; null when there is none. */
  summaryIndex: number | null;
  /** A truncation dropped messages since the summary (or with no summary at all). */
  truncated: boolean;
  /** Rewound ranges, [from, to), left out of the context. */
  excluded: ReadonlyArray<{ from: number; to: number }>;
}

const WHOLE_TRANSCRIPT: ContextView = { start: 0, summaryIndex: null, truncated: false, excluded: [] };

/**
 * Replays the operations. A rewind to a turn gives back the context the model had when that turn
 * started (the operations recorded before it), less the turns from it on: so rewinding to a turn
 * before a compaction or a clear undoes them too.
 */
export function replay(ops: readonly ContextOp[]): ContextView {
  let view = WHOLE_TRANSCRIPT;
  ops.forEach((op, k) => {
    switch (op.type) {
      case "compact":
        view =
          op.method === "summary"
            ? { ...view, start: op.keepFrom, summaryIndex: op.summaryIndex, truncated: false }
            : { ...view, start: op.keepFrom, truncated: true };
        break;
      case "uncompact":
        // Only ever recorded right after a compaction: the context is what it was before that.
        view = replay(ops.slice(0, Math.max(0, k - 1)));
        break;
      case "clear":
        view = { start: op.at, summaryIndex: null, truncated: false, excluded: view.excluded };
        break;
      case "rewind": {
        const before = replay(ops.slice(0, k).filter((earlier) => earlier.at <= op.from));
        view = { ...before, excluded: [...before.excluded, { from: op.from, to: op.at }] };
        break;
      }
    }
  });
  return view;
}

function isExcluded(view: ContextView, index: number): boolean {
  return view.excluded.some((range) => index >= range.from && index < range.to);
}

/** The transcript indexes of the messages in the context, oldest first (the summary not included). */
export function contextIndexes(messages: readonly Message[], view: ContextView): number[] {
  const indexes: number[] = [];
  for (let i = view.start; i < messages.length; i++) if (isInContext(messages, view, i)) indexes.push(i);
  return indexes;
}

/** Whether the transcript's message `index` is in the context (the summary is not: the preamble stands for it). */
export function isInContext(messages: readonly Message[], view: ContextView, index: number): boolean {
  return index >= view.start && messages[index]!.kind !== "summary" && !isExcluded(view, index);
}

export const TRUNCATION_NOTE =
  "[Earlier messages of this conversation were left out to fit the model's context window. The messages that follow are the most recent ones, verbatim.]";

/** What stands first in the context for the part before its start: the summary, a note of a truncation, or nothing. */
export function preambleText(messages: readonly Message[], view: ContextView): string {
  const summary = view.summaryIndex === null ? undefined : messages[view.summaryIndex];
  const parts: string[] = [];
  if (summary) parts.push(summaryPreamble(summary.text));
  if (view.truncated) parts.push(TRUNCATION_NOTE);
  return parts.join("\n\n");
}

export function summaryPreamble(summary: string): string {
  return `[This conversation was compacted. A summary of its earlier part follows; the messages after it are verbatim.]\n\n<summary>\n${summary}\n</summary>`;
}

/**
 * The message that stands first in the model's context for the part before its start (the summary,
 * a truncation note); null when there is none. A user message: every provider accepts one first,
 * and one before the kept part's first user message is merged with it where roles must alternate.
 */
export function preambleMessage(messages: readonly Message[], view: ContextView): Message | null {
  const text = preambleText(messages, view);
  if (text === "") return null;
  const at = view.summaryIndex === null ? undefined : messages[view.summaryIndex];
  return { id: at?.id ?? "", role: "user", text, toolCalls: [], createdAt: at?.createdAt ?? "", turnId: at?.turnId ?? "", kind: "summary" };
}

/**
 * The messages the model is sent: the preamble in place of the part before the context's start,
 * then the context's messages. A summary made in a turn is appended after that turn's prompt in
 * the transcript, but the model sees it here, before the messages it kept.
 */
export function modelMessages(messages: readonly Message[], view: ContextView, preamble = preambleMessage(messages, view)): Message[] {
  const result: Message[] = preamble ? [preamble] : [];
  for (const i of contextIndexes(messages, view)) result.push(messages[i]!);
  return result;
}

/** How each message of a page stands towards the context, for GetMessages. */
export function messageMarks(messages: readonly Message[], view: ContextView, offset: number, count: number): MessageMark[] {
  const inContext = new Set(contextIndexes(messages, view));
  const first = view.start > 0 ? [...inContext].find((i) => i >= view.start) : undefined;
  const marks: MessageMark[] = [];
  for (let i = offset; i < offset + count && i < messages.length; i++) {
    marks.push({ inContext: inContext.has(i) || i === view.summaryIndex, contextStart: i === first, rewound: isExcluded(view, i) });
  }
  return marks;
}
