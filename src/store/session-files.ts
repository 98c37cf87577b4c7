import { closeSync, openSync, readSync } from "node:fs";
import { mkdir, open, readdir, readFile } from "node:fs/promises";
import path from "node:path";
import type { SessionEvent } from "../events/types.js";
import { syncDirectory } from "./files.js";
import { isPlainObject } from "../util/values.js";
import type { MessageRecord, SessionRecord } from "./record.js";

/**
 * One session's folder, `<dataDir>/sessions/<id>/`:
 *   snapshot.json             the record without its messages, replaced atomically (temp, fsync, rename)
 *   messages.<gen>.jsonl      one message per line, append-only; the snapshot says how many lines count
 *   events.<gen>.jsonl        one event per line, append-only, trimmed to the retention bounds
 *   unapplied-wal.<n>.jsonl   write-ahead-log entries that could not be applied because the session's
 *                             files could not be loaded, kept verbatim for repair before the log let them
 *                             go; written once, never changed or removed by the store
 * A rewrite (messages that changed, events trimmed) writes the next generation and switches to it
 * in the snapshot, so a crash leaves the old pair or the new one. Files of other generations are
 * leftovers, removed at start-up; a damaged file, once replaced, stays as `<name>.damaged` for repair.
 */
export const SNAPSHOT = "snapshot.json";
export const SNAPSHOT_FORMAT = "agentd-session-snapshot";

export const messagesFile = (generation: number): string => `messages.${generation}.jsonl`;
export const eventsFile = (generation: number): string => `events.${generation}.jsonl`;
export const GENERATION_FILE = /^(messages|events)\.(\d+)\.jsonl$/;
export const unappliedWalFile = (n: number): string => `unapplied-wal.${n}.jsonl`;
export const UNAPPLIED_WAL_FILE = /^unapplied-wal\.(\d+)\.jsonl$/;

/** A session id as the file store accepts it: it names a folder, so no dots, slashes or other paths. */
export const SESSION_ID = /^[A-Za-z0-9_-]{1,128}$/;

export interface Snapshot {
  format: typeof SNAPSHOT_FORMAT;
  version: 2;
  /** The last write-ahead-log entry this snapshot includes; replay applies only later ones. */
  lsn: number;
  messages: { generation: number; count: number };
  /**
   * The events file, and (from snapshots written since) its size and last sequence when the
   * snapshot was written: a file of that size need not be read at start-up.
   */
  events: { generation: number; bytes?: number; lastSequence?: number };
  record: Omit<SessionRecord, "messages">;
}

/** The snapshot file's text; `recordJson` is the record without messages, already serialised. */
export function encodeSnapshot(lsn: number, messages: Snapshot["messages"], events: Snapshot["events"], recordJson: string): string {
  return `{"format":"${SNAPSHOT_FORMAT}","version":2,"lsn":${lsn},"messages":${JSON.stringify(messages)},"events":${JSON.stringify(events)},"record":${recordJson}}`;
}

export function decodeSnapshot(text: string): Snapshot {
  const value: unknown = JSON.parse(text);
  if (!isPlainObject(value) || value.format !== SNAPSHOT_FORMAT) throw new Error("not a session snapshot");
  if (value.version !== 2) throw new Error(`unsupported snapshot version ${JSON.stringify(value.version)}`);
  const messages = value.messages;
  const events = value.events;
  if (typeof value.lsn !== "number" || !isPlainObject(messages) || !isPlainObject(events) || !isPlainObject(value.record)) {
    throw new Error("snapshot is malformed");
  }
  if (!Number.isInteger(messages.generation) || !Number.isInteger(messages.count) || !Number.isInteger(events.generation)) {
    throw new Error("snapshot names no valid log files");
  }
  return value as unknown as Snapshot;
}

/**
 * Reads whole files synchronously into one buffer it keeps and reuses: open, read to the end, close,
 * without the stat and the buffer of its own that readFileSync costs for each file. For start-up,
 * which reads two small files in each of thousands of folders, one after another.
 */
export class FileReader {
  private buffer = Buffer.allocUnsafe(64 * 1024);

  /** The file's bytes, valid until the next read (a view of the shared buffer); null when it does not exist. */
  read(file: string): Buffer | null {
    let fd: number;
    try {
      fd = openSync(file, "r");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw error;
    }
    try {
      let length = 0;
      for (;;) {
        if (length === this.buffer.length) {
          const bigger = Buffer.allocUnsafe(this.buffer.length * 2);
          this.buffer.copy(bigger, 0, 0, length);
          this.buffer = bigger;
        }
        // To the end, whatever a read returns (a short read is not taken for the end of the file).
        const read = readSync(fd, this.buffer, length, this.buffer.length - length, null);
        if (read === 0) return this.buffer.subarray(0, length);
        length += read;
      }
    } finally {
      closeSync(fd);
    }
  }
}

