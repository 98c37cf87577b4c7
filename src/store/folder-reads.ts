import { readdirSync, statSync } from "node:fs";
import path from "node:path";
import { Worker } from "node:worker_threads";
import { decodeSnapshot, FileReader, SNAPSHOT, type Snapshot } from "./session-files.js";

/**
 * How start-up gets at a session folder's files (file-store.ts decides what they mean): read on
 * the spot, or read ahead by worker threads.
 *
 * A restart reads 100k folders: a listing, the snapshot, the messages file and the size of the
 * events file of each, some 13 system calls a folder and most of the restart's time. Worker threads
 * make those calls ahead, in batches, while the main thread parses the batches before; with more
 * than one CPU the two overlap. The workers only read: whatever they could not read, or read other
 * than what the main thread turns out to need, the main thread reads itself, so an error (a folder
 * it may not open, say) is met, and reported, exactly as without them.
 *
 * Most of a snapshot's text is the session's config, most often the same text as the sessions'
 * before. A worker sends such a text once per batch and each snapshot without it (`0` in its
 * place), so the main thread parses it once, not once a session.
 */
export interface FolderReads {
  /** The snapshot, decoded (decodeSnapshot: it throws as that does), or null when there is none. */
  snapshot(): Snapshot | null;
  /** The names in the folder. */
  listing(): string[];
  /** A file's bytes, valid until the next read; null when it does not exist. */
  file(name: string): Buffer | null;
  /** A file's size. */
  size(name: string): number;
}

/** A file of a folder: `folder` is resolved already and `name` a plain name, so nothing is left to normalise. */
export function inFolder(folder: string, name: string): string {
  return `${folder}${path.sep}${name}`;
}

/** Reads made on the spot, synchronously (start-up serves nothing yet; see file-store.ts). */
export class DirectReads implements FolderReads {
  private folder = "";

  constructor(private readonly reader = new FileReader()) {}

  /** Points these reads at another folder. */
  at(folder: string): this {
    this.folder = folder;
    return this;
  }

  snapshot(): Snapshot | null {
    const bytes = this.reader.read(inFolder(this.folder, SNAPSHOT));
    return bytes === null ? null : decodeSnapshot(bytes.toString("utf8"));
  }

  listing(): string[] {
    return readdirSync(this.folder);
  }

  file(name: string): Buffer | null {
    return this.reader.read(inFolder(this.folder, name));
  }

  size(name: string): number {
    return statSync(inFolder(this.folder, name)).size;
  }
}

/** What a worker read of one folder; null when anything failed (the main thread then reads it all). */
type Prefetched = {
  listing: string[];
  /** The snapshot's text, its record's config replaced by `0` when `config` is not -1. */
  snapshot: string | null;
  /** Which of the batch's config texts the snapshot's was, or -1 when it is left in. */
  config: number;
  /** The messages file the snapshot names, when it has lines that count and the folder lists it ("": not read). */
  messagesName: string;
  messages: Uint8Array | null;
  /** The events file the snapshot names, when the folder lists it ("": not measured). */
  eventsName: string;
  eventsSize: number;
} | null;

/** A worker's batch: its folders, and the config texts their snapshots left out. */
interface Batch {
  index: number;
  folders: Prefetched[];
  configs: string[];
}

/** Reads of a folder a worker made, the rest made on the spot. */
class PrefetchedReads implements FolderReads {
  constructor(
    private readonly data: NonNullable<Prefetched>,
    /** The batch's configs, each parsed once. */
    private readonly config: (index: number) => unknown,
    private readonly direct: DirectReads,
  ) {}

  snapshot(): Snapshot | null {
    const { snapshot, config } = this.data;
    if (snapshot === null) return null;
    if (config < 0) return decodeSnapshot(snapshot);
    try {
      const decoded = decodeSnapshot(snapshot);
      const record = decoded.record as { config: unknown };
      if (record.config === 0) {
        record.config = this.config(config);
        return decoded;
      }
    } catch {
      // Read again below: an error is then reported as the file's, not as the shortened text's.
    }
    return this.direct.snapshot();
  }

  listing(): string[] {
    return this.data.listing;
  }

  file(name: string): Buffer | null {
    const { messagesName, messages } = this.data;
    if (name === messagesName && messages) return Buffer.from(messages.buffer, messages.byteOffset, messages.byteLength);
    return this.direct.file(name);
  }

  size(name: string): number {
    return name === this.data.eventsName ? this.data.eventsSize : this.direct.size(name);
  }
}

/** Folders read as one batch, by a worker or by the main thread. */
const BATCH = 128;
/** Below this many folders, workers cost more to start than they save. */
const MIN_FOLDERS = 4 * BATCH;
/** How many batches workers may read ahead of the main thread (what they read waits in memory till then). */
const AHEAD = 16;

