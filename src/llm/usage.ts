/** The most tokens one count may hold: far beyond any model, and exact as a double and as an int64. */
export const MAX_TOKEN_COUNT = 1e12;

/**
 * A token count a provider reported, made safe to add and to store: what is not a finite,
 * non-negative number counts as 0, and counts are whole and capped, so a server that reports
 * 1e300 cannot make a session unserialisable.
 */
export function tokenCount(value: number): number {
  if (!Number.isFinite(value) || value <= 0) return 0;
  return Math.min(Math.floor(value), MAX_TOKEN_COUNT);
}
