import type { SessionRecord } from "./record.js";

/** A stored file that could not be read back; it is reported and left untouched. */
export interface LoadFailure {
  location: string;
  error: string;
}

export interface LoadResult {
  records: SessionRecord[];
  failures: LoadFailure[];
}

/** Where session records live between restarts. Implementations must make each save atomic. */
export interface SessionStore {
  loadAll(): Promise<LoadResult>;
  save(record: SessionRecord): Promise<void>;
  delete(sessionId: string): Promise<void>;
}
