import type { SessionRecord } from "./record.js";
import type { LoadResult, SessionStore } from "./types.js";

/** Keeps records in the process: for `--store memory` and for tests. */
export class MemoryStore implements SessionStore {
  private readonly records = new Map<string, string>();

  async loadAll(): Promise<LoadResult> {
    return { records: [...this.records.values()].map((text) => JSON.parse(text) as SessionRecord), failures: [] };
  }

  async save(record: SessionRecord): Promise<void> {
    // Stored as text so a later mutation of the caller's object cannot leak in.
    this.records.set(record.id, JSON.stringify(record));
  }

  async delete(sessionId: string): Promise<void> {
    this.records.delete(sessionId);
  }

  has(sessionId: string): boolean {
    return this.records.has(sessionId);
  }
}
