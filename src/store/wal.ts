import { open, readdir, readFile, rm, type FileHandle } from "node:fs/promises";
import path from "node:path";
import { syncDirectory } from "./files.js";

interface Waiter {
  line: string;
  /** Runs once the line is durable, before any waiter is released (so state and disk move together). */
  apply: () => void;
  resolve: () => void;
  reject: (error: Error) => void;
}

export interface WalStats {
  bytes: number;
  syncs: number;
  batches: number;
}

const SEGMENT = /^(\d{16})\.log$/;

export function segmentName(segment: number): string {
  return `${String(segment).padStart(16, "0")}.log`;
}

/** The segments in `directory`, oldest first. */
export async function listSegments(directory: string): Promise<number[]> {
  const names = await readdir(directory).catch(() => [] as string[]);
  return names.flatMap((name) => {
    const match = SEGMENT.exec(name);
    return match ? [Number(match[1])] : [];
  }).sort((a, b) => a - b);
}

/** A segment's complete lines, and what follows the last one (a torn append), if anything. */
export async function readSegment(directory: string, segment: number): Promise<{ lines: string[]; torn: number }> {
  const text = await readFile(path.join(directory, segmentName(segment)), "utf8");
  const end = text.lastIndexOf("\n") + 1;
  return { lines: end === 0 ? [] : text.slice(0, end - 1).split("\n"), torn: Buffer.byteLength(text.slice(end)) };
}

/**
 * The write-ahead log shared by all sessions: lines appended to the current segment file in
 * batches, one fdatasync per batch (group commit). Whatever arrives while a batch is being written
 * and synced goes into the next one, so N sessions saving at once cost about two fsyncs, not N.
 * A failed batch fails its waiters and ends the segment; the next batch starts a new one, so a
 * partly written line can only ever be the last of its segment.
 */
export class WriteAheadLog {
  /** Bytes appended since the last rotation: how much a checkpoint would let go. */
  bytesSinceRotation = 0;
  private queue: Waiter[] = [];
  private handle: FileHandle | null = null;
  private draining: Promise<void> | null = null;
  private rotation: { resolve: (old: number[]) => void; reject: (error: Error) => void; promise: Promise<number[]> } | null = null;
  /** Segments that hold lines not yet checkpointed. */
  private written = new Set<number>();
  /** Whether the current segment's file exists (a rotation then moves on to the next number). */
  private handleWasOpened = false;

  constructor(
    readonly directory: string,
    private segment: number,
    private readonly stats: WalStats = { bytes: 0, syncs: 0, batches: 0 },
  ) {}

  /** Appends one line (no newline in it); resolves once it is on disk and `apply` has run. */
  append(line: string, apply: () => void): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ line, apply, resolve, reject });
      this.kick();
    });
  }

  /**
   * Starts a new segment after the batch in flight; resolves with the older segments, whose every
   * line has been applied by then (so a checkpoint taken afterwards covers them all).
   */
  rotate(): Promise<number[]> {
    if (!this.rotation) {
      let resolve!: (old: number[]) => void;
      let reject!: (error: Error) => void;
      const promise = new Promise<number[]>((res, rej) => ((resolve = res), (reject = rej)));
      this.rotation = { resolve, reject, promise };
      this.kick();
    }
    return this.rotation.promise;
  }

  /** Removes segments a checkpoint has made redundant. */
  async discard(segments: number[]): Promise<void> {
    for (const segment of segments) {
      await rm(path.join(this.directory, segmentName(segment)), { force: true });
      this.written.delete(segment);
    }
    if (segments.length > 0) await syncDirectory(this.directory);
  }

  /** Waits for the queue to drain and closes the segment file. */
  async close(): Promise<void> {
    while (this.draining) await this.draining;
    await this.closeHandle();
  }

  private kick(): void {
    if (this.draining) return;
    // Once the current microtasks have run: saves made together with this one share its batch, those
    // made while it is written share the next (group commit), and the fsync runs while this thread
    // sends what the step produced. Waiting for the next turn of the event loop gathered more saves
    // into the first batch, but put that sending before the fsync, on a turn's critical path.
    this.draining = new Promise<void>((resolve) => queueMicrotask(resolve)).then(() => this.drain());
  }

  private async drain(): Promise<void> {
    try {
      for (;;) {
        if (this.rotation) await this.finishRotation();
        if (this.queue.length === 0) break;
        await this.writeBatch(this.queue.splice(0));
      }
    } finally {
      this.draining = null;
    }
    if (this.queue.length > 0 || this.rotation) this.kick();
  }

  private async writeBatch(batch: Waiter[]): Promise<void> {
    const data = Buffer.from(`${batch.map((waiter) => waiter.line).join("\n")}\n`);
    try {
      const handle = await this.open();
      let offset = 0;
      while (offset < data.length) offset += (await handle.write(data, offset, data.length - offset)).bytesWritten;
      await handle.datasync();
    } catch (error) {
      // What reached the file is unknown: later lines go to a new segment, after this one's torn end.
      // The failed one is let go with the others at the next checkpoint.
      await this.closeHandle().catch(() => {});
      if (this.handleWasOpened) this.written.add(this.segment);
      this.handleWasOpened = false;
      this.segment++;
      for (const waiter of batch) waiter.reject(error instanceof Error ? error : new Error(String(error)));
      return;
    }
    this.stats.bytes += data.length;
    this.stats.syncs++;
    this.stats.batches++;
    this.bytesSinceRotation += data.length;
    this.written.add(this.segment);
    for (const waiter of batch) waiter.apply();
    for (const waiter of batch) waiter.resolve();
  }

  private async finishRotation(): Promise<void> {
    const rotation = this.rotation!;
    this.rotation = null;
    try {
      await this.closeHandle();
      const old = [...this.written].filter((segment) => segment <= this.segment);
      if (this.handleWasOpened) this.segment++;
      this.handleWasOpened = false;
      this.bytesSinceRotation = 0;
      rotation.resolve(old.sort((a, b) => a - b));
    } catch (error) {
      rotation.reject(error as Error);
    }
  }

  private async open(): Promise<FileHandle> {
    if (this.handle) return this.handle;
    const handle = await open(path.join(this.directory, segmentName(this.segment)), "a", 0o600);
    try {
      await syncDirectory(this.directory);
    } catch (error) {
      await handle.close();
      throw error;
    }
    this.handle = handle;
    this.handleWasOpened = true;
    return handle;
  }

  private async closeHandle(): Promise<void> {
    const handle = this.handle;
    this.handle = null;
    await handle?.close();
  }
}
