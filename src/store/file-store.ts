import { readdirSync, rmSync, type Dirent } from "node:fs";
import { availableParallelism } from "node:os";
import { mkdir, readdir, readFile, rename, rm } from "node:fs/promises";
import path from "node:path";
import type { SessionEvent } from "../events/types.js";
import { sameData } from "../util/values.js";
import { firstAfter, retainedFrom } from "./event-retention.js";
import { syncDirectory, tempNameFor, writeFileAtomic, writeFileSynced } from "./files.js";
import { forEachFolder, inFolder, type FolderReads } from "./folder-reads.js";
import { forEachLimited, KeyedQueue } from "./keyed-queue.js";
import type { SessionRecord } from "./record.js";
import type { SpendMark, SpendRow } from "./spend.js";
import { SpendLog } from "./spend-log.js";
import type { UsageTotals } from "../session/types.js";
import { convertVersion1Files } from "./convert-v1.js";
import { checkRecord } from "./record-codec.js";
import {
  encodeSnapshot,
  endOfLines,
  eventsFile,
  eventsTailOf,
  eventsTailOfFile,
  GENERATION_FILE,
  keepUnappliedEntries,
  messagesFile,
  messagesFrom,
  readBytes,
  readEventRange,
  scanEvents,
  SESSION_ID,
  SNAPSHOT,
  UNAPPLIED_WAL_FILE,
  type EventIndex,
  type EventsScan,
} from "./session-files.js";
import {
  DEFAULT_EVENT_RETENTION,
  type EventRetention,
  type LoadFailure,
  type LoadResult,
  type ReadEventsResult,
  type SessionStore,
} from "./types.js";
import { listSegments, readSegment, segmentName, WriteAheadLog, type WalStats } from "./wal.js";
import { entryHead, headOf, parseWalEntry } from "./wal-entry.js";

/*
 * The file store, under <dataDir>/sessions:
 *
 *   wal.d/<n>.log     the write-ahead log shared by all sessions (no session id has a dot)
 *   <id>/             one folder per session: snapshot.json, messages.<gen>.jsonl, events.<gen>.jsonl
 *                     (see session-files.ts)
 *   <id>.json         a session in the old one-file format (version 1), converted at start-up
 *
 * A save is one line in the write-ahead log: the record's top-level fields that changed, the
 * messages after the ones already stored (all of them, from index 0, when the stored ones were
 * rewritten), the new events, and the session's entry it follows. Its cost depends on what is new,
 * not on the session's length.
 *
 * Group commit: lines from every session go to one log file in batches, one fdatasync per batch;
 * whatever arrives while a batch is being synced goes into the next (wal.ts). So 100 sessions
 * ending their turns together share a few fsyncs instead of paying 100, and `save` resolves when
 * its line is durable.
 *
 * Checkpoints: in the background (every few seconds, or sooner when the log grows past a size),
 * the log is rotated, each session that changed appends its new messages and events to its own
 * files, writes its snapshot atomically (naming the last log entry it includes, `lsn`), and the
 * rotated log segments are deleted. Rewritten messages and trimmed events go to the next
 * generation of their file, which the snapshot switches to. A session's files are thus always a
 * consistent state, and restore = snapshot + its logs + the log entries after its `lsn`.
 *
 * Crash tolerance: a torn line at the end of a log or a session file (a crash mid-append) is
 * dropped with a warning; it was never acknowledged. Temp files, unfinished conversions and
 * deletions, and files of generations no snapshot names are removed at start-up.
 *
 * Damage (a line that cannot be read in the middle of a file) is reported with the session and the
 * file, and the session comes back in a state it really had: up to its damaged log entry (each entry
 * names the one it follows), with the messages before a damaged line, with the events after one
 * (see session-files.ts). A damaged session file is kept as `<name>.damaged` once replaced.
 * A session that cannot be restored at all (its snapshot unreadable, say) is left unloaded with its
 * files as they are; its log entries, which replay cannot apply, are copied verbatim to
 * `<id>/unapplied-wal.<n>.jsonl` before the log segments holding them are removed.
 *
 * Conversion of version-1 files (convert-v1.ts): each is written to `<id>.migrating/`, fsynced, renamed to `<id>/`,
 * and only then is `<id>.json` removed; interrupted at any point, the next start-up finishes it.
 */

const WAL_DIRECTORY = "wal.d";
/** Owners' spending (SpendLog), in the sessions folder. */
const SPEND_FILE = "spend.log";
const LEFTOVER = /\.(tmp|migrating|deleted)$/;
/** Events may exceed the retention bounds by this much before the file is rewritten. */
const TRIM_SLACK = 1.25;
const CHECKPOINT_CONCURRENCY = 4;

export interface FileStoreOptions {
  retention?: Partial<EventRetention>;
  /** A checkpoint starts once the write-ahead log has grown by this many bytes (default 8 MiB). */
  checkpointBytes?: number;
  /** ...or this long after the first change since the last one (default 2 s). */
  checkpointIntervalMs?: number;
  /** Worker threads that read session folders ahead at start-up (default: one per CPU up to 4, none with one CPU). */
  startupThreads?: number;
  /** Problems found and repaired outside `loadAll` (which returns its own): a failed checkpoint, a damaged event log. */
  onWarning?: (warning: LoadFailure) => void;
}

export interface FileStoreStats {
  wal: WalStats;
  checkpoints: number;
  checkpointBytes: number;
  checkpointSyncs: number;
}

interface EventLine {
  sequence: number;
  line: string;
  bytes: number;
}

/** What a session's files lack: keep the first `keep` lines of the messages file, then add `messages`. */
interface Debt {
  dirty: boolean;
  keep: number;
  messages: string[];
  events: EventLine[];
}

