/**
 * The baseline: a bare @grpc/grpc-js server with no agentd code in it. It serves agentd's method
 * paths, so the same client (and the same decoding of replies) drives both servers, but it never
 * decodes a request: it answers with reply bytes captured from agentd in the same run (a "profile"
 * the bench sends over IPC before each workload), serialized as they are.
 *
 * With `durable`, a reply that acknowledges durable state first appends a record of the reply's size
 * to a log file and waits for fdatasync, with group commit: requests that arrive while an fsync runs
 * share the next one. That is the least a server that keeps its promise can do.
 *
 * Run by bench/run.ts:  node --import tsx bench/raw-server.ts '{"dir": "...", "options": {...}}'
 */
import { Server, status, type ChannelOptions, type ServerUnaryCall, type ServerWritableStream, type sendUnaryData } from "@grpc/grpc-js";
import { once } from "node:events";
import { closeSync, fdatasync, openSync, write } from "node:fs";
import path from "node:path";
import { bindLoopback, serveParent } from "./children.js";

/** Replies as base64 strings (IPC carries JSON). */
export interface RawProfile {
  /** Unary replies by method name ("CreateSession"), with whether each waits for fsync. */
  unary: Record<string, { reply: string; durable: boolean }>;
  /**
   * StreamGenerate: `head`, then `delta` `deltas` times, then `tail`; with `durable`, the last
   * message of the tail waits for fsync (a turn's end acknowledges that the turn is stored).
   */
  stream?: { head: string[]; delta: string; deltas: number; tail: string[]; durable: boolean };
}

interface Profile {
  unary: Map<string, { reply: Buffer; durable: boolean }>;
  stream?: { head: Buffer[]; delta: Buffer; deltas: number; tail: Buffer[]; durable: boolean };
}

const SERVICE = "/agentd.v1.AgentRuntime/";

/** One append + fdatasync for every request waiting when the previous fsync ends. */
class GroupCommit {
  private waiting: Array<{ record: Buffer; done(): void }> = [];
  private syncing = false;
  syncs = 0;

  constructor(private readonly fd: number) {}

  append(record: Buffer): Promise<void> {
    return new Promise((done) => {
      this.waiting.push({ record, done });
      if (!this.syncing) this.flush();
    });
  }

  private flush(): void {
    const batch = this.waiting;
    this.waiting = [];
    this.syncing = true;
    const data = batch.length === 1 ? batch[0]!.record : Buffer.concat(batch.map((entry) => entry.record));
    write(this.fd, data, (writeError) => {
      if (writeError) throw writeError;
      fdatasync(this.fd, (syncError) => {
        if (syncError) throw syncError;
        this.syncs++;
        this.syncing = false;
        for (const entry of batch) entry.done();
        if (this.waiting.length > 0) this.flush();
      });
    });
  }
}

function decodeProfile(raw: RawProfile): Profile {
  const bytes = (b64: string) => Buffer.from(b64, "base64");
  return {
    unary: new Map(Object.entries(raw.unary).map(([method, { reply, durable }]) => [method, { reply: bytes(reply), durable }])),
    stream: raw.stream && {
      head: raw.stream.head.map(bytes),
      delta: bytes(raw.stream.delta),
      deltas: raw.stream.deltas,
      tail: raw.stream.tail.map(bytes),
      durable: raw.stream.durable,
    },
  };
}

function main(): void {
  const { dir, options } = JSON.parse(process.argv[2]!) as { dir: string; options: ChannelOptions };
  const fd = openSync(path.join(dir, "raw-baseline.log"), "a");
  process.once("exit", () => closeSync(fd));
  const log = new GroupCommit(fd);
  let profile: Profile = { unary: new Map() };
  const identity = (value: Buffer) => value;

  const unary = (method: string) => (_call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) => {
    const answer = profile.unary.get(method);
    if (!answer) return callback({ code: status.UNIMPLEMENTED, details: `no ${method} reply in the profile` });
    if (!answer.durable) return callback(null, answer.reply);
    log.append(answer.reply).then(() => callback(null, answer.reply));
  };

  const streamGenerate = async (call: ServerWritableStream<Buffer, Buffer>) => {
    const plan = profile.stream;
    if (!plan) return call.destroy(Object.assign(new Error("no stream in the profile"), { code: status.UNIMPLEMENTED }));
    let cancelled = false;
    const gone = once(call, "cancelled").then(() => (cancelled = true));
    // Respects the reader: waits for 'drain' whenever grpc-js says its buffer is full.
    const send = async (message: Buffer) => {
      if (!call.write(message) && !cancelled) await Promise.race([once(call, "drain"), gone]);
    };
    for (const message of plan.head) await send(message);
    for (let i = 0; i < plan.deltas && !cancelled; i++) await send(plan.delta);
    const last = plan.tail.length - 1;
    for (let i = 0; i <= last && !cancelled; i++) {
      if (i === last && plan.durable) await log.append(plan.tail[i]!);
      await send(plan.tail[i]!);
    }
    if (!cancelled) call.end();
  };

  const method = (name: string, responseStream: boolean) => ({
    path: `${SERVICE}${name}`,
    requestStream: false,
    responseStream,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  });
  const server = new Server(options);
  server.addService(
    {
      CreateSession: method("CreateSession", false),
      GetSession: method("GetSession", false),
      ListSessions: method("ListSessions", false),
      StreamGenerate: method("StreamGenerate", true),
    },
    {
      CreateSession: unary("CreateSession"),
      GetSession: unary("GetSession"),
      ListSessions: unary("ListSessions"),
      StreamGenerate: streamGenerate,
    },
  );

  serveParent(
    () => bindLoopback(server),
    (message) => {
      if (message.type === "profile") {
        profile = decodeProfile(message.profile as RawProfile);
        return true;
      }
      if (message.type === "stats") return { syncs: log.syncs };
      throw new Error(`unknown request ${String(message.type)}`);
    },
  );
}

main();
