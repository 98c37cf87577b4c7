import { AgentdError } from "../errors.js";
import type { UsageTotals } from "../session/types.js";
import type { SpendLedger, SpendMark, SpendRow } from "../store/spend.js";
import { dayOf, periodAt, type BudgetPeriod } from "./budget-period.js";

/** Budgets per owner, in US dollars per period; 0 means none. */
export interface OwnerBudgets {
  period: BudgetPeriod;
  /** Every owner's budget, unless `owners` names one. */
  perOwnerUsd: number;
  owners: Readonly<Record<string, number>>;
}

/** What an owner spent in the current period, and their budget. */
export interface OwnerUsage {
  owner: string;
  usage: UsageTotals;
  /** 0: no budget. */
  budgetUsd: number;
  period: BudgetPeriod;
  periodStart: Date | null;
  /** When the budget renews; null for "total". */
  periodEnd: Date | null;
}

export interface OwnerSpendingOptions {
  /** How long spending waits in memory before it is written (one write for every model call meanwhile). */
  flushDelayMs?: number;
  /** A write that failed; it is tried again. */
  onFailure?: (error: Error, rows: number) => void;
  /** The first write that succeeded after failures. */
  onRecovery?: () => void;
  /** A read of the ledger that failed (the caller is told UNAVAILABLE). */
  onReadFailure?: (error: Error) => void;
  now?: () => Date;
}

/** Writes close() tries before it gives up on what waits. */
const CLOSING_ATTEMPTS = 3;
/**
 * How long what the ledger said of an owner is used before it is read again: reads stay off the
 * request path, and on a cluster other nodes' spending reaches this node within this time.
 */
const STORED_FRESH_MS = 1_000;
/** Owners whose stored spending is kept between reads. */
const MAX_CACHED_OWNERS = 10_000;

interface StoredSpend {
  fromDay: string;
  totals: { inputTokens: number; outputTokens: number; costUsd: number };
  atMs: number;
}

const RETRY_MAX_MS = 30_000;

/**
 * Adds every model call's usage to its owner's ledger and answers whether an owner may spend more.
 * Calls are gathered in memory for a moment and written together, so a turn does not wait for the
 * ledger; what waits is counted too when an owner's spending is read.
 */
export class OwnerSpending {
  /** Not yet written, by owner and day. */
  private pending = new Map<string, SpendRow>();
  /** Sessions' marks to raise with them (the latest running total of each). */
  private pendingMarks = new Map<string, SpendMark>();
  /** Handed to the ledger, not yet acknowledged. */
  private inflight: readonly SpendRow[] = [];
  /** What the ledger held of owners when last read; this node's own writes are added as they land. */
  private readonly stored = new Map<string, StoredSpend>();
  /** Writes that landed: a read that overlapped one is not kept (it may or may not include it). */
  private writesLanded = 0;
  private failing = false;
  private closed = false;
  private timer: NodeJS.Timeout | null = null;
  private writing: Promise<void> | null = null;
  private retryMs: number;
  private readonly flushDelayMs: number;
  private readonly now: () => Date;

  constructor(
    private readonly ledger: SpendLedger,
    private readonly budgets: OwnerBudgets,
    private readonly options: OwnerSpendingOptions = {},
  ) {
    this.flushDelayMs = options.flushDelayMs ?? 200;
    this.retryMs = this.flushDelayMs;
    this.now = options.now ?? (() => new Date());
  }

  /**
   * A model call's usage (its cost included), spent by `owner` now (or `at`); `mark`: the session
   * that spent it and its running total after it, written with it (see SpendMark).
   */
  record(owner: string, usage: Readonly<UsageTotals>, mark?: SpendMark, at?: Date): void {
    const cost = usage.costUsd ?? 0;
    if (usage.inputTokens <= 0 && usage.outputTokens <= 0 && !(cost > 0)) return;
    this.addPending({ owner, day: dayOf(at ?? this.now()), inputTokens: usage.inputTokens, outputTokens: usage.outputTokens, costUsd: cost > 0 ? cost : 0 });
    if (mark) this.addMark(mark);
    this.schedule(this.flushDelayMs);
  }

  budgetOf(owner: string): number {
    return Object.hasOwn(this.budgets.owners, owner) ? this.budgets.owners[owner]! : this.budgets.perOwnerUsd;
  }

  /**
   * What `owner` spent in the current period, written or not. A write the ledger has just taken may
   * be counted twice for a moment (in the ledger and as in flight): for a budget, too much for a
   * moment is the safe side.
   */
  async usageOf(owner: string): Promise<OwnerUsage> {
    const bounds = periodAt(this.budgets.period, this.now());
    const stored = await this.storedSpend(owner, bounds.fromDay);
    const usage = { ...stored };
    for (const row of [...this.inflight, ...this.pending.values()]) {
      if (row.owner !== owner || row.day < bounds.fromDay) continue;
      usage.inputTokens += row.inputTokens;
      usage.outputTokens += row.outputTokens;
      usage.costUsd += row.costUsd;
    }
    return { owner, usage, budgetUsd: this.budgetOf(owner), period: this.budgets.period, periodStart: bounds.start, periodEnd: bounds.end };
  }