/** A session's files as the last checkpoint left them. */
interface OnDisk {
  /** Whether a snapshot exists (until then the folder is not a session yet). */
  committed: boolean;
  messagesGeneration: number;
  messageCount: number;
  messagesBytes: number;
  eventsGeneration: number;
  /** Complete lines of the events file (they count, whatever the snapshot says). */
  eventsBytes: number;
  lastEventSequence: number;
}

interface Tracked {
  id: string;
  /**
   * The record's top-level fields except messages, as JSON, as the store holds them; null when they
   * are the snapshot's, as loaded: not kept (a restart would hold every session's config text), the
   * next save logs them all.
   */
  fields: Map<string, string> | null;
  messageCount: number;
  lastMessageId: string | null;
  lastEventSequence: number;
  /** The last log entry applied. */
  lsn: number;
  /** After a failed write, what the log holds is unsure: the next save logs every field. */
  resync: boolean;
  debt: Debt;
  disk: OnDisk | null;
  /** The events file's lines, loaded when first needed (or at load, when found damaged). */
  index: EventIndex | null;
  /** Session files found damaged: kept aside, not removed, when a new generation replaces them (null: none, most often). */
  damaged: Set<string> | null;
}

const noDebt = (keep: number): Debt => ({ dirty: false, keep, messages: [], events: [] });

/**
 * `newer` happened after `older`; both as one debt, made of `older` (changed in place: a debt is
 * owned by its session until a checkpoint takes it, so a save costs what it adds, not the debt).
 */
function compose(older: Debt, newer: Debt): Debt {
  for (const event of newer.events) older.events.push(event);
  if (newer.keep < older.keep) return { dirty: true, keep: newer.keep, messages: newer.messages, events: older.events };
  // Messages past what `newer` kept were rewritten: they go, and its own come after the kept ones.
  older.messages.length = Math.min(older.messages.length, newer.keep - older.keep);
  for (const message of newer.messages) older.messages.push(message);
  older.dirty ||= newer.dirty;
  return older;
}

/**
 * The JSON of frozen record parts, by object: a frozen part is frozen all through and shared (the
 * sessions' configs are), so it is serialized once, not at every save of every session holding it.
 */
const frozenJson = new WeakMap<object, string>();

function jsonOf(value: unknown): string | undefined {
  if (typeof value !== "object" || value === null || !Object.isFrozen(value)) return JSON.stringify(value);
  let json = frozenJson.get(value);
  if (json === undefined) frozenJson.set(value, (json = JSON.stringify(value)));
  return json;
}

function fieldsOf(record: Omit<SessionRecord, "messages"> | SessionRecord): Map<string, string> {
  const fields = new Map<string, string>();
  for (const [key, value] of Object.entries(record)) {
    if (key === "messages") continue;
    const json = jsonOf(value);
    if (json !== undefined) fields.set(key, json);
  }
  return fields;
}

function recordJsonOf(fields: Map<string, string>): string {
  return `{${[...fields].map(([key, json]) => `${JSON.stringify(key)}:${json}`).join(",")}}`;
}

const lineOf = (event: SessionEvent): EventLine => {
  const line = JSON.stringify(event);
  return { sequence: event.sequence, line, bytes: Buffer.byteLength(line) + 1 };
};

/**
 * Equal values as one object: each value is matched against the few shared last. For the configs
 * of a restart's records, parsed anew for each session; one copy each would live until the
 * sessions are made of them. (Records are plain data nobody changes in place: sharing is safe.)
 */
class RecentValues {
  private readonly recent: unknown[] = [];

  share<T>(value: T): T {
    const recent = this.recent;
    for (let i = 0; i < recent.length; i++) {
      if (!sameData(value, recent[i])) continue;
      const shared = recent[i] as T;
      if (i > 0) {
        recent.splice(i, 1);
        recent.unshift(shared);
      }
      return shared;
    }
    recent.unshift(value);
    if (recent.length > 8) recent.pop();
    return value;
  }
}

function isMissing(error: unknown): boolean {
  return (error as NodeJS.ErrnoException).code === "ENOENT";
}

function ignoreMissing(error: unknown): void {
  if (!isMissing(error)) throw error;
}

export class FileSessionStore implements SessionStore {
  readonly directory: string;
  readonly walDirectory: string;
  readonly stats: FileStoreStats = { wal: { bytes: 0, syncs: 0, batches: 0 }, checkpoints: 0, checkpointBytes: 0, checkpointSyncs: 0 };
  private readonly retention: EventRetention;
  private readonly checkpointBytes: number;
  private readonly checkpointIntervalMs: number;
  private readonly sessions = new Map<string, Tracked>();
  /** Sessions whose files failed to load: never written, never removed. */
  private readonly broken = new Set<string>();
  /** Deleted sessions whose folders the next checkpoint removes. */
  private readonly deleting = new Set<string>();
  /** Untracked sessions whose first write failed: the log may hold it anyway, so a delete is logged. */
  private readonly unsure = new Set<string>();
  private readonly saves = new KeyedQueue();
  private readonly folders = new KeyedQueue();
  private wal: WriteAheadLog | null = null;
  /** Log segments from before this process, let go after the next complete checkpoint. */
  private inheritedSegments: number[] = [];
  /** Lines of those segments of sessions not restored (`broken`), to keep in their folders before the segments go. */
  private unapplied = new Map<string, string[]>();
  private nextLsn = 1;
  private ready: Promise<void> | null = null;
  private loadWarnings: LoadFailure[] | null = null;
  private checkpointTimer: NodeJS.Timeout | null = null;
  private checkpointQueued: Promise<boolean> | null = null;
  private checkpointRunning: Promise<unknown> = Promise.resolve();
  /** Owners' spending, in a file of its own beside the session folders. */
  private readonly spend: SpendLog;

