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
 * Owners' spending: a ledger only ever added to, kept apart from the sessions so that what a
 * destroyed or ephemeral session spent still counts against its owner's budget.
 */
export interface SpendLedger {
  /** Adds each row to its owner's day; durable when it resolves. */
  addSpend(rows: readonly SpendRow[]): Promise<void>;
  /** What `owner` spent on `fromDay` and the days after it; every day when `fromDay` is "". */
  spendOf(owner: string, fromDay: string): Promise<UsageTotals>;
}

export const DAY = /^\d{4}-\d{2}-\d{2}$/;

/** Rows added up in memory, by owner and day: what the memory and file stores answer `spendOf` from. */
export class SpendTotals {
  private readonly owners = new Map<string, Map<string, SpendRow>>();

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

  get size(): number {
    let count = 0;
    for (const days of this.owners.values()) count += days.size;
    return count;
  }
}

/** A row as read back from storage, or null when it is not one (a torn or foreign line). */
export function parseSpendRow(value: unknown): SpendRow | null {
  if (typeof value !== "object" || value === null) return null;
  const row = value as Record<string, unknown>;
  const counts = [row.inputTokens, row.outputTokens, row.costUsd];
  if (typeof row.owner !== "string" || typeof row.day !== "string" || !DAY.test(row.day)) return null;
  if (!counts.every((n) => typeof n === "number" && Number.isFinite(n) && n >= 0)) return null;
  return { owner: row.owner, day: row.day, inputTokens: row.inputTokens as number, outputTokens: row.outputTokens as number, costUsd: row.costUsd as number };
}
