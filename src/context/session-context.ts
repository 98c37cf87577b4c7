import { notify, type ChangeListener } from "../session/extensions.js";
import type { Message } from "../session/types.js";
import type { ContextOp, ContextRecord } from "./types.js";
import { isInContext, modelMessages, preambleMessage, replay, type ContextView } from "./view.js";

interface CachedView {
  ops: number;
  view: ContextView;
  preamble?: Message | null;
  /** The model's messages of the transcript `of`, through its first `upTo` messages. */
  sent?: { of: readonly Message[]; upTo: number; list: Message[] };
}

const NO_OPS: ContextOp[] = Object.freeze([]) as unknown as ContextOp[];

/**
 * A session's record of its model context: the operations done on it and the last model call's
 * reported size. The session owns one; the context service decides what to record.
 */
export class SessionContext {
  private ops: ContextOp[];
  private last: ContextRecord["lastCall"];
  /** The view and its preamble (built on first use), until the next operation; the preamble is kept so its tokens are counted once. */
  private cached: CachedView | null = null;
  /** A CompactSession is summarising: no turn may start meanwhile. */
  compacting = false;

  constructor(
    record: ContextRecord | undefined,
    private readonly onChange: ChangeListener,
    /** The transcript's length: a store that restored fewer messages (a damaged file) drops what came after. */
    messageCount = Number.MAX_SAFE_INTEGER,
  ) {
    // Operations recorded past the transcript restored would leave the model an empty context.
    const ops = record?.ops ?? NO_OPS;
    const kept = ops.findIndex((op) => op.at > messageCount);
    // Shared and empty until the first operation.
    this.ops = ops.length === 0 || kept === 0 ? NO_OPS : kept < 0 ? [...ops] : ops.slice(0, kept);
    const last = record?.lastCall ?? null;
    this.last = last && last.at <= messageCount && last.ops <= this.ops.length ? last : null;
  }

  get operations(): readonly ContextOp[] {
    return this.ops;
  }

  get lastCall(): ContextRecord["lastCall"] {
    return this.last;
  }

  view(): ContextView {
    return this.current().view;
  }

  /**
   * What the model is sent of this transcript (the session's own: the preamble is kept for it).
   * The transcript only grows, so the list is kept and extended with the messages appended since
   * the last call: a model call's cost does not grow with the history. Read-only to callers.
   */
  modelMessages(messages: readonly Message[]): readonly Message[] {
    const current = this.current();
    if (current.preamble === undefined) current.preamble = preambleMessage(messages, current.view);
    const sent = current.sent;
    if (sent && sent.of === messages && sent.upTo <= messages.length) {
      for (let i = Math.max(sent.upTo, current.view.start); i < messages.length; i++) {
        if (isInContext(messages, current.view, i)) sent.list.push(messages[i]!);
      }
      sent.upTo = messages.length;
      return sent.list;
    }
    const list = modelMessages(messages, current.view, current.preamble);
    current.sent = { of: messages, upTo: messages.length, list };
    return list;
  }

  private current(): CachedView {
    if (this.cached?.ops !== this.ops.length) this.cached = { ops: this.ops.length, view: replay(this.ops) };
    return this.cached;
  }

  apply(op: ContextOp): void {
    if (this.ops === NO_OPS) this.ops = [];
    this.ops.push(op);
    this.changed();
  }

  /** A model call's reported input tokens, for a transcript of `at` messages. */
  recordCall(inputTokens: number, at: number): void {
    if (inputTokens <= 0) return;
    this.last = { inputTokens, at, ops: this.ops.length };
    this.changed();
  }

  private changed(): void {
    notify(this.onChange);
  }

  /** Undefined while nothing was recorded, so records of sessions that never used it stay as they were. */
  toRecord(): ContextRecord | undefined {
    if (this.ops.length === 0 && this.last === null) return undefined;
    return { ops: structuredClone(this.ops), lastCall: this.last ? { ...this.last } : null };
  }
}
