import { mkdir, open, rename, type FileHandle } from "node:fs/promises";
import path from "node:path";
import type { RuntimeConfig } from "../config/config.js";
import { errorMessage } from "../errors.js";
import type { Logger } from "../logging.js";
import type { Caller } from "../runtime/caller.js";

/**
 * The audit log: one JSON object per line for every RPC that changes something (who called, which
 * method, which session, how it ended), appended to `audit.file` ("" means <dataDir>/audit.log).
 *
 *   {"time":"2025-01-01T12:00:00.000Z","method":"DestroySession","owner":"alice","role":"user",
 *    "via":"token","sessionId":"s-1","result":"OK","peer":"ipv4:127.0.0.1:53122"}
 *
 * What is recorded is exactly the fields of AuditEntry: the caller's identity (never its token or
 * certificate), the method, the session id, the result ("OK" or a gRPC status name), a short detail
 * (the error message, cut to 512 characters), the peer address and a few scalar extras such as a
 * turn id. Prompts, messages, system prompts, tool arguments or results, API keys, bearer tokens and
 * any other request or response body are NEVER recorded: callers must not put them in `detail` or
 * `extra` either.
 *
 * The file is created with mode 0600 (it names owners), in a directory created if needed. When the
 * next write would take it past `audit.maxBytes`, it is rotated the logrotate way: audit.log.(N-1)
 * becomes audit.log.N (the oldest, audit.log.<maxFiles>, is overwritten, i.e. deleted),
 * ..., audit.log becomes audit.log.1, and a new audit.log is started. A single line larger than
 * maxBytes still goes whole into a fresh file.
 *
 * The request path never waits on the disk: `record()` formats the line and queues it; one background
 * loop appends whatever is queued in one write. A failed write drops that batch (the request has
 * already been answered) and is logged once per failure streak, with how many entries were lost
 * when writing works again. If the disk falls far behind, new entries are dropped rather than
 * queued without bound, reported the same way.
 *
 * Why not the `rotating-file-stream` package: its classical mode (`rotate: N`) does give exactly these
 * names, but it rotates only after the write that reaches the size (so the file passes maxBytes),
 * and after any I/O error its stream is destroyed for good ("nothing more can be done"), whereas
 * here a failing disk must not end auditing once it recovers. The rotation itself is a dozen lines
 * of renames, so it is written here rather than wrapped around the package.
 */

export interface AuditEntry {
  /** The RPC, as in the proto: "CreateSession", "StreamGenerate", ... */
  method: string;
  caller: Caller;
  /** The session acted on; "" when there is none (a CreateSession that failed). */
  sessionId: string;
  /** "OK" or a gRPC status name ("PERMISSION_DENIED", "CANCELLED", ...). */
  result: string;
  /** Short, e.g. the error message; cut to 512 characters. Never a prompt or any request body. */
  detail?: string;
  /** The client's address as grpc-js reports it. */
  peer?: string;
  /** Scalar facts such as a turn id; keys that clash with the fields above are ignored. */
  extra?: Record<string, string | number | boolean>;
}

export const AUDIT_DETAIL_MAX_CHARS = 512;

/** Queued but unwritten bytes beyond which new entries are dropped instead of queued. */
const MAX_PENDING_BYTES = 16 * 1024 * 1024;

const RESERVED_FIELDS = new Set(["time", "method", "owner", "role", "via", "sessionId", "result", "detail", "peer"]);

/** How long a recorded line may wait for others to share its write. */
const BATCH_WINDOW_MS = 20;

export class AuditLog {
  private queue: string[] = [];
  private pendingBytes = 0;
  private draining: Promise<void> | null = null;
  private handle: FileHandle | null = null;
  /** Bytes in the current file, known once it is open. */
  private size = 0;
  /** Entries lost in the current failure streak; a streak is reported once, when it starts. */
  private dropped = 0;
  private failing = false;
  private closed = false;
  private closing: Promise<void> | null = null;

  private constructor(
    /** Absolute path of the live file; null for a disabled log. */
    readonly file: string | null,
    private readonly maxBytes: number,
    private readonly maxFiles: number,
    private readonly logger: Logger | null,
  ) {}

  /** Opens (lazily: nothing touches the disk until the first entry) the log that `config.audit` describes. */
  static open(config: RuntimeConfig, logger: Logger): AuditLog {
    const { enabled, file, maxBytes, maxFiles } = config.audit;
    if (!enabled) return AuditLog.disabled();
    const target = path.resolve(file === "" ? path.join(config.dataDir, "audit.log") : file);
    return new AuditLog(target, Math.max(1, maxBytes), Math.max(1, maxFiles), logger);
  }

  /** A log that writes nothing. */
  static disabled(): AuditLog {
    return new AuditLog(null, 1, 1, null);
  }

  get enabled(): boolean {
    return this.file !== null;
  }

