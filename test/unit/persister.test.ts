import { describe, expect, it } from "vitest";
import type { UsageTotals } from "../../src/session/types.js";
import type { SpendMark } from "../../src/store/spend.js";
import type { SessionEvent } from "../../src/events/types.js";
import type { SessionRecord } from "../../src/store/record.js";
import { sessionRecord } from "../helpers/records.js";
import { Persister } from "../../src/store/persister.js";
import type { LoadResult, ReadEventsResult, SessionStore } from "../../src/store/types.js";
import { waitFor } from "../helpers/harness.js";

/** A snapshot callback for a record with no new events. */
const record = (id: string, lastSequence?: number) => ({ record: sessionRecord(id, lastSequence), events: [] as SessionEvent[] });
const event = (sequence: number): SessionEvent => ({ sessionId: "a", sequence, timeMs: 0, turnId: "", payload: { type: "state_changed", state: "idle" } });

/** A store whose writes take as long as the test says, recording what was written and when. */
class RecordingStore implements SessionStore {
  saves: Array<{ id: string; seq: number }> = [];
  events: number[][] = [];
  deletes: string[] = [];
  concurrent = 0;
  maxConcurrent = 0;
  failNext = 0;
  delayMs = 0;
  async loadAll(): Promise<LoadResult> {
    return { records: [], failures: [] };
  }
  async readEvents(): Promise<ReadEventsResult> {
    return { events: [], oldest: 0 };
  }
  async addSpend(): Promise<void> {}
  async marksOf(): Promise<Map<string, SpendMark>> {
    return new Map<string, SpendMark>();
  }
  async spendOf(): Promise<UsageTotals> {
    return { inputTokens: 0, outputTokens: 0 };
  }
  async save(r: SessionRecord, events: readonly SessionEvent[]): Promise<void> {
    this.concurrent++;
    this.maxConcurrent = Math.max(this.maxConcurrent, this.concurrent);
    await new Promise((resolve) => setTimeout(resolve, this.delayMs));
    this.concurrent--;
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error("disk full");
    }
    this.saves.push({ id: r.id, seq: r.lastSequence });
    this.events.push(events.map((e) => e.sequence));
  }
  async delete(id: string): Promise<void> {
    this.deletes.push(id);
  }
}

const options = { debounceMs: 5, retryBaseMs: 10, retryMaxMs: 40 };
const quiet = { onFailure: () => {}, onSuccess: () => {} };

describe("Persister", () => {
  it("coalesces a burst of changes into one write of the latest state", async () => {
    const store = new RecordingStore();
    const persister = new Persister(store, options, quiet);
    let seq = 0;
    for (let i = 0; i < 100; i++) {
      seq++;
      persister.markDirty("a", () => record("a", seq));
    }
    await persister.flush();
    expect(store.saves).toEqual([{ id: "a", seq: 100 }]);
  });

  it("never writes one session twice at once, and writes the changes made during a write afterwards", async () => {
    const store = new RecordingStore();
    store.delayMs = 30;
    const persister = new Persister(store, { ...options, debounceMs: 0 }, quiet);
    let seq = 1;
    persister.markDirty("a", () => record("a", seq));
    await new Promise((resolve) => setTimeout(resolve, 10));
    seq = 2;
    persister.markDirty("a", () => record("a", seq));
    seq = 3;
    persister.markDirty("a", () => record("a", seq));
    await new Promise((resolve) => setTimeout(resolve, 100));
    await persister.flush();
    expect(store.maxConcurrent).toBe(1);
    expect(store.saves).toEqual([
      { id: "a", seq: 1 },
      { id: "a", seq: 3 },
    ]);
  });

  it("reports a failed write and retries until it succeeds", async () => {
    const store = new RecordingStore();
    store.failNext = 2;
    const failures: number[] = [];
    let recovered = 0;
    const persister = new Persister(store, options, {
      onFailure: (_id, error, attempts) => {
        expect(error.message).toBe("disk full");
        failures.push(attempts);
      },
      onSuccess: () => recovered++,
    });
    persister.markDirty("a", () => record("a", 7));
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(failures).toEqual([1, 2]);
    expect(recovered).toBe(1);
    expect(store.saves).toEqual([{ id: "a", seq: 7 }]);
    expect(persister.pendingCount()).toBe(0);
  });

  it("says how long the oldest change not yet stored has waited, failed writes included", async () => {
    const store = new RecordingStore();
    store.failNext = 1_000;
    const persister = new Persister(store, { debounceMs: 0, retryBaseMs: 5, retryMaxMs: 5 }, quiet);
    expect(persister.oldestPendingMs()).toBe(0);
    const changedAt = Date.now();
    persister.markDirty("a", () => record("a", 1));
    await new Promise((resolve) => setTimeout(resolve, 60));
    // Failing and retried: the first change still waits, and later ones do not make it younger.
    persister.markDirty("a", () => record("a", 2));
    const lag = persister.oldestPendingMs();
    expect(lag).toBeGreaterThanOrEqual(50);
    expect(lag).toBeLessThanOrEqual(Date.now() - changedAt);
    store.failNext = 0;
    await waitFor(() => (persister.oldestPendingMs() === 0 ? true : undefined));
    expect(store.saves.at(-1)).toEqual({ id: "a", seq: 2 });
  });

  it("a delete supersedes pending writes and waits for the write in flight", async () => {
    const store = new RecordingStore();
    store.delayMs = 20;
    const persister = new Persister(store, { ...options, debounceMs: 0 }, quiet);
    persister.markDirty("a", () => record("a", 1));
    await new Promise((resolve) => setTimeout(resolve, 5));
    persister.markDirty("a", () => record("a", 2));
    persister.markDeleted("a");
    persister.markDirty("a", () => record("a", 3));
    await new Promise((resolve) => setTimeout(resolve, 60));
    await persister.flush();
    expect(store.saves).toEqual([{ id: "a", seq: 1 }]);
    expect(store.deletes).toEqual(["a"]);
    expect(persister.pendingCount()).toBe(0);
  });

  it("flush writes what is pending without waiting for the debounce", async () => {
    const store = new RecordingStore();
    const persister = new Persister(store, { ...options, debounceMs: 60_000 }, quiet);
    persister.markDirty("a", () => record("a", 1));
    persister.markDirty("b", () => record("b", 1));
    await persister.close();
    expect(store.saves.map((s) => s.id).sort()).toEqual(["a", "b"]);
  });

  it("hands the store the events drained since the last write, and keeps those of a failed write for the next", async () => {
    const store = new RecordingStore();
    store.failNext = 1;
    const persister = new Persister(store, { ...options, debounceMs: 0 }, quiet);
    let undrained: SessionEvent[] = [];
    const emit = (sequence: number) => {
      undrained.push(event(sequence));
      persister.markDirty("a", () => {
        const events = undrained;
        undrained = [];
        return { record: sessionRecord("a", sequence), events };
      });
    };
    emit(1);
    emit(2);
    expect(await persister.flushSession("a")).toBe(false);
    emit(3);
    expect(await persister.flushSession("a")).toBe(true);
    emit(4);
    await persister.close();
    expect(store.events).toEqual([[1, 2, 3], [4]]);
    expect(store.saves.map((s) => s.seq)).toEqual([3, 4]);
  });

  it("close lets the store finish its background work", async () => {
    const store = new RecordingStore();
    let closed = 0;
    const closing: SessionStore = Object.assign(store, { close: async () => void closed++ });
    const persister = new Persister(closing, options, quiet);
    persister.markDirty("a", () => record("a", 1));
    await persister.close();
    expect(closed).toBe(1);
  });
});
