import { invalidArgument } from "../errors.js";

/** Clamps a requested page size: 0 means the default, large values are reduced to the maximum. */
export function pageSize(requested: number, fallback: number, max = 1000): number {
  if (!Number.isInteger(requested) || requested < 0) {
    throw invalidArgument(`page_size must be zero or a positive integer, got ${requested}`);
  }
  return requested === 0 ? fallback : Math.min(requested, max);
}

/** Page tokens are opaque to clients; inside they carry a cursor of a known kind. */
export function encodePageToken(kind: string, cursor: string): string {
  return Buffer.from(JSON.stringify({ k: kind, c: cursor })).toString("base64url");
}

export function decodePageToken(kind: string, token: string): string | null {
  if (token === "") return null;
  try {
    const parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as { k?: unknown; c?: unknown };
    if (parsed.k === kind && typeof parsed.c === "string") return parsed.c;
  } catch {
    // falls through to the error below
  }
  throw invalidArgument("page_token is not valid here; pass the next_page_token of a previous response, or nothing");
}

/** A limit on a page's size in bytes, as an edge measures its items (its message size limit). */
export interface PageBudget<T> {
  sizeOf(item: T): number;
  maxBytes: number;
}

/** The longest prefix of `items` within the budget; never empty when `items` is not. */
export function fitToBudget<T>(items: readonly T[], budget: PageBudget<T> | undefined): readonly T[] {
  if (!budget) return items;
  let used = 0;
  for (let i = 0; i < items.length; i++) {
    used += budget.sizeOf(items[i]!);
    if (used > budget.maxBytes && i > 0) return items.slice(0, i);
  }
  return items;
}