  constructor(
    dataDir: string,
    private readonly options: FileStoreOptions = {},
  ) {
    this.directory = path.resolve(dataDir, "sessions");
    this.walDirectory = path.join(this.directory, WAL_DIRECTORY);
    this.retention = { ...DEFAULT_EVENT_RETENTION, ...options.retention };
    this.checkpointBytes = options.checkpointBytes ?? 8 * 1024 * 1024;
    this.checkpointIntervalMs = options.checkpointIntervalMs ?? 2_000;
    this.spend = new SpendLog(
      path.join(this.directory, SPEND_FILE),
      (location, error) => this.warn(location, error),
      undefined,
      // A deleted session's mark is not needed any more; before the sessions are loaded, every mark is.
      (id) => this.wal === null || this.sessions.has(id) || this.broken.has(id) || this.unsure.has(id),
    );
  }

  async loadAll(): Promise<LoadResult> {
    if (this.ready) {
      await this.ready.catch(() => {});
      await this.close();
    }
    const loading = this.initialize();
    this.ready = loading.then(
      () => {},
      (error: unknown) => {
        this.ready = null;
        throw error;
      },
    );
    return loading;
  }

  async save(record: SessionRecord, events: readonly SessionEvent[] = []): Promise<void> {
    this.checkId(record.id);
    // The transcript may grow once this returns (see SessionStore.save): this save is what it holds now.
    const messageCount = record.messages.length;
    await this.open();
    return this.saves.run(record.id, () => this.log(record, messageCount, events));
  }

  async delete(sessionId: string): Promise<void> {
    this.checkId(sessionId);
    await this.open();
    return this.saves.run(sessionId, async () => {
      if (!this.sessions.has(sessionId) && !this.unsure.has(sessionId)) return;
      const lsn = this.nextLsn++;
      await this.wal!.append(`${entryHead(lsn, "delete", sessionId)}}`, () => {
        this.sessions.delete(sessionId);
        this.unsure.delete(sessionId);
        // Even without files yet: a checkpoint under way may be writing its first ones.
        this.deleting.add(sessionId);
        this.scheduleCheckpoint();
      });
    });
  }

  addSpend(rows: readonly SpendRow[], marks?: readonly SpendMark[]): Promise<void> {
    return this.spend.addSpend(rows, marks);
  }

  marksOf(sessionIds: readonly string[]): Promise<Map<string, SpendMark>> {
    return this.spend.marksOf(sessionIds);
  }

  spendOf(owner: string, fromDay: string): Promise<UsageTotals> {
    return this.spend.spendOf(owner, fromDay);
  }

  async readEvents(sessionId: string, after: number, limit: number): Promise<ReadEventsResult> {
    await this.open();
    if (!this.sessions.has(sessionId)) return { events: [], oldest: 0 };
    return this.folders.run(sessionId, async () => {
      const tracked = this.sessions.get(sessionId);
      if (!tracked) return { events: [], oldest: 0 };
      const disk = tracked.disk;
      const index = disk && disk.eventsBytes > 0 ? await this.indexOf(tracked, disk) : { start: 0, sequences: [], ends: [] };
      const onDisk = disk?.lastEventSequence ?? 0;
      const pending = tracked.debt.events.filter((event) => event.sequence > onDisk);
      const inFile = index.sequences.length;
      const total = inFile + pending.length;
      const sequenceAt = (i: number): number => (i < inFile ? index.sequences[i]! : pending[i - inFile]!.sequence);
      const bytesAt = (i: number): number => (i < inFile ? index.ends[i]! - (index.ends[i - 1] ?? index.start) : pending[i - inFile]!.bytes);
      const start = retainedFrom(total, bytesAt, this.retention);
      const oldest = start < total ? sequenceAt(start) : 0;
      const first = firstAfter(sequenceAt, after, start, total);
      const end = Math.min(total, first + Math.max(0, limit));
      const events: SessionEvent[] = [];
      if (first < Math.min(end, inFile)) {
        const file = path.join(this.directory, sessionId, eventsFile(disk!.eventsGeneration));
        events.push(...(await readEventRange(file, index.ends[first - 1] ?? index.start, index.ends[Math.min(end, inFile) - 1]!)));
      }
      for (let i = Math.max(first, inFile); i < end; i++) events.push(JSON.parse(pending[i - inFile]!.line) as SessionEvent);
      return { events, oldest };
    });
  }

  /**
   * Writes what changed into the sessions' own files and lets go of the log segments that held it.
   * Runs in the background on its own; tests and benchmarks call it to measure. Resolves false
   * when some session could not be written (the log keeps it; the next checkpoint tries again).
   */
  checkpoint(): Promise<boolean> {
    if (this.checkpointQueued) return this.checkpointQueued;
    const start = (): Promise<boolean> => {
      this.checkpointQueued = null;
      return this.runCheckpoint();
    };
    const run = this.checkpointRunning.then(start, start);
    this.checkpointQueued = run;
    this.checkpointRunning = run;
    return run;
  }

  /** Checkpoints and closes the log file; the store reopens it when used again. */
  async close(): Promise<void> {
    await this.spend.close();
    if (!this.ready) return;
    try {
      await this.ready;
    } catch {
      return;
    }
    await this.checkpoint();
    if (this.checkpointTimer) clearTimeout(this.checkpointTimer);
    this.checkpointTimer = null;
    await this.wal?.close();
  }

  private checkId(sessionId: string): void {
    // Ids are generated by the server; the check keeps a bad id from ever naming a path outside.
    if (!SESSION_ID.test(sessionId)) throw new Error(`invalid session id for the file store: ${sessionId}`);
  }

