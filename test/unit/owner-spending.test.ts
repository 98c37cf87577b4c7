import { describe, expect, it } from "vitest";
import { periodAt } from "../../src/costs/budget-period.js";
import { OwnerSpending } from "../../src/costs/owner-spending.js";
import { MemoryStore } from "../../src/store/memory-store.js";
import type { SpendMark, SpendRow } from "../../src/store/spend.js";
import { AgentdError } from "../../src/errors.js";

const at = (iso: string) => new Date(iso);

describe("budget periods (UTC calendar)", () => {
  it("a day runs from midnight to midnight, a month from its first day to the next month's, total has no bounds", () => {
    expect(periodAt("day", at("2026-11-26T23:59:59.999Z"))).toEqual({ fromDay: "2026-11-26", start: at("2026-11-26T00:00:00Z"), end: at("2026-11-27T00:00:00Z") });
    expect(periodAt("month", at("2026-12-31T12:00:00Z"))).toEqual({ fromDay: "2026-12-01", start: at("2026-12-01T00:00:00Z"), end: at("2027-01-01T00:00:00Z") });
    expect(periodAt("month", at("2028-02-29T00:00:00Z")).end).toEqual(at("2028-03-01T00:00:00Z"));
    expect(periodAt("total", at("2026-11-26T00:00:00Z"))).toEqual({ fromDay: "", start: null, end: null });
  });
});

/** A ledger that fails while `failing` is set, and counts the rows it was handed. */
class FlakyLedger extends MemoryStore {
  failing = false;
  written: SpendRow[] = [];
  override async addSpend(rows: readonly SpendRow[], marks?: readonly SpendMark[]): Promise<void> {
    if (this.failing) throw new Error("disk full (simulated)");
    this.written.push(...rows);
    await super.addSpend(rows, marks);
  }
}

