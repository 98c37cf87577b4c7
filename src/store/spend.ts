import type { UsageTotals } from "../session/types.js";

/** What one owner spent on one UTC day (YYYY-MM-DD): model calls of all their sessions, destroyed ones included. */
export interface SpendRow {
  owner: string;
  day: string;
  inputTokens: number;
  outputTokens: number;
  costUsd: number;
}

/**
 * How much of one session's own spending (SessionRecord.spent) the ledger has: after a crash, a
 * session whose record holds more than its mark has the difference added, and none of it twice.
 */
export interface SpendMark {
  sessionId: string;
  inputTokens: number;
  outputTokens: number;
  costUsd: number;
}

/**
 * Owners' spending: a ledger only ever added to, kept apart from the sessions so that what a
 * destroyed or ephemeral session spent still counts against its owner's budget.
 */
export interface SpendLedger {
  /**
   * Adds each row to its owner's day and raises each session's mark to the one given, in one
   * durable write: both or neither. Durable when it resolves.
   */
  addSpend(rows: readonly SpendRow[], marks?: readonly SpendMark[]): Promise<void>;
  /** What `owner` spent on `fromDay` and the days after it; every day when `fromDay` is "". */
  spendOf(owner: string, fromDay: string): Promise<UsageTotals>;
  /** The marks the ledger has of these sessions. */
  marksOf(sessionIds: readonly string[]): Promise<Map<string, SpendMark>>;
}

export const DAY = /^\d{4}-\d{2}-\d{2}$/;

/** Rows added up in memory, by owner and day, and sessions' marks: what the memory and file stores answer from. */
export class SpendTotals {
  private readonly owners = new Map<string, Map<string, SpendRow>>();
  readonly marks = new Map<string, SpendMark>();

  /** Marks only rise: a mark is a running total. */
  mark(mark: SpendMark): void {
    const held = this.marks.get(mark.sessionId);
    if (!held) {
      this.marks.set(mark.sessionId, { ...mark });
      return;
    }
    held.inputTokens = Math.max(held.inputTokens, mark.inputTokens);
    held.outputTokens = Math.max(held.outputTokens, mark.outputTokens);
    held.costUsd = Math.max(held.costUsd, mark.costUsd);
  }

  marksOf(sessionIds: readonly string[]): Map<string, SpendMark> {
    const found = new Map<string, SpendMark>();
    for (const id of sessionIds) {
      const mark = this.marks.get(id);
      if (mark) found.set(id, { ...mark });
    }
    return found;
  }

  add(row: SpendRow): void {
    let days = this.owners.get(row.owner);
    if (!days) this.owners.set(row.owner, (days = new Map()));
    const total = days.get(row.day);
    if (!total) {
      days.set(row.day, { ...row });
      return;
    }
    total.inputTokens += row.inputTokens;
    total.outputTokens += row.outputTokens;
    total.costUsd += row.costUsd;
  }

  sum(owner: string, fromDay: string): UsageTotals {
    const total = { inputTokens: 0, outputTokens: 0, costUsd: 0 };
    for (const row of this.owners.get(owner)?.values() ?? []) {
      if (row.day < fromDay) continue;
      total.inputTokens += row.inputTokens;
      total.outputTokens += row.outputTokens;
      total.costUsd += row.costUsd;
    }
    return total;
  }

  /** One row per owner and day. */
  rows(): SpendRow[] {
    return [...this.owners.values()].flatMap((days) => [...days.values()].map((row) => ({ ...row })));
  }

  /** Owner-days and marks held. */
  get size(): number {
    let count = this.marks.size;
    for (const days of this.owners.values()) count += days.size;
    return count;
  }
}

const isCount = (n: unknown) => typeof n === "number" && Number.isFinite(n) && n >= 0;

/** A mark as read back from storage, or null when it is not one. */
export function parseSpendMark(value: unknown): SpendMark | null {
  if (typeof value !== "object" || value === null) return null;
  const mark = value as Record<string, unknown>;
  if (typeof mark.sessionId !== "string" || ![mark.inputTokens, mark.outputTokens, mark.costUsd].every(isCount)) return null;
  return { sessionId: mark.sessionId, inputTokens: mark.inputTokens as number, outputTokens: mark.outputTokens as number, costUsd: mark.costUsd as number };
}

/** A row as read back from storage, or null when it is not one (a torn or foreign line). */
export function parseSpendRow(value: unknown): SpendRow | null {
  if (typeof value !== "object" || value === null) return null;
  const row = value as Record<string, unknown>;
  const counts = [row.inputTokens, row.outputTokens, row.costUsd];
  if (typeof row.owner !== "string" || typeof row.day !== "string" || !DAY.test(row.day)) return null;
  if (!counts.every(isCount)) return null;
  return { owner: row.owner, day: row.day, inputTokens: row.inputTokens as number, outputTokens: row.outputTokens as number, costUsd: row.costUsd as number };
}