  private open(): Promise<void> {
    if (!this.ready) void this.loadAll().catch(() => {});
    return this.ready!;
  }

  private warn(location: string, error: string): void {
    const warning = { location, error };
    if (this.loadWarnings) this.loadWarnings.push(warning);
    else this.options.onWarning?.(warning);
  }

  // ---- Saving: one log line per save ----

  private async log(record: SessionRecord, messageCount: number, events: readonly SessionEvent[]): Promise<void> {
    const known = this.sessions.get(record.id);
    // A new session, or one whose last write failed (what reached the log is unsure): every field, replacing all.
    const replace = !known || known.resync || known.fields === null;
    const stored = replace ? new Map<string, string>() : known.fields!;
    const fields = fieldsOf(record);
    const set: string[] = [];
    for (const [key, json] of fields) if (stored.get(key) !== json) set.push(`${JSON.stringify(key)}:${json}`);
    const unset = [...stored.keys()].filter((key) => !fields.has(key));

    // Messages are never changed once appended; if the stored ones were rewritten anyway, all are logged again.
    const messages = record.messages;
    const count = known?.messageCount ?? 0;
    const appended = messageCount >= count && (count === 0 || messages[count - 1]!.id === known!.lastMessageId);
    const from = appended ? count : 0;
    const lines = messages.slice(from, messageCount).map((message) => JSON.stringify(message));

    let lastSequence = known?.lastEventSequence ?? 0;
    const fresh: EventLine[] = [];
    for (const event of events) {
      if (event.sequence <= lastSequence) continue;
      lastSequence = event.sequence;
      fresh.push(lineOf(event));
    }
    if (known && set.length === 0 && unset.length === 0 && lines.length === 0 && fresh.length === 0 && appended) return;

    const lsn = this.nextLsn++;
    let entry = `${entryHead(lsn, "save", record.id)},"prev":${known?.lsn ?? 0}`;
    if (replace) entry += `,"replace":true`;
    if (set.length > 0) entry += `,"set":{${set.join(",")}}`;
    if (unset.length > 0) entry += `,"unset":${JSON.stringify(unset)}`;
    entry += `,"from":${from}`;
    if (lines.length > 0) entry += `,"messages":[${lines.join(",")}]`;
    if (fresh.length > 0) entry += `,"events":[${fresh.map((event) => event.line).join(",")}]`;
    entry += "}";
    const lastMessageId = messages[messageCount - 1]?.id ?? null;
    try {
      await this.wal!.append(entry, () => {
        const tracked = this.sessions.get(record.id) ?? this.track(record.id);
        tracked.fields = fields;
        tracked.messageCount = messageCount;
        tracked.lastMessageId = lastMessageId;
        tracked.lastEventSequence = lastSequence;
        tracked.lsn = lsn;
        tracked.resync = false;
        tracked.debt = compose(tracked.debt, { dirty: true, keep: from, messages: lines, events: fresh });
        this.unsure.delete(record.id);
        this.scheduleCheckpoint();
      });
    } catch (error) {
      const tracked = this.sessions.get(record.id);
      if (tracked) tracked.resync = true;
      else this.unsure.add(record.id);
      throw error;
    }
  }

  private track(id: string, debt = noDebt(0)): Tracked {
    const tracked: Tracked = {
      id,
      fields: null,
      messageCount: 0,
      lastMessageId: null,
      lastEventSequence: 0,
      lsn: 0,
      resync: false,
      debt,
      disk: null,
      index: null,
      damaged: null,
    };
    this.sessions.set(id, tracked);
    return tracked;
  }

  // ---- Checkpoints: the log into the sessions' files ----

  private scheduleCheckpoint(): void {
    if (this.wal && this.wal.bytesSinceRotation >= this.checkpointBytes) {
      void this.checkpoint();
      return;
    }
    if (this.checkpointTimer) return;
    this.checkpointTimer = setTimeout(() => {
      this.checkpointTimer = null;
      void this.checkpoint();
    }, this.checkpointIntervalMs);
    // Background work never keeps the process alive: everything is in the log already.
    this.checkpointTimer.unref();
  }

  private async runCheckpoint(): Promise<boolean> {
    const wal = this.wal;
    if (!wal) return true;
    if (this.checkpointTimer) clearTimeout(this.checkpointTimer);
    this.checkpointTimer = null;
    let complete = true;
    try {
      const segments = [...this.inheritedSegments, ...(await wal.rotate())];
      for (const id of [...this.deleting]) {
        try {
          await this.folders.run(id, () => this.removeFolder(id));
          this.deleting.delete(id);
        } catch (error) {
          complete = false;
          this.warn(path.join(this.directory, id), `could not remove a deleted session's files: ${(error as Error).message}`);
        }
      }
      for (const [id, lines] of [...this.unapplied]) {
        try {
          await this.folders.run(id, () => this.keepUnapplied(id, lines));
          this.unapplied.delete(id);
        } catch (error) {
          complete = false;
          const why = (error as Error).message;
          this.warn(path.join(this.directory, id), `session ${id}: could not keep the write-ahead-log entries it was not restored with, the log keeps them: ${why}`);
        }
      }
      const dirty = [...this.sessions.values()].filter((tracked) => tracked.debt.dirty);
      await forEachLimited(dirty, CHECKPOINT_CONCURRENCY, async (tracked) => {
        try {
          await this.folders.run(tracked.id, () => this.checkpointSession(tracked));
        } catch (error) {
          complete = false;
          this.warn(path.join(this.directory, tracked.id), `checkpoint failed, the write-ahead log keeps the changes: ${(error as Error).message}`);
        }
      });
      if (complete) {
        await wal.discard(segments);
        this.inheritedSegments = [];
      } else {
        this.inheritedSegments = segments;
      }
    } catch (error) {
      complete = false;
      this.warn(this.walDirectory, `checkpoint failed: ${(error as Error).message}`);
    }
    this.stats.checkpoints++;
    return complete;
  }