describe("OwnerSpending", () => {
  it("counts what waits to be written and what was, by period; days before the period do not count", async () => {
    let now = at("2026-11-30T23:00:00Z");
    const ledger = new MemoryStore();
    const spending = new OwnerSpending(ledger, { period: "day", perOwnerUsd: 1, owners: { vip: 0 } }, { now: () => now, flushDelayMs: 60_000 });
    spending.record("alice", { inputTokens: 10, outputTokens: 5, costUsd: 0.5 });
    spending.record("alice", { inputTokens: 1, outputTokens: 1 });
    spending.record("alice", { inputTokens: 0, outputTokens: 0 });
    expect(spending.pendingRows).toBe(1);
    expect((await spending.usageOf("alice")).usage).toEqual({ inputTokens: 11, outputTokens: 6, costUsd: 0.5 });
    await spending.flush();
    expect(spending.pendingRows).toBe(0);
    expect(await ledger.spendOf("alice", "")).toEqual({ inputTokens: 11, outputTokens: 6, costUsd: 0.5 });

    now = at("2026-12-01T00:30:00Z");
    spending.record("alice", { inputTokens: 2, outputTokens: 2, costUsd: 0.25 });
    const today = await spending.usageOf("alice");
    expect(today.usage).toEqual({ inputTokens: 2, outputTokens: 2, costUsd: 0.25 });
    expect(today.periodEnd).toEqual(at("2026-12-02T00:00:00Z"));
    expect(today.budgetUsd).toBe(1);
    expect((await spending.usageOf("vip")).budgetUsd).toBe(0);
    await spending.close();
  });

  it("refuses an owner whose budget is spent, with what was spent and when it renews; others go on", async () => {
    const now = at("2026-11-26T10:00:00Z");
    const spending = new OwnerSpending(new MemoryStore(), { period: "month", perOwnerUsd: 1, owners: { bob: 2, free: 0 } }, { now: () => now });
    spending.record("alice", { inputTokens: 1, outputTokens: 1, costUsd: 0.999 });
    await expect(spending.check("alice")).resolves.toBeUndefined();
    spending.record("alice", { inputTokens: 1, outputTokens: 1, costUsd: 0.001 });
    const refused = await spending.check("alice").catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(AgentdError);
    expect((refused as AgentdError).kind).toBe("resource_exhausted");
    expect((refused as AgentdError).message).toBe(
      'owner "alice" has spent their budget (1 USD per month; spent 1.000000 USD). It renews at 2026-12-01T00:00:00.000Z; to go on sooner, ask the operator to raise budgets.perOwnerUsd in the server\'s configuration',
    );
    spending.record("bob", { inputTokens: 1, outputTokens: 1, costUsd: 1.5 });
    await expect(spending.check("bob")).resolves.toBeUndefined();
    spending.record("bob", { inputTokens: 1, outputTokens: 1, costUsd: 0.5 });
    await expect(spending.check("bob")).rejects.toThrow(/budgets\.owners\["bob"\]/);
    spending.record("free", { inputTokens: 1, outputTokens: 1, costUsd: 1_000 });
    await expect(spending.check("free")).resolves.toBeUndefined();
    await spending.close();
  });

  it("a failed write is kept and written later, once: nothing is lost or counted twice", async () => {
    const ledger = new FlakyLedger();
    const failures: number[] = [];
    const spending = new OwnerSpending(ledger, { period: "total", perOwnerUsd: 0, owners: {} }, { flushDelayMs: 5, onFailure: (_error, rows) => failures.push(rows) });
    ledger.failing = true;
    spending.record("alice", { inputTokens: 10, outputTokens: 0, costUsd: 1 });
    await spending.flush();
    expect(failures).toEqual([1]);
    // Still counted while it waits, and what comes meanwhile joins it.
    spending.record("alice", { inputTokens: 5, outputTokens: 0, costUsd: 0.5 });
    expect((await spending.usageOf("alice")).usage).toEqual({ inputTokens: 15, outputTokens: 0, costUsd: 1.5 });
    ledger.failing = false;
    // The retry comes by itself.
    await expect.poll(() => spending.pendingRows, { timeout: 2_000 }).toBe(0);
    expect(ledger.written).toEqual([{ owner: "alice", day: expect.any(String), inputTokens: 15, outputTokens: 0, costUsd: 1.5 }]);
    expect((await spending.usageOf("alice")).usage).toEqual({ inputTokens: 15, outputTokens: 0, costUsd: 1.5 });
    await spending.close();
  });

  it("counts a write under way (never less than was spent), and close() says what it could not write", async () => {
    let release: () => void = () => {};
    const ledger = new FlakyLedger();
    const slow = Object.assign(Object.create(ledger) as FlakyLedger, {
      addSpend: (rows: readonly SpendRow[], marks?: readonly SpendMark[]) => new Promise<void>((resolve) => (release = () => resolve(ledger.addSpend(rows, marks)))),
    });
    const spending = new OwnerSpending(slow, { period: "total", perOwnerUsd: 1, owners: {} }, { flushDelayMs: 60_000 });
    spending.record("alice", { inputTokens: 1, outputTokens: 0, costUsd: 5 });
    const writing = spending.flush();
    expect((await spending.usageOf("alice")).usage.costUsd).toBe(5);
    await expect(spending.check("alice")).rejects.toThrow(/has spent their budget/);
    release();
    await writing;
    expect((await spending.usageOf("alice")).usage.costUsd).toBe(5);

    // A ledger that keeps failing: close() tries a few times, then reports the owner-days it lost.
    ledger.failing = true;
    const failing = new OwnerSpending(ledger, { period: "total", perOwnerUsd: 0, owners: {} }, { flushDelayMs: 5 });
    failing.record("bob", { inputTokens: 1, outputTokens: 0, costUsd: 1 });
    failing.record("carol", { inputTokens: 1, outputTokens: 0, costUsd: 1 });
    expect(await failing.close()).toBe(2);
  });

  it("reads the ledger at most once a second per owner, and counts its own writes meanwhile", async () => {
    const ledger = new FlakyLedger();
    let reads = 0;
    const counting = Object.assign(Object.create(ledger) as FlakyLedger, {
      spendOf: (owner: string, fromDay: string) => {
        reads++;
        return ledger.spendOf(owner, fromDay);
      },
    });
    // Another node's spending, already in the shared ledger.
    await ledger.addSpend([{ owner: "alice", day: "2026-11-26", inputTokens: 1, outputTokens: 0, costUsd: 2 }]);
    const spending = new OwnerSpending(counting, { period: "total", perOwnerUsd: 0, owners: {} }, { flushDelayMs: 60_000 });
    for (let i = 0; i < 5; i++) expect((await spending.usageOf("alice")).usage.costUsd).toBe(2);
    expect(reads).toBe(1);
    spending.record("alice", { inputTokens: 1, outputTokens: 0, costUsd: 3 });
    await spending.flush();
    expect((await spending.usageOf("alice")).usage.costUsd).toBe(5);
    expect(reads).toBe(1);
    // Past a second, the ledger is read again: what other nodes added since shows.
    await ledger.addSpend([{ owner: "alice", day: "2026-11-26", inputTokens: 1, outputTokens: 0, costUsd: 10 }]);
    await new Promise((resolve) => setTimeout(resolve, 1_050));
    expect((await spending.usageOf("alice")).usage.costUsd).toBe(15);
    expect(reads).toBe(2);
    await spending.close();
  });
});