  /** Queues one line. Never throws and never waits; see the file comment for what happens on failure. */
  record(entry: AuditEntry): void {
    if (this.file === null) return;
    try {
      if (this.closed) {
        this.drop(1, null, "audit entry recorded after the audit log was closed; dropped", "warn");
        return;
      }
      const line = formatAuditLine(entry, new Date());
      const bytes = Buffer.byteLength(line);
      if (this.pendingBytes + bytes > MAX_PENDING_BYTES) {
        this.drop(1, null, "audit log is falling behind; dropping entries until it catches up");
        return;
      }
      this.queue.push(line);
      this.pendingBytes += bytes;
      // Lines recorded within a short window share one write, off the request path.
      this.draining ??= new Promise<void>((resolve) => setTimeout(resolve, this.closed ? 0 : BATCH_WINDOW_MS)).then(() => this.drain());
    } catch (error) {
      this.drop(1, error, "cannot format an audit entry; dropped");
    }
  }

  /** Resolves once everything recorded so far has been written (or dropped). Never rejects. */
  async flush(): Promise<void> {
    while (this.draining) await this.draining;
  }

  /** Flushes, then closes the file. Entries recorded afterwards are dropped. */
  close(): Promise<void> {
    return (this.closing ??= (async () => {
      this.closed = true;
      await this.flush();
      const handle = this.handle;
      this.handle = null;
      await handle?.close().catch(() => {});
    })());
  }

  /** Writes batches until the queue is empty. Only one runs at a time. */
  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const batch = this.queue;
        this.queue = [];
        this.pendingBytes = 0;
        try {
          await this.write(batch);
          if (this.failing) {
            this.logger?.info({ file: this.file, dropped: this.dropped }, "audit log is being written again");
            this.failing = false;
            this.dropped = 0;
          }
        } catch (error) {
          // Start from a fresh open next time: the handle may be the problem (a deleted directory, a full disk).
          const handle = this.handle;
          this.handle = null;
          await handle?.close().catch(() => {});
          this.drop(batch.length, error, "cannot write the audit log; entries are dropped until it works again");
        }
      }
    } finally {
      this.draining = null;
    }
  }

  /** Appends the lines, rotating before any line that would take the file past maxBytes. */
  private async write(lines: string[]): Promise<void> {
    await this.openFile(); // learns the current size
    let chunk = "";
    let chunkBytes = 0;
    for (const line of lines) {
      const bytes = Buffer.byteLength(line);
      const used = this.size + chunkBytes;
      if (used > 0 && used + bytes > this.maxBytes) {
        if (chunk !== "") await this.append(chunk, chunkBytes);
        chunk = "";
        chunkBytes = 0;
        await this.rotate();
      }
      chunk += line;
      chunkBytes += bytes;
    }
    if (chunk !== "") await this.append(chunk, chunkBytes);
  }

  private async append(chunk: string, bytes: number): Promise<void> {
    const handle = await this.openFile();
    await handle.appendFile(chunk);
    this.size += bytes;
  }

  private async openFile(): Promise<FileHandle> {
    if (this.handle) return this.handle;
    const file = this.file!;
    await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    const handle = await open(file, "a", 0o600);
    try {
      this.size = (await handle.stat()).size;
    } catch (error) {
      await handle.close().catch(() => {});
      throw error;
    }
    this.handle = handle;
    return handle;
  }

  /** audit.log.(N-1) → .N, ..., audit.log → .1; the next write opens a new audit.log. */
  private async rotate(): Promise<void> {
    const file = this.file!;
    const handle = this.handle;
    this.handle = null;
    await handle?.close();
    for (let index = this.maxFiles - 1; index >= 1; index--) {
      await renameIfPresent(`${file}.${index}`, `${file}.${index + 1}`);
    }
    await renameIfPresent(file, `${file}.1`);
    this.size = 0;
  }

  private drop(count: number, error: unknown, message: string, level: "error" | "warn" = "error"): void {
    this.dropped += count;
    if (this.failing) return;
    this.failing = true;
    try {
      const fields = error === null ? { file: this.file } : { file: this.file, err: errorMessage(error) };
      this.logger?.[level](fields, message);
    } catch {
      // A logger that throws must not reach the request path either.
    }
  }
}

/** One audit line, newline included. Exported for tests and for documentation examples. */
export function formatAuditLine(entry: AuditEntry, time: Date): string {
  const line: Record<string, string | number | boolean> = {
    time: time.toISOString(),
    method: entry.method,
    owner: entry.caller.owner,
    role: entry.caller.role,
    via: entry.caller.via,
    sessionId: entry.sessionId,
    result: entry.result,
  };
  if (entry.detail !== undefined && entry.detail !== "") line.detail = cut(entry.detail, AUDIT_DETAIL_MAX_CHARS);
  if (entry.peer !== undefined && entry.peer !== "") line.peer = entry.peer;
  for (const [key, value] of Object.entries(entry.extra ?? {})) {
    if (RESERVED_FIELDS.has(key)) continue;
    if (typeof value === "string" || typeof value === "boolean" || (typeof value === "number" && Number.isFinite(value))) line[key] = value;
  }
  return JSON.stringify(line) + "\n";
}

function cut(text: string, max: number): string {
  if (text.length <= max) return text;
  let end = max;
  // Do not leave half of a surrogate pair at the end.
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return text.slice(0, end);
}

async function renameIfPresent(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
}
