import type { SessionEvent } from "../events/types.js";
import type { SessionRecord } from "./record.js";
import type { SessionStore } from "./types.js";

export interface PersisterOptions {
  /** Mutations within this window become one write. */
  debounceMs: number;
  retryBaseMs: number;
  retryMaxMs: number;
}

export interface PersisterListener {
  /** A write or delete failed; it stays pending and is retried. */
  onFailure(sessionId: string, error: Error, attempts: number): void;
  /** A write succeeded (after failures, this clears the reported error). */
  onSuccess(sessionId: string): void;
}

/** A session's latest state, and the events it has not handed over before (they are drained). */
export type Snapshot = () => { record: SessionRecord; events: SessionEvent[] };

type Operation = { kind: "save"; snapshot: Snapshot } | { kind: "delete" };

interface Entry {
  /** What must still reach the store; null when the store is up to date. */
  pending: Operation | null;
  /** Events taken from the session whose write failed: they go first in the next write. */
  unwritten: SessionEvent[];
  inFlight: Promise<void> | null;
  timer: NodeJS.Timeout | null;
  failures: number;
  /** The last failed write's error, until a write succeeds. */
  lastError: Error | null;
  /** When the oldest change of `pending`, and of the write under way, was made (ms); null: none. */
  pendingSince: number | null;
  writingSince: number | null;
}

/**
 * Writes sessions to the store in the background, off the request path. Callers only mark a session
 * dirty; writes for one session are serialised, bursts of changes are coalesced into one write of the
 * latest state (with every event emitted since the last one), and a failed write is reported and
 * retried with backoff until it succeeds or the session is deleted. Writes of different sessions run
 * concurrently, so a store with group commit makes them share fsyncs.
 */
export class Persister {
  private readonly entries = new Map<string, Entry>();
  private stopped = false;

  constructor(
    private readonly store: SessionStore,
    private readonly options: PersisterOptions,
    private readonly listener: PersisterListener,
  ) {}

  /** Schedules a write; `snapshot` is called when the write starts, so it captures the latest state. */
  markDirty(sessionId: string, snapshot: Snapshot): void {
    const entry = this.entry(sessionId);
    if (entry.pending?.kind === "delete") return;
    entry.pending = { kind: "save", snapshot };
    entry.pendingSince ??= Date.now();
    this.schedule(sessionId, entry, this.options.debounceMs);
  }

  /** Schedules removal of the stored record; it supersedes any pending write. */
  markDeleted(sessionId: string): void {
    const entry = this.entry(sessionId);
    entry.pending = { kind: "delete" };
    entry.pendingSince ??= Date.now();
    this.schedule(sessionId, entry, 0);
  }

  /** Writes everything pending now and waits until the store is up to date (or a write fails). */
  async flush(): Promise<void> {
    const work = [...this.entries].map(async ([sessionId, entry]) => {
      if (entry.timer) clearTimeout(entry.timer);
      entry.timer = null;
      await entry.inFlight;
      if (entry.pending) await this.write(sessionId, entry);
    });
    await Promise.all(work);
  }

  /**
   * Writes one session's latest state now and reports whether the store has it: for the few
   * changes that must be durable before something happens (a tool call that changes the world).
   */
  async flushSession(sessionId: string): Promise<boolean> {
    const entry = this.entries.get(sessionId);
    if (!entry) return true;
    if (entry.timer) clearTimeout(entry.timer);
    entry.timer = null;
    await entry.inFlight;
    if (entry.pending) await this.write(sessionId, entry);
    // Changes made during that write may be pending again; what was asked for is written unless it failed.
    return entry.failures === 0;
  }

  /** Flushes, then stops scheduling and lets the store finish its background work; used on shutdown. */
  async close(): Promise<void> {
    await this.flush();
    this.stopped = true;
    for (const entry of this.entries.values()) if (entry.timer) clearTimeout(entry.timer);
    await this.store.close?.();
  }

  /** Why the session's last write failed; null when it has not failed or a later one succeeded. */
  lastError(sessionId: string): Error | null {
    return this.entries.get(sessionId)?.lastError ?? null;
  }

