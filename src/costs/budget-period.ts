/** How long an owner's budget lasts: a UTC calendar day or month, or for ever. */
export const BUDGET_PERIODS = ["day", "month", "total"] as const;
export type BudgetPeriod = (typeof BUDGET_PERIODS)[number];

/** The current period at `now`: its first day (YYYY-MM-DD, "" for total) and its bounds (null for total). */
export interface PeriodBounds {
  fromDay: string;
  start: Date | null;
  /** When the budget renews. */
  end: Date | null;
}

export function periodAt(period: BudgetPeriod, now: Date): PeriodBounds {
  const year = now.getUTCFullYear();
  const month = now.getUTCMonth();
  switch (period) {
    case "total":
      return { fromDay: "", start: null, end: null };
    case "day": {
      const start = new Date(Date.UTC(year, month, now.getUTCDate()));
      return { fromDay: dayOf(start), start, end: new Date(start.getTime() + 86_400_000) };
    }
    case "month": {
      const start = new Date(Date.UTC(year, month, 1));
      return { fromDay: dayOf(start), start, end: new Date(Date.UTC(year, month + 1, 1)) };
    }
  }
}

/** The UTC day of `date`, as the spend ledger keys it. */
export function dayOf(date: Date): string {
  return date.toISOString().slice(0, 10);
}