  private async keepUnapplied(id: string, lines: string[]): Promise<void> {
    const kept = await keepUnappliedEntries(path.join(this.directory, id), lines);
    if (!kept) return;
    this.warn(
      kept.file,
      `session ${id} was not restored, so ${kept.count} of its write-ahead-log entries were not applied; they are kept in ${path.basename(kept.file)} for repair`,
    );
  }

  private async checkpointSession(tracked: Tracked): Promise<void> {
    if (this.sessions.get(tracked.id) !== tracked || !tracked.debt.dirty) return;
    const debt = tracked.debt;
    const lsn = tracked.lsn;
    // Unknown fields (null) are a snapshot's as loaded: every change (a save, replay, a repair) sets them.
    if (!tracked.fields) throw new Error("the session's fields are unknown");
    const recordJson = recordJsonOf(tracked.fields);
    tracked.debt = noDebt(debt.keep + debt.messages.length);
    try {
      await this.writeSession(tracked, debt, lsn, recordJson);
    } catch (error) {
      tracked.debt = compose(debt, tracked.debt);
      throw error;
    }
  }

  private async writeSession(tracked: Tracked, debt: Debt, lsn: number, recordJson: string): Promise<void> {
    const folder = path.join(this.directory, tracked.id);
    if (!tracked.disk) {
      await mkdir(folder, { recursive: true, mode: 0o700 });
      // What an interrupted first checkpoint may have left: it does not count (the snapshot below syncs the removal).
      for (const file of [messagesFile(1), eventsFile(1)]) await rm(path.join(folder, file), { force: true });
      tracked.disk = { committed: false, messagesGeneration: 1, messageCount: 0, messagesBytes: 0, eventsGeneration: 1, eventsBytes: 0, lastEventSequence: 0 };
    }
    const disk = tracked.disk;
    const next = { ...disk, committed: true };
    const obsolete: string[] = [];

    // Messages: appended, or (when rewritten) a new generation of the file.
    const added = debt.messages.length > 0 ? `${debt.messages.join("\n")}\n` : "";
    const messagesPath = path.join(folder, messagesFile(disk.messagesGeneration));
    if (debt.keep >= disk.messageCount) {
      if (added) {
        next.messagesBytes += await this.writeSynced(messagesPath, added, "a", disk.messagesBytes);
        next.messageCount += debt.messages.length;
      }
    } else {
      const kept = await readBytes(messagesPath, 0, await endOfLines(messagesPath, debt.keep));
      next.messagesGeneration++;
      next.messagesBytes = await this.writeSynced(path.join(folder, messagesFile(next.messagesGeneration)), Buffer.concat([kept, Buffer.from(added)]), "w");
      next.messageCount = debt.keep + debt.messages.length;
      obsolete.push(messagesPath);
    }

    // Events: appended (they count as soon as they are in the file), or trimmed into a new generation.
    let trimmedIndex: EventIndex | null = null;
    const fresh = debt.events.filter((event) => event.sequence > disk.lastEventSequence);
    if (fresh.length > 0) {
      const index = await this.indexOf(tracked, disk);
      const eventsPath = path.join(folder, eventsFile(disk.eventsGeneration));
      const inFile = index.sequences.length;
      const count = inFile + fresh.length;
      const bytes = disk.eventsBytes + fresh.reduce((sum, event) => sum + event.bytes, 0);
      // Past a damaged line (index.start > 0), the file is rewritten without it.
      if (index.start > 0 || count > this.retention.maxEvents * TRIM_SLACK || bytes > this.retention.maxBytes * TRIM_SLACK) {
        const bytesAt = (i: number): number => (i < inFile ? index.ends[i]! - (index.ends[i - 1] ?? index.start) : fresh[i - inFile]!.bytes);
        const start = retainedFrom(count, bytesAt, this.retention);
        const base = start < inFile ? (index.ends[start - 1] ?? index.start) : disk.eventsBytes;
        const kept = await readBytes(eventsPath, base, disk.eventsBytes);
        trimmedIndex = { start: 0, sequences: index.sequences.slice(start), ends: index.ends.slice(start).map((end) => end - base) };
        let end = kept.length;
        const tail = fresh.slice(Math.max(0, start - inFile));
        for (const event of tail) {
          end += event.bytes;
          trimmedIndex.sequences.push(event.sequence);
          trimmedIndex.ends.push(end);
        }
        next.eventsGeneration++;
        next.eventsBytes = await this.writeSynced(
          path.join(folder, eventsFile(next.eventsGeneration)),
          Buffer.concat([kept, Buffer.from(tail.map((event) => `${event.line}\n`).join(""))]),
          "w",
        );
        next.lastEventSequence = fresh.at(-1)!.sequence;
        obsolete.push(eventsPath);
      } else {
        const written = await this.writeSynced(eventsPath, fresh.map((event) => `${event.line}\n`).join(""), "a", disk.eventsBytes);
        let end = disk.eventsBytes;
        for (const event of fresh) {
          end += event.bytes;
          index.sequences.push(event.sequence);
          index.ends.push(end);
        }
        disk.eventsBytes = next.eventsBytes = disk.eventsBytes + written;
        disk.lastEventSequence = next.lastEventSequence = fresh.at(-1)!.sequence;
      }
    }

    const snapshot = encodeSnapshot(
      lsn,
      { generation: next.messagesGeneration, count: next.messageCount },
      { generation: next.eventsGeneration, bytes: next.eventsBytes, lastSequence: next.lastEventSequence },
      recordJson,
    );
    this.stats.checkpointBytes += await writeFileAtomic(path.join(folder, SNAPSHOT), snapshot);
    this.stats.checkpointSyncs += 2;
    await syncDirectory(folder);
    if (!disk.committed) {
      await syncDirectory(this.directory);
      this.stats.checkpointSyncs++;
    }
    tracked.disk = next;
    if (trimmedIndex) tracked.index = trimmedIndex;
    for (const file of obsolete) {
      if (tracked.damaged?.delete(file)) await rename(file, `${file}.damaged`).catch(ignoreMissing);
      else await rm(file, { force: true });
    }
  }