  /**
   * Stops writing a session that this process no longer runs (another node does): nothing pending
   * is written, nothing is deleted, and a write under way is not retried.
   */
  forget(sessionId: string): void {
    const entry = this.entries.get(sessionId);
    if (!entry) return;
    if (entry.timer) clearTimeout(entry.timer);
    entry.timer = null;
    entry.pending = null;
    entry.unwritten = [];
    this.entries.delete(sessionId);
  }

  /** Sessions whose latest state has not reached the store. */
  pendingCount(): number {
    let count = 0;
    for (const entry of this.entries.values()) if (entry.pending || entry.inFlight) count++;
    return count;
  }

  /** How long the oldest change not yet in the store has waited, in ms; 0 when everything is stored. */
  oldestPendingMs(now = Date.now()): number {
    let oldest = now;
    for (const entry of this.entries.values()) oldest = Math.min(oldest, entry.pendingSince ?? now, entry.writingSince ?? now);
    return now - oldest;
  }

  private entry(sessionId: string): Entry {
    let entry = this.entries.get(sessionId);
    if (!entry) {
      entry = { pending: null, unwritten: [], inFlight: null, timer: null, failures: 0, lastError: null, pendingSince: null, writingSince: null };
      this.entries.set(sessionId, entry);
    }
    return entry;
  }

  private schedule(sessionId: string, entry: Entry, delayMs: number): void {
    // A running write reschedules itself when it ends; a scheduled one will see the new state.
    // A forgotten session's entry is no longer in the map: it is never written again.
    if (this.stopped || entry.inFlight || entry.timer || this.entries.get(sessionId) !== entry) return;
    entry.timer = setTimeout(() => {
      entry.timer = null;
      void this.write(sessionId, entry);
    }, delayMs);
    // Pending writes must not keep a process alive on their own; shutdown flushes explicitly.
    entry.timer.unref();
  }

  private write(sessionId: string, entry: Entry): Promise<void> {
    if (entry.inFlight) return entry.inFlight;
    const operation = entry.pending;
    if (!operation) return Promise.resolve();
    entry.pending = null;
    entry.writingSince = entry.pendingSince;
    entry.pendingSince = null;
    let events: SessionEvent[] = [];
    let attempt: Promise<void>;
    if (operation.kind === "save") {
      try {
        const snapshot = operation.snapshot();
        events = entry.unwritten.length > 0 ? entry.unwritten.concat(snapshot.events) : snapshot.events;
        entry.unwritten = [];
        attempt = this.store.save(snapshot.record, events);
      } catch (error) {
        attempt = Promise.reject(error);
      }
    } else {
      entry.unwritten = [];
      attempt = this.store.delete(sessionId);
    }
    entry.inFlight = attempt.then(
      () => this.succeeded(sessionId, entry, operation),
      (error: unknown) => {
        // The events were drained from the session: kept here, they go with the next attempt.
        if (entry.pending?.kind !== "delete") entry.unwritten = events.concat(entry.unwritten);
        this.failed(sessionId, entry, operation, error);
      },
    );
    return entry.inFlight;
  }

  private succeeded(sessionId: string, entry: Entry, operation: Operation): void {
    entry.inFlight = null;
    entry.writingSince = null;
    const hadFailed = entry.failures > 0;
    entry.failures = 0;
    entry.lastError = null;
    if (operation.kind === "delete" && !entry.pending) {
      this.entries.delete(sessionId);
      return;
    }
    if (hadFailed) this.listener.onSuccess(sessionId);
    if (entry.pending) this.schedule(sessionId, entry, this.options.debounceMs);
  }

  private failed(sessionId: string, entry: Entry, operation: Operation, error: unknown): void {
    entry.inFlight = null;
    entry.failures++;
    entry.lastError = error instanceof Error ? error : new Error(String(error));
    // Newer state supersedes the failed one; otherwise the failed operation is tried again.
    entry.pending ??= operation;
    // What failed is still not stored: its changes are the oldest waiting.
    entry.pendingSince = Math.min(entry.pendingSince ?? Infinity, entry.writingSince ?? Infinity);
    entry.writingSince = null;
    this.listener.onFailure(sessionId, entry.lastError, entry.failures);
    const backoff = Math.min(this.options.retryBaseMs * 2 ** (entry.failures - 1), this.options.retryMaxMs);
    this.schedule(sessionId, entry, backoff);
  }
}