  private async storedSpend(owner: string, fromDay: string): Promise<StoredSpend["totals"]> {
    const cached = this.stored.get(owner);
    const nowMs = Date.now();
    if (cached && cached.fromDay === fromDay && nowMs - cached.atMs < STORED_FRESH_MS) return cached.totals;
    const landed = this.writesLanded;
    const read = await this.ledger.spendOf(owner, fromDay).catch((error: unknown) => {
      const failure = error instanceof Error ? error : new Error(String(error));
      this.options.onReadFailure?.(failure);
      throw new AgentdError("unavailable", "the owners' spend ledger cannot be read right now (the server's log says why); try again", { cause: failure, retryable: true });
    });
    const totals = { inputTokens: read.inputTokens, outputTokens: read.outputTokens, costUsd: read.costUsd ?? 0 };
    if (landed === this.writesLanded) {
      if (this.stored.size >= MAX_CACHED_OWNERS) this.stored.clear();
      this.stored.set(owner, { fromDay, totals, atMs: nowMs });
    }
    return totals;
  }

  /** A write landed: the owners' stored spending, as kept, includes it now. */
  private landed(rows: readonly SpendRow[]): void {
    this.writesLanded++;
    for (const row of rows) {
      const cached = this.stored.get(row.owner);
      if (!cached || row.day < cached.fromDay) continue;
      cached.totals.inputTokens += row.inputTokens;
      cached.totals.outputTokens += row.outputTokens;
      cached.totals.costUsd += row.costUsd;
    }
  }

  /** Rejects with RESOURCE_EXHAUSTED once `owner` has spent their budget for the period. */
  async check(owner: string): Promise<void> {
    if (!(this.budgetOf(owner) > 0)) return;
    const spent = await this.usageOf(owner);
    if ((spent.usage.costUsd ?? 0) < spent.budgetUsd) return;
    const per = spent.period === "total" ? "in all" : `per ${spent.period}`;
    const renews = spent.periodEnd ? `It renews at ${spent.periodEnd.toISOString()}; to go on sooner, ask` : "To go on, ask";
    const setting = Object.hasOwn(this.budgets.owners, owner) ? `budgets.owners[${JSON.stringify(owner)}]` : "budgets.perOwnerUsd";
    throw new AgentdError(
      "resource_exhausted",
      `owner ${JSON.stringify(owner)} has spent their budget (${spent.budgetUsd} USD ${per}; spent ${(spent.usage.costUsd ?? 0).toFixed(6)} USD). ${renews} the operator to raise ${setting} in the server's configuration`,
    );
  }

  /** Writes what waits; resolves when the ledger has it (or the write failed and was put back). */
  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.writing) return this.writing.then(() => (this.pending.size > 0 || this.pendingMarks.size > 0 ? this.flush() : undefined));
    if (this.pending.size === 0 && this.pendingMarks.size === 0) return Promise.resolve();
    const rows = [...this.pending.values()];
    const marks = [...this.pendingMarks.values()];
    this.pending = new Map();
    this.pendingMarks = new Map();
    this.inflight = rows;
    this.writing = this.ledger.addSpend(rows, marks).then(
      () => {
        this.inflight = [];
        this.landed(rows);
        this.retryMs = this.flushDelayMs;
        if (this.failing) this.options.onRecovery?.();
        this.failing = false;
      },
      (error: unknown) => {
        // Put back (added to what came meanwhile) and tried again later, less often while it fails.
        this.inflight = [];
        for (const row of rows) this.addPending(row);
        for (const mark of marks) this.addMark(mark);
        this.failing = true;
        this.options.onFailure?.(error instanceof Error ? error : new Error(String(error)), rows.length);
        this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
      },
    );
    return this.writing.finally(() => {
      this.writing = null;
      if ((this.pending.size > 0 || this.pendingMarks.size > 0) && !this.closed) this.schedule(this.retryMs);
    });
  }

  /**
   * Writes what waits (trying a few times) and stops; returns the owner-days whose spending could
   * not be written, which are lost.
   */
  async close(): Promise<number> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (let attempt = 0; attempt < CLOSING_ATTEMPTS && (this.pending.size > 0 || this.pendingMarks.size > 0 || this.writing); attempt++) await this.flush();
    return this.pending.size;
  }

  /** Owner-days waiting to be written (a crash now leaves them to the sessions' marks to restore, see SpendMark). */
  get pendingRows(): number {
    return this.pending.size;
  }

  /** A running total: the highest one stands. */
  private addMark(mark: SpendMark): void {
    const held = this.pendingMarks.get(mark.sessionId);
    if (!held || mark.costUsd >= held.costUsd && mark.inputTokens >= held.inputTokens && mark.outputTokens >= held.outputTokens) this.pendingMarks.set(mark.sessionId, mark);
  }

  private addPending(row: SpendRow): void {
    const key = `${row.owner}\u0000${row.day}`;
    const waiting = this.pending.get(key);
    if (!waiting) {
      this.pending.set(key, row);
      return;
    }
    waiting.inputTokens += row.inputTokens;
    waiting.outputTokens += row.outputTokens;
    waiting.costUsd += row.costUsd;
  }

  private schedule(delayMs: number): void {
    if (this.timer || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.flush();
    }, delayMs);
    this.timer.unref();
  }
}