  private async writeSynced(file: string, data: string | Buffer, flag: "w" | "a", truncateTo?: number): Promise<number> {
    const bytes = await writeFileSynced(file, data, flag, truncateTo);
    this.stats.checkpointBytes += bytes;
    this.stats.checkpointSyncs++;
    return bytes;
  }

  /** The events file's index, read once (damage in it is reported then). */
  private async indexOf(tracked: Tracked, disk: OnDisk): Promise<EventIndex> {
    if (tracked.index) return tracked.index;
    const file = path.join(this.directory, tracked.id, eventsFile(disk.eventsGeneration));
    // Lines past eventsBytes are an unfinished append: they do not count.
    const scan = await scanEvents(file, disk.eventsBytes);
    this.noteEventDamage(tracked, file, scan);
    const bytes = scan.index.ends.at(-1) ?? scan.index.start;
    if (bytes < disk.eventsBytes) {
      this.warn(file, `session ${tracked.id}: ${path.basename(file)} is shorter than expected; the events after byte ${bytes} are dropped`);
      disk.eventsBytes = bytes;
    }
    disk.lastEventSequence = scan.index.sequences.at(-1) ?? 0;
    tracked.index = scan.index;
    return scan.index;
  }

  private noteEventDamage(tracked: Tracked, file: string, scan: EventsScan): void {
    if (scan.damagedLine === null) return;
    const oldest = scan.index.sequences[0];
    (tracked.damaged ??= new Set()).add(file);
    this.warn(
      file,
      `session ${tracked.id}: line ${scan.damagedLine} of ${path.basename(file)} is damaged; the events up to it are dropped` +
        (oldest === undefined ? "" : ` (the oldest kept is ${oldest})`),
    );
  }

  private async removeFolder(id: string): Promise<void> {
    const folder = path.join(this.directory, id);
    const doomed = `${tempNameFor(folder).slice(0, -".tmp".length)}.deleted`;
    try {
      await rename(folder, doomed);
    } catch (error) {
      if (isMissing(error)) return;
      throw error;
    }
    await syncDirectory(this.directory);
    await rm(doomed, { recursive: true, force: true });
  }

  // ---- Start-up: leftovers, conversion, sessions, log replay ----

