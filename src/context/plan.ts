import type { Message } from "../session/types.js";
import { contextIndexes, type ContextView } from "./view.js";

/** Whole turns kept verbatim by a compaction, at most. */
export const KEEP_TURNS = 2;
/** The share of a known context window the verbatim tail may take, at most. */
export const KEEP_WINDOW_SHARE = 0.25;

export interface CompactionPlan {
  /** The context's messages that the summary replaces (or a truncation drops), oldest first. */
  head: Message[];
  /** The transcript index of the first message kept verbatim. */
  keepFrom: number;
  /** How many context messages stay verbatim. */
  kept: number;
}

/**
 * Where to cut the context: the older part goes, the newest part stays verbatim. The cut is made
 * only where no tool call is separated from its result and the kept part starts with a user or an
 * assistant message. It prefers turn boundaries, keeping at most KEEP_TURNS whole turns, within
 * `keepTokens` when the window is known; when even the newest turn is too big (one long turn of
 * tool calls), it cuts inside that turn between steps, keeping the newest steps that fit, at least
 * the last one. With `wholeNewestTurn`, it cuts inside the newest turn only when that is too big:
 * a CompactSession that would summarise just the prompt of a session's only turn has nothing to do.
 * Null when there is nothing older to cut.
 */
export function planCompaction(
  messages: readonly Message[],
  view: ContextView,
  options: { keepTokens: number | null; tokensOf: (message: Message) => number; keepTurns?: number; wholeNewestTurn?: boolean },
): CompactionPlan | null {
  const indexes = contextIndexes(messages, view);
  const keepTurns = options.keepTurns ?? KEEP_TURNS;
  // Safe cuts: positions k (1..n-1) in `indexes` where everything before k is answered.
  const open = new Set<string>();
  const safe: number[] = [];
  indexes.forEach((index, k) => {
    const message = messages[index]!;
    if (k > 0 && open.size === 0 && message.role !== "tool") safe.push(k);
    for (const call of message.toolCalls) open.add(call.id);
    if (message.toolResult) open.delete(message.toolResult.callId);
  });
  if (safe.length === 0) return null;
  // Tokens of the tail from each position on.
  const tail = new Array<number>(indexes.length + 1).fill(0);
  for (let k = indexes.length - 1; k >= 0; k--) tail[k] = tail[k + 1]! + options.tokensOf(messages[indexes[k]!]!);
  const fits = (k: number) => options.keepTokens === null || tail[k]! <= options.keepTokens;
  const isTurnStart = (k: number) => messages[indexes[k]!]!.role === "user";

  let cut: number | undefined;
  // Turn boundaries, newest first: take the earliest that keeps at most keepTurns turns and fits.
  let turns = 0;
  for (let s = safe.length - 1; s >= 0; s--) {
    const k = safe[s]!;
    if (!isTurnStart(k)) continue;
    turns++;
    if (turns > keepTurns || !fits(k)) break;
    cut = k;
  }
  if (cut === undefined) {
    // Inside the newest turn: the earliest step boundary that fits, or else the last one.
    const lastTurnStart = [...indexes.keys()].reverse().find((k) => isTurnStart(k)) ?? 0;
    if (options.wholeNewestTurn && fits(lastTurnStart)) return null;
    const steps = safe.filter((k) => k > lastTurnStart || (k === lastTurnStart && k > 0));
    cut = steps.find((k) => fits(k)) ?? steps.at(-1) ?? safe.at(-1)!;
  }
  return { head: indexes.slice(0, cut).map((i) => messages[i]!), keepFrom: indexes[cut]!, kept: indexes.length - cut };
}