/** `claims`: the next batch for a worker to take, the batches the main thread is done with, then each batch's claim. */
const CURSOR = 0;
const DONE = 1;
const CLAIMS = 2;
/** A batch's claim: nobody's yet, a worker's, the main thread's. */
const FREE = 0;
const WORKER = 1;
const MAIN = 2;

export interface FolderReadOptions {
  /** Worker threads that read ahead (none: every read is made on the spot). */
  threads: number;
  /** Whether the main thread reads the batches no worker has claimed yet (default true; tests turn it off to see the workers read everything). */
  mainReads?: boolean;
  /** Workers start only for at least this many folders (default 512). */
  minFolders?: number;
}

/**
 * Calls `load` with the reads of each folder of `directory` named in `ids`, in their order. With
 * `threads` > 0 and enough folders, worker threads read batches ahead: each takes the next batch
 * nobody has claimed. The main thread goes through the batches in order; one that no worker has
 * claimed yet it claims and reads itself, so it never waits for a worker that is behind (or gets
 * little CPU), only for a batch a worker is reading at that moment.
 */
export async function forEachFolder(
  directory: string,
  ids: readonly string[],
  options: FolderReadOptions,
  load: (id: string, folder: string, reads: FolderReads) => void,
): Promise<void> {
  const direct = new DirectReads();
  // Config texts as parsed, one object per text for all batches (sessions share equal configs); a
  // few dozen kept, should every session have its own.
  const parsed = new Map<string, unknown>();
  const parse = (text: string): unknown => {
    let value = parsed.get(text);
    if (value !== undefined) return value;
    if (parsed.size >= 64) parsed.clear();
    parsed.set(text, (value = JSON.parse(text)));
    return value;
  };
  const loadBatch = (b: number, batch: Batch | null): void => {
    const config = (index: number): unknown => parse(batch!.configs[index]!);
    for (let i = b * BATCH, end = Math.min(ids.length, i + BATCH); i < end; i++) {
      const id = ids[i]!;
      const folder = inFolder(directory, id);
      const data = batch?.folders[i - b * BATCH];
      load(id, folder, data ? new PrefetchedReads(data, config, direct.at(folder)) : direct.at(folder));
    }
  };
  const batches = Math.ceil(ids.length / BATCH);
  const workers = ids.length < (options.minFolders ?? MIN_FOLDERS) ? 0 : Math.min(options.threads, batches);
  const mainReads = options.mainReads ?? true;
  const claims = new Int32Array(new SharedArrayBuffer(4 * (CLAIMS + batches)));
  // Each batch a worker claimed arrives from it, or null if it fails (the main thread then reads it).
  const settle: Array<(batch: Batch | null) => void> = [];
  const arrivals = Array.from({ length: batches }, (_, b) => new Promise<Batch | null>((resolve) => (settle[b] = resolve)));
  const giveUp = () => {
    for (const resolve of settle) resolve(null);
  };
  const pool: Worker[] = [];
  for (let w = 0; w < workers; w++) {
    try {
      const worker = new Worker(WORKER_SOURCE, { eval: true, execArgv: [], workerData: { directory, ids, batch: BATCH, ahead: AHEAD, claims } });
      worker.on("message", (batch: Batch) => settle[batch.index]!(batch));
      // A worker that ends normally has handed over every batch it claimed (its messages all come
      // before "exit"); one that fails may not have: the batches still missing are read here.
      worker.on("error", giveUp);
      // A batch that cannot be received never arrives: read here instead of waiting for it.
      worker.on("messageerror", giveUp);
      worker.on("exit", (code) => {
        if (code !== 0) giveUp();
      });
      pool.push(worker);
    } catch {
      break;
    }
  }
  try {
    for (let b = 0; b < batches; b++) {
      if ((mainReads || pool.length === 0) && Atomics.compareExchange(claims, CLAIMS + b, FREE, MAIN) === FREE) loadBatch(b, null);
      else loadBatch(b, await arrivals[b]!);
      // Let go of the batch (the arrivals of later ones are kept until their turn), and let the workers on.
      arrivals[b] = Promise.resolve(null);
      Atomics.store(claims, DONE, b + 1);
      Atomics.notify(claims, DONE);
    }
  } finally {
    await Promise.all(pool.map((worker) => worker.terminate()));
  }
}

/**
 * The workers' code, plain JavaScript (a worker runs no TypeScript loader). For each folder: its
 * listing and snapshot, and, when the snapshot's head names them (as encodeSnapshot writes it), its
 * messages file (if lines of it count) and the size of its events file. The main thread parses
 * everything again; a head the pattern misses only means those two are read there.
 *
 * A snapshot laid out as this store writes it (LAYOUT: the header, then the record's fields of
 * plain values, up to its config) is sent with its config's text replaced by 0 when that text is
 * one of the batch's, found by comparing texts; a config text not seen lately is learnt from a
 * parse. The pattern reads each value whole (a string with its escapes), so "config" there is the
 * record's own key.
 */
