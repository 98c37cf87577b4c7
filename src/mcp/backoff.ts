/** How long to wait before trying a server again. */
export interface Backoff {
  /** The first retry's delay. */
  baseMs: number;
  /** No retry waits longer than this. */
  maxMs: number;
}

export const DEFAULT_BACKOFF: Backoff = { baseMs: 500, maxMs: 30_000 };

/**
 * The delay before retry number `attempt` (1 for the first): doubling from baseMs up to maxMs, of
 * which the upper half is random, so servers that failed together do not all come back at once.
 */
export function retryDelayMs(backoff: Backoff, attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(backoff.maxMs, backoff.baseMs * 2 ** Math.min(Math.max(attempt - 1, 0), 30));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}
