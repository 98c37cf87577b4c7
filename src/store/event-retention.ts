import type { EventRetention } from "./types.js";

/**
 * Where a session's retained events start: the newest ones within both bounds (count and bytes),
 * and always at least the newest one. `bytesOf(i)` is the stored size of the i-th oldest event.
 */
export function retainedFrom(count: number, bytesOf: (index: number) => number, retention: EventRetention): number {
  let start = count;
  let bytes = 0;
  while (start > 0 && count - start < retention.maxEvents) {
    const next = bytes + bytesOf(start - 1);
    if (next > retention.maxBytes && start < count) break;
    bytes = next;
    start--;
  }
  return start;
}

/** The first index in [from, to) whose sequence (ascending) is above `after`. */
export function firstAfter(sequenceAt: (index: number) => number, after: number, from: number, to: number): number {
  let low = from;
  let high = to;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (sequenceAt(middle) > after) high = middle;
    else low = middle + 1;
  }
  return low;
}