  private async initialize(): Promise<LoadResult> {
    this.sessions.clear();
    this.broken.clear();
    this.deleting.clear();
    this.unsure.clear();
    this.unapplied = new Map();
    this.wal = null;
    const failures: LoadFailure[] = [];
    const warnings: LoadFailure[] = [];
    this.loadWarnings = warnings;
    try {
      await mkdir(this.directory, { recursive: true, mode: 0o700 });
      await mkdir(this.walDirectory, { recursive: true, mode: 0o700 });
      // One listing of the sessions folder (100k entries take a while), listed again only if changed.
      let listing = readdirSync(this.directory, { withFileTypes: true });
      let changed = await this.removeLeftovers(listing.map((entry) => entry.name));
      if (listing.some((entry) => entry.name.endsWith(".json"))) {
        await convertVersion1Files(this.directory, failures, (location, error) => this.warn(location, error));
        changed = true;
      }
      if (changed) listing = readdirSync(this.directory, { withFileTypes: true });
      const { records, unsnapshotted } = await this.loadFolders(listing, failures);
      const segments = await listSegments(this.walDirectory);
      let maxLsn = 0;
      for (const tracked of this.sessions.values()) maxLsn = Math.max(maxLsn, tracked.lsn);
      maxLsn = Math.max(maxLsn, await this.replay(segments, records));
      for (const [id, record] of records) {
        try {
          checkRecord(record);
        } catch (error) {
          failures.push({ location: path.join(this.directory, id), error: (error as Error).message });
          records.delete(id);
          this.sessions.delete(id);
          this.broken.add(id);
        }
      }
      if (this.broken.size > 0) this.unapplied = await this.collectUnapplied(segments);
      await this.removeOrphanFolders(unsnapshotted);
      this.nextLsn = maxLsn + 1;
      this.wal = new WriteAheadLog(this.walDirectory, (segments.at(-1) ?? 0) + 1, this.stats.wal);
      this.inheritedSegments = segments;
      const repaired = [...this.sessions.values()].some((tracked) => tracked.debt.dirty);
      if (segments.length > 0 || this.deleting.size > 0 || repaired) await this.checkpoint();
      const sorted = [...records.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      return { records: sorted, failures, warnings };
    } finally {
      this.loadWarnings = null;
    }
  }

  /** Temp files, unfinished conversions and deletions (`names`: the sessions folder's); whether there were any. */
  private async removeLeftovers(names: readonly string[]): Promise<boolean> {
    let removed = false;
    for (const [directory, listed] of [[this.directory, names], [this.walDirectory, await readdir(this.walDirectory)]] as const) {
      for (const name of listed) {
        if (!LEFTOVER.test(name)) continue;
        await rm(path.join(directory, name), { recursive: true, force: true });
        this.warn(path.join(directory, name), "removed what an interrupted write left behind");
        removed = true;
      }
    }
    return removed;
  }

  /** Loads every session folder; returns the records, and the folders without a snapshot (for removeOrphanFolders). */
  private async loadFolders(listing: readonly Dirent[], failures: LoadFailure[]): Promise<{ records: Map<string, SessionRecord>; unsnapshotted: string[] }> {
    const records = new Map<string, SessionRecord>();
    const unsnapshotted: string[] = [];
    // Listed in name order (the same order as the ids' `<`); the records come in that order.
    const names = listing.flatMap((entry) => (entry.isDirectory() && SESSION_ID.test(entry.name) ? [entry.name] : []));
    // Read synchronously, one folder after another, unless worker threads read ahead: start-up serves
    // nothing yet, and a restart reading 100k folders spends more on the round trips of asynchronous
    // calls than on the reads themselves.
    const parallelism = availableParallelism();
    const threads = this.options.startupThreads ?? (parallelism > 1 ? Math.min(4, parallelism) : 0);
    const configs = new RecentValues();
    await forEachFolder(this.directory, names, { threads }, (id, folder, reads) => {
      try {
        const record = this.loadFolder(id, folder, reads);
        if (record) {
          // Sessions mostly have equal configs: one object for them all, the copies die young.
          record.config = configs.share(record.config);
          records.set(id, record);
        } else unsnapshotted.push(id);
      } catch (error) {
        failures.push({ location: folder, error: (error as Error).message });
        this.broken.add(id);
      }
    });
    return { records, unsnapshotted };
  }

  private loadFolder(id: string, folder: string, reads: FolderReads): SessionRecord | null {
    const snapshot = reads.snapshot();
    if (snapshot && snapshot.record.id !== id) throw new Error(`holds session ${String(snapshot.record.id)}, not ${id}`);
    // Without a snapshot nothing in the folder counts yet: the log may still make it a session (its
    // first checkpoint then truncates the files), or the folder is removed as an orphan.
    const messagesName = snapshot ? messagesFile(snapshot.messages.generation) : "";
    const eventsName = snapshot ? eventsFile(snapshot.events.generation) : "";
    const names = reads.listing();
    for (const name of names) {
      if (name === messagesName || name === eventsName || name === SNAPSHOT) continue;
      if (name.endsWith(".tmp") || (snapshot && GENERATION_FILE.test(name))) {
        rmSync(path.join(folder, name), { force: true });
        this.warn(path.join(folder, name), "removed what an interrupted write left behind");
      }
    }
    if (!snapshot) return null;
    // A file the folder does not list is not opened (a session with no events has no events file),
    // nor one of which no line counts.
    const count = snapshot.messages.count;
    const read = messagesFrom((count > 0 && names.includes(messagesName) ? reads.file(messagesName) : null) ?? Buffer.alloc(0), messagesName, count);
    const eventsSize = names.includes(eventsName) ? reads.size(eventsName) : 0;
    // The file as the snapshot left it (nothing appended since) is not read: its size and last sequence are known.
    const known = snapshot.events.bytes === eventsSize && Number.isSafeInteger(snapshot.events.lastSequence) && eventsSize > 0;
    const tail = known
      ? { bytes: eventsSize, lastSequence: snapshot.events.lastSequence!, torn: 0, scan: null }
      : eventsSize === 0
        ? eventsTailOf(Buffer.alloc(0))
        : eventsTailOfFile(inFolder(folder, eventsName), eventsSize, () => reads.file(eventsName));
    if (tail.torn > 0) this.warn(inFolder(folder, eventsName), `dropped a torn last line (${tail.torn} bytes) of an interrupted append`);
    const tracked = this.track(id, noDebt(read.messages.length));
    tracked.messageCount = read.messages.length;
    tracked.lastMessageId = read.messages.at(-1)?.id ?? null;
    tracked.lastEventSequence = tail.lastSequence;
    tracked.lsn = snapshot.lsn;
    tracked.disk = {
      committed: true,
      messagesGeneration: snapshot.messages.generation,
      messageCount: read.messages.length,
      messagesBytes: read.bytes,
      eventsGeneration: snapshot.events.generation,
      eventsBytes: tail.bytes,
      lastEventSequence: tail.lastSequence,
    };
    if (tail.scan?.damagedLine) {
      // Kept so the damage is reported once; an intact file's index is read when first needed.
      tracked.index = tail.scan.index;
      this.noteEventDamage(tracked, inFolder(folder, eventsName), tail.scan);
    }
    if (read.problem) {
      const messagesPath = inFolder(folder, messagesName);
      this.warn(messagesPath, `session ${id}: ${read.problem}`);
      // The start-up checkpoint writes the messages kept to a new generation; the damaged file is kept aside.
      (tracked.damaged ??= new Set()).add(messagesPath);
      tracked.disk.messageCount = count;
      tracked.debt.dirty = true;
      tracked.fields = fieldsOf(snapshot.record);
    }
    // The parsed snapshot is this store's own: its record becomes the session's, not copied.
    const record = snapshot.record as SessionRecord;
    record.messages = read.messages;
    return record;
  }

  /** Applies the log entries each session's files do not include yet; returns the highest entry number. */
  private async replay(segments: number[], records: Map<string, SessionRecord>): Promise<number> {
    let maxLsn = 0;
    const touched = new Map<string, { from: number; events: EventLine[] }>();
    // What each session's files hold (entries up to its snapshot's), and the entries applied since.
    const base = new Map([...this.sessions].map(([id, tracked]) => [id, tracked.lsn]));
    const applied = new Set<number>();
    const stopped = new Set<string>();
    // Said once per session; names the file, never what the entry held.
    const stop = (id: string, location: string, why: string): void => {
      if (stopped.has(id)) return;
      stopped.add(id);
      this.warn(location, `session ${id}: ${why}; the session is restored as it was before it, without its later entries`);
    };
    for (const segment of segments) {
      const { lines, torn } = await readSegment(this.walDirectory, segment);
      const location = path.join(this.walDirectory, segmentName(segment));
      if (torn > 0) this.warn(location, `dropped a torn last entry (${torn} bytes) of an interrupted append`);
      for (const line of lines) {
        const entry = parseWalEntry(line);
        if (!entry) {
          const head = headOf(line);
          if (!head) {
            this.warn(location, "skipped a damaged entry; whose it was cannot be read");
            continue;
          }
          maxLsn = Math.max(maxLsn, head.n);
          // One the session's files already hold does not matter.
          if (!this.broken.has(head.id) && head.n > (this.sessions.get(head.id)?.lsn ?? 0)) stop(head.id, location, `entry ${head.n} is damaged`);
          continue;
        }
        maxLsn = Math.max(maxLsn, entry.n);
        const { id } = entry;
        if (this.broken.has(id)) continue;
        let tracked = this.sessions.get(id);
        if (tracked && entry.n <= tracked.lsn) continue;
        if (entry.op === "delete") {
          this.deleting.add(id);
          this.sessions.delete(id);
          records.delete(id);
          touched.delete(id);
          continue;
        }
        // Applied only right after what it follows, so a session never gets a hole (entries from before `prev` existed: unless one was damaged).
        const follows = entry.prev === undefined ? !stopped.has(id) : entry.prev <= (base.get(id) ?? 0) || applied.has(entry.prev);
        const length = tracked ? (records.get(id)?.messages.length ?? 0) : 0;
        if (!follows || (entry.from ?? 0) > length) {
          stop(id, location, follows ? `entry ${entry.n} continues messages the session's files do not have` : `entry ${entry.n} follows one that is damaged or missing`);
          continue;
        }
        applied.add(entry.n);
        let record = records.get(id);
        if (!record || !tracked) {
          tracked = this.track(id);
          record = { messages: [] } as unknown as SessionRecord;
          records.set(id, record);
        }
        const fields = record as unknown as Record<string, unknown>;
        if (entry.replace) for (const key of Object.keys(fields)) if (key !== "messages") delete fields[key];
        Object.assign(fields, entry.set ?? {});
        for (const key of entry.unset ?? []) delete fields[key];
        const from = Math.min(entry.from ?? record.messages.length, record.messages.length);
        record.messages.length = from;
        for (const message of entry.messages ?? []) record.messages.push(message);
        const change = touched.get(id) ?? { from, events: [] };
        change.from = Math.min(change.from, from);
        for (const event of entry.events ?? []) {
          if (event.sequence > Math.max(tracked.lastEventSequence, change.events.at(-1)?.sequence ?? 0)) change.events.push(lineOf(event));
        }
        touched.set(id, change);
        tracked.lsn = entry.n;
      }
    }
    for (const [id, change] of touched) {
      const tracked = this.sessions.get(id)!;
      const record = records.get(id)!;
      tracked.fields = fieldsOf(record);
      tracked.messageCount = record.messages.length;
      tracked.lastMessageId = record.messages.at(-1)?.id ?? null;
      tracked.lastEventSequence = Math.max(tracked.lastEventSequence, change.events.at(-1)?.sequence ?? 0);
      const keep = Math.min(change.from, tracked.disk?.messageCount ?? 0);
      tracked.debt = { dirty: true, keep, messages: record.messages.slice(keep).map((message) => JSON.stringify(message)), events: change.events };
    }
    return maxLsn;
  }

  /**
   * The log lines of the sessions that were not restored, verbatim and in order: replay applied none
   * of them (or dropped what it applied), and they are all that is left of those changes once the
   * segments go. A line whose session cannot be told is not among them.
   */
  private async collectUnapplied(segments: number[]): Promise<Map<string, string[]>> {
    const unapplied = new Map<string, string[]>();
    for (const segment of segments) {
      const { lines } = await readSegment(this.walDirectory, segment);
      for (const line of lines) {
        const id = headOf(line)?.id ?? parseWalEntry(line)?.id;
        if (id === undefined || !this.broken.has(id)) continue;
        const list = unapplied.get(id);
        if (list) list.push(line);
        else unapplied.set(id, [line]);
      }
    }
    return unapplied;
  }

  /**
   * Folders without a snapshot (of those `loadFolders` found) that no log entry made into a session:
   * an interrupted first write or deletion.
   */
  private async removeOrphanFolders(unsnapshotted: readonly string[]): Promise<void> {
    for (const id of unsnapshotted) {
      if (this.sessions.has(id) || this.broken.has(id)) continue;
      const folder = path.join(this.directory, id);
      const hasSnapshot = await readFile(path.join(folder, SNAPSHOT)).then(
        () => true,
        () => false,
      );
      if (hasSnapshot) continue;
      // Log entries kept for repair are never removed with the rest.
      const kept = (await readdir(folder).catch(() => [] as string[])).filter((name) => UNAPPLIED_WAL_FILE.test(name));
      if (kept.length > 0) {
        this.warn(folder, `session ${id}: kept a folder without a snapshot; it holds write-ahead-log entries that were never applied (${kept.sort().join(", ")})`);
        continue;
      }
      await rm(folder, { recursive: true, force: true });
      this.warn(folder, "removed a session folder without a snapshot (an interrupted first write or deletion)");
    }
  }
}