/** The complete lines of a JSONL buffer from `start`, each with the offset just past its newline. */
function* lines(buffer: Buffer, start = 0): Generator<{ text: string; end: number }> {
  let position = start;
  for (;;) {
    const newline = buffer.indexOf(0x0a, position);
    if (newline < 0) return;
    yield { text: buffer.toString("utf8", position, newline), end: newline + 1 };
    position = newline + 1;
  }
}

export interface MessagesRead {
  messages: MessageRecord[];
  /** Bytes of the lines that count (the rest, if any, is a torn or unfinished append). */
  bytes: number;
  /** Why fewer than `count` messages were read (names the file and the line), or null. */
  problem: string | null;
}

/**
 * The first `count` messages of a messages file. A damaged or missing line among them ends the
 * read: a conversation is only meaningful from its start, so the session keeps the messages before
 * it rather than a history with a hole. Lines after `count` are unfinished appends and are not read.
 */
export function messagesFrom(buffer: Buffer, name: string, count: number): MessagesRead {
  const messages: MessageRecord[] = [];
  let bytes = 0;
  let damaged = false;
  while (messages.length < count) {
    const newline = buffer.indexOf(0x0a, bytes);
    if (newline < 0) break;
    const message = parseLine(buffer.toString("utf8", bytes, newline));
    if (!isPlainObject(message) || typeof message.id !== "string") {
      damaged = true;
      break;
    }
    messages.push(message as unknown as MessageRecord);
    bytes = newline + 1;
  }
  if (messages.length === count) return { messages, bytes, problem: null };
  const line = messages.length + 1;
  const problem = damaged
    ? `line ${line} of ${name} is damaged; the session keeps the ${messages.length} messages before it (of ${count})`
    : `${name} ends before line ${line}; the session keeps the ${messages.length} messages before it (of ${count})`;
  return { messages, bytes, problem };
}

function parseLine(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** An events file as lines: the sequence of each, and where each ends (from byte `start`). */
export interface EventIndex {
  /** Where the first indexed line starts: past a damaged line, 0 otherwise. */
  start: number;
  sequences: number[];
  ends: number[];
}

export interface EventsScan {
  index: EventIndex;
  /** Bytes of complete lines; anything after them is a torn append. */
  bytes: number;
  /** Bytes after the last complete line (dropped). */
  torn: number;
  /** The last damaged line (1-based), or null. */
  damagedLine: number | null;
}

/**
 * Reads an events file (up to byte `limit`) into an index. A damaged line, or one out of sequence,
 * restarts the index after it: what is retained is the newest events without a gap, and `oldest`
 * tells a reader that older ones are gone, as after a trim. A torn last line is left out.
 */
export async function scanEvents(file: string, limit = Infinity): Promise<EventsScan> {
  const whole = await readFile(file).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return Buffer.alloc(0);
    throw error;
  });
  return scanEventLines(whole.length > limit ? whole.subarray(0, limit) : whole);
}

/** scanEvents over a file's bytes already read. */
export function scanEventLines(buffer: Buffer): EventsScan {
  const index: EventIndex = { start: 0, sequences: [], ends: [] };
  let bytes = 0;
  let number = 0;
  let damagedLine: number | null = null;
  for (const line of lines(buffer)) {
    number++;
    bytes = line.end;
    const sequence = sequenceOf(line.text);
    if (sequence === null || sequence <= (index.sequences.at(-1) ?? 0)) {
      damagedLine = number;
      index.start = line.end;
      index.sequences = [];
      index.ends = [];
      continue;
    }
    index.sequences.push(sequence);
    index.ends.push(line.end);
  }
  return { index, bytes, torn: buffer.length - bytes, damagedLine };
}

/** What the end of an events file tells: how many bytes are complete lines, the last sequence. */
export interface EventsTail {
  bytes: number;
  lastSequence: number;
  torn: number;
  /** The whole file's scan, when it had to be read whole. */
  scan: EventsScan | null;
}

/** Past this size an events file's end is read, not the whole file. */
const EVENTS_TAIL_BYTES = 256 * 1024;

/** eventsTailOfFile of a small file (at most EVENTS_TAIL_BYTES) already read whole. */
export function eventsTailOf(whole: Buffer): EventsTail {
  const scan = scanEventLines(whole);
  return { bytes: scan.bytes, lastSequence: scan.index.sequences.at(-1) ?? 0, torn: scan.torn, scan };
}