/** A JSON primitive: a string (escapes included), a number, null, true or false. */
const PRIMITIVE = String.raw`(?:"(?:[^"\\]|\\.)*"|-?\d[\d.eE+-]*|null|true|false)`;
const LAYOUT =
  String.raw`^\{"format":"agentd-session-snapshot","version":2,"lsn":\d+,"messages":\{"generation":(\d+),"count":(\d+)\},"events":\{"generation":(\d+)[^{}]*\},` +
  String.raw`"record":\{(?:"\w+":${PRIMITIVE},)*"config":`;

const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const { closeSync, openSync, readdirSync, readSync, statSync } = require("node:fs");
const { join } = require("node:path");
const HEAD = /^\\{"format":"agentd-session-snapshot","version":2,"lsn":\\d+,"messages":\\{"generation":(\\d+),"count":(\\d+)\\},"events":\\{"generation":(\\d+)\\D/;
const LAYOUT = new RegExp(${JSON.stringify(LAYOUT)});
let buffer = Buffer.allocUnsafe(64 * 1024);
function read(file) {
  let fd;
  try {
    fd = openSync(file, "r");
  } catch (error) {
    if (error.code === "ENOENT") return null;
    throw error;
  }
  try {
    let length = 0;
    for (;;) {
      if (length === buffer.length) {
        const bigger = Buffer.allocUnsafe(buffer.length * 2);
        buffer.copy(bigger, 0, 0, length);
        buffer = bigger;
      }
      const n = readSync(fd, buffer, length, buffer.length - length, null);
      if (n === 0) return buffer.subarray(0, length);
      length += n;
    }
  } finally {
    closeSync(fd);
  }
}
// Config texts met lately (most recent first), and this batch's.
const recent = [];
let configs = [];
function withoutConfig(snapshot, layout) {
  const start = layout[0].length;
  let text = configs.find((config) => snapshot.startsWith(config, start));
  if (text === undefined) {
    text = recent.find((config) => snapshot.startsWith(config, start));
    if (text === undefined) {
      try {
        text = JSON.stringify(JSON.parse(snapshot).record.config);
      } catch {
        return null;
      }
      // Only an object's text, found as it is in the file, may be left out.
      if (typeof text !== "string" || text[0] !== "{" || !snapshot.startsWith(text, start)) return null;
      recent.unshift(text);
      if (recent.length > 8) recent.pop();
    }
    configs.push(text);
  }
  return { text: snapshot.slice(0, start) + "0" + snapshot.slice(start + text.length), config: configs.indexOf(text) };
}
function prefetch(folder, transfer) {
  const listing = readdirSync(folder);
  const bytes = read(join(folder, "${SNAPSHOT}"));
  let snapshot = bytes === null ? null : bytes.toString("utf8");
  let config = -1;
  const layout = snapshot === null ? null : LAYOUT.exec(snapshot);
  const head = layout ?? (snapshot === null ? null : HEAD.exec(snapshot));
  if (layout) {
    const shortened = withoutConfig(snapshot, layout);
    if (shortened) ({ text: snapshot, config } = shortened);
  }
  let messagesName = "", messages = null, eventsName = "", eventsSize = -1;
  if (head) {
    const name = "messages." + head[1] + ".jsonl";
    if (Number(head[2]) > 0 && listing.includes(name)) {
      const content = read(join(folder, name));
      if (content !== null) {
        messages = new Uint8Array(content);
        messagesName = name;
        transfer.push(messages.buffer);
      }
    }
    const events = "events." + head[3] + ".jsonl";
    if (listing.includes(events)) {
      eventsSize = statSync(join(folder, events)).size;
      eventsName = events;
    }
  }
  return { listing, snapshot, config, messagesName, messages, eventsName, eventsSize };
}
const { directory, ids, batch, ahead, claims } = workerData;
const batches = Math.ceil(ids.length / batch);
for (;;) {
  const index = Atomics.add(claims, ${CURSOR}, 1);
  if (index >= batches) break;
  // Not too far ahead of the main thread: what is read waits in memory until it gets there.
  for (let done = Atomics.load(claims, ${DONE}); index > done + ahead; done = Atomics.load(claims, ${DONE})) Atomics.wait(claims, ${DONE}, done, 1000);
  if (Atomics.compareExchange(claims, ${CLAIMS} + index, ${FREE}, ${WORKER}) !== ${FREE}) continue;
  const transfer = [];
  configs = [];
  const folders = ids.slice(index * batch, (index + 1) * batch).map((id) => {
    try {
      return prefetch(join(directory, id), transfer);
    } catch {
      return null;
    }
  });
  parentPort.postMessage({ index, folders, configs }, transfer);
}
`;
