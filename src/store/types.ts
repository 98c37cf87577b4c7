import type { SessionEvent } from "../events/types.js";
import type { SessionRecord } from "./record.js";
import type { SpendLedger } from "./spend.js";

/** A stored file that could not be read back; it is reported and left untouched. */
export interface LoadFailure {
  location: string;
  error: string;
}

export interface LoadResult {
  records: SessionRecord[];
  failures: LoadFailure[];
  /** What was repaired while loading (a torn last line dropped, leftovers removed); nothing was lost that had been acknowledged. */
  warnings?: LoadFailure[];
}

/** Bounds on each session's event log; the oldest events beyond either are trimmed. */
export interface EventRetention {
  maxEvents: number;
  maxBytes: number;
}

export const DEFAULT_EVENT_RETENTION: EventRetention = { maxEvents: 10_000, maxBytes: 16 * 1024 * 1024 };

export interface ReadEventsResult {
  events: SessionEvent[];
  /** The oldest retained sequence; 0 when the log is empty. */
  oldest: number;
}

/** Where sessions live between restarts: their latest state and their recent events; and what owners spent. */
export interface SessionStore extends SpendLedger {
  /** Full records (snapshot and messages), as last saved. */
  loadAll(): Promise<LoadResult>;
  /**
   * Stores the latest state and appends `events` (in sequence order) to the session's event log.
   * Durable (fsynced) when it resolves; events already stored (by sequence) are not stored twice.
   * `record.messages` is the session's own transcript, shared, not copied (a copy per save would
   * cost the whole history): messages are only ever appended to it, so the store takes the ones it
   * holds when save is called and must not read past that length later. A frozen object in the
   * record is frozen all the way down (the runtime deep-freezes the configs it shares), so a store
   * may serialize one once and reuse the text.
   */
  save(record: SessionRecord, events: readonly SessionEvent[]): Promise<void>;
  delete(sessionId: string): Promise<void>;
  /** Retained events with sequence > after, at most `limit`, in order; `oldest` is the oldest retained sequence (0 when none). */
  readEvents(sessionId: string, after: number, limit: number): Promise<ReadEventsResult>;
  /** Finishes background work (file compaction) and releases files; later calls reopen them. */
  close?(): Promise<void>;
}

/**
 * A write was refused because another node holds the session's tree now (this one was paused or
 * cut off past its lease): a cluster's fencing. Nothing of it was stored.
 */
export class FencedError extends Error {
  override name = "FencedError";
  constructor(
    readonly sessionId: string,
    readonly rootId: string,
    /** The lease epoch the refused write was made under. */
    readonly epoch: number,
  ) {
    super(`session ${sessionId} is run by another node now (its tree ${rootId} has a newer lease); this node's write was refused (fenced)`);
  }
}