/**
 * The end of an events file of `size` bytes without reading all of it, synchronously (start-up):
 * how many bytes are complete lines and the last sequence. Reads the whole file only when it is
 * small or the tail does not show a complete, readable line; that scan is returned too.
 */
export function eventsTailOfFile(file: string, size: number, whole: () => Buffer | null): EventsTail {
  const TAIL = EVENTS_TAIL_BYTES;
  if (size > TAIL) {
    const start = size - TAIL;
    const buffer = Buffer.alloc(TAIL);
    const fd = openSync(file, "r");
    try {
      readSync(fd, buffer, 0, TAIL, start);
    } finally {
      closeSync(fd);
    }
    const lastNewline = buffer.lastIndexOf(0x0a);
    const previous = lastNewline > 0 ? buffer.lastIndexOf(0x0a, lastNewline - 1) : -1;
    if (previous >= 0) {
      const sequence = sequenceOf(buffer.toString("utf8", previous + 1, lastNewline));
      if (sequence !== null) return { bytes: start + lastNewline + 1, lastSequence: sequence, torn: size - (start + lastNewline + 1), scan: null };
    }
  }
  return eventsTailOf(whole() ?? Buffer.alloc(0));
}

function sequenceOf(line: string): number | null {
  try {
    const value: unknown = JSON.parse(line);
    return isPlainObject(value) && Number.isSafeInteger(value.sequence) ? (value.sequence as number) : null;
  } catch {
    return null;
  }
}

/** Events from byte `start` to byte `end` of an events file (whole lines). */
export async function readEventRange(file: string, start: number, end: number): Promise<SessionEvent[]> {
  return [...lines(await readBytes(file, start, end))].map((line) => JSON.parse(line.text) as SessionEvent);
}

/** Bytes `start` to `end` of a file, as they are. */
export async function readBytes(file: string, start: number, end: number): Promise<Buffer> {
  if (end <= start) return Buffer.alloc(0);
  const handle = await open(file, "r");
  try {
    const buffer = Buffer.alloc(end - start);
    let read = 0;
    while (read < buffer.length) {
      const { bytesRead } = await handle.read(buffer, read, buffer.length - read, start + read);
      if (bytesRead === 0) throw new Error(`${path.basename(file)} is shorter than expected`);
      read += bytesRead;
    }
    return buffer;
  } finally {
    await handle.close();
  }
}

/** Where the first `count` lines of a file end. */
export async function endOfLines(file: string, count: number): Promise<number> {
  if (count === 0) return 0;
  const buffer = await readFile(file);
  let seen = 0;
  for (const line of lines(buffer)) if (++seen === count) return line.end;
  throw new Error(`${path.basename(file)} has fewer than ${count} lines`);
}

/**
 * Keeps write-ahead-log lines of a session that could not be restored in a new
 * `unapplied-wal.<n>.jsonl` of its folder (created if need be): fsynced, its name made durable, never
 * replacing a file. Lines some earlier such file already holds are left out (a start-up interrupted
 * before the log was let go finds the same ones again). Returns the file and how many lines it got,
 * or null when every line was kept already.
 */
export async function keepUnappliedEntries(folder: string, entries: readonly string[]): Promise<{ file: string; count: number } | null> {
  let names: string[];
  try {
    names = await readdir(folder);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    await mkdir(folder, { mode: 0o700 });
    await syncDirectory(path.dirname(folder));
    names = [];
  }
  const kept = new Set<string>();
  let last = 0;
  for (const name of names) {
    const match = UNAPPLIED_WAL_FILE.exec(name);
    if (!match) continue;
    last = Math.max(last, Number(match[1]));
    for (const line of (await readFile(path.join(folder, name), "utf8")).split("\n")) kept.add(line);
  }
  const lines = entries.filter((line) => !kept.has(line));
  if (lines.length === 0) return null;
  const data = Buffer.from(`${lines.join("\n")}\n`);
  for (let n = last + 1; ; n++) {
    const file = path.join(folder, unappliedWalFile(n));
    let handle;
    try {
      // Exclusive: an existing file is never written over.
      handle = await open(file, "wx", 0o600);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "EEXIST") continue;
      throw error;
    }
    try {
      let offset = 0;
      while (offset < data.length) offset += (await handle.write(data, offset, data.length - offset)).bytesWritten;
      await handle.datasync();
    } finally {
      await handle.close();
    }
    await syncDirectory(folder);
    return { file, count: lines.length };
  }
}
