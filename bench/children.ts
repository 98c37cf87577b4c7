/**
 * The bench's server processes: each server runs in a child process of its own (started with
 * `node --import tsx`), reports the port it bound (port 0) over the IPC channel, and answers small
 * requests on it (a heap reading, a new reply profile). Every child is killed when the bench exits,
 * however it exits, and a child whose parent is gone exits by itself (its IPC channel closes).
 */
import { Server, ServerCredentials } from "@grpc/grpc-js";
import { fork, type ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** What a child sends back: `ready` once it listens, then one reply per request, by id. */
export type ChildMessage =
  | { type: "ready"; port: number; address: string }
  | { type: "failed"; message: string }
  | { type: "reply"; id: number; value: unknown; error?: string };

export interface ServerChild {
  name: string;
  address: string;
  port: number;
  /** performance.now() in the parent when the child was started, and when it reported ready. */
  spawnedAt: number;
  readyAt: number;
  request<T>(message: Record<string, unknown>): Promise<T>;
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
const scratch = new Set<string>();

function cleanUp(): void {
  for (const child of live) child.kill("SIGKILL");
  live.clear();
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  scratch.clear();
}

/** Removes `dir` when the bench exits, however it exits (seeded data directories live in /dev/shm). */
export function removeOnExit(dir: string): void {
  scratch.add(dir);
}

process.once("exit", cleanUp);
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.once(signal, () => {
    cleanUp();
    process.exit(130);
  });
}

/** How long a child may take to listen (restoring 100k sessions may be slow before the work in issue 10). */
const READY_TIMEOUT_MS = Number(process.env.BENCH_READY_TIMEOUT_MS ?? 180_000);

/** BENCH_CPU_PROF=<dir>: agentd's processes write CPU profiles there (open them in Chrome DevTools). */
const PROFILE = process.env.BENCH_CPU_PROF ?? "";

/** Starts `script` (a file under bench/) as a child process and waits until it listens. */
export async function startChild(name: string, script: string, args: unknown): Promise<ServerChild> {
  const file = fileURLToPath(new URL(script, import.meta.url));
  const spawnedAt = performance.now();
  const child = fork(file, [JSON.stringify(args)], {
    execArgv: ["--import", "tsx", "--expose-gc", ...(PROFILE && script.includes("agentd") ? ["--cpu-prof", `--cpu-prof-dir=${PROFILE}`] : [])],
    // The server's logs go nowhere, as to a log file nobody reads; errors are kept for the report.
    stdio: ["ignore", "ignore", "pipe", "ipc"],
  });
  live.add(child);
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
    stderr = (stderr + chunk).slice(-4000);
  });
  const pending = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>();
  let nextId = 1;
  let exited = false;
  const ready = new Promise<{ port: number; address: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name}: not listening after ${READY_TIMEOUT_MS} ms\n${stderr}`)), READY_TIMEOUT_MS);
    child.on("message", (message: ChildMessage) => {
      if (message.type === "ready") {
        clearTimeout(timer);
        resolve(message);
      } else if (message.type === "failed") {
        clearTimeout(timer);
        reject(new Error(`${name} failed to start: ${message.message}\n${stderr}`));
      } else if (message.type === "reply") {
        const waiter = pending.get(message.id);
        pending.delete(message.id);
        if (message.error) waiter?.reject(new Error(`${name}: ${message.error}`));
        else waiter?.resolve(message.value);
      }
    });
    child.once("exit", (code, signal) => {
      exited = true;
      live.delete(child);
      clearTimeout(timer);
      const error = new Error(`${name} exited (${signal ?? code})\n${stderr}`);
      reject(error);
      for (const waiter of pending.values()) waiter.reject(error);
      pending.clear();
    });
  });
  const { port, address } = await ready;
  const readyAt = performance.now();
  return {
    name,
    port,
    address,
    spawnedAt,
    readyAt,
    request<T>(message: Record<string, unknown>): Promise<T> {
      if (exited) return Promise.reject(new Error(`${name} is not running\n${stderr}`));
      const id = nextId++;
      return new Promise<T>((resolve, reject) => {
        pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
        child.send({ ...message, id });
      });
    },
    /** Asks the child to exit (so a CPU profile gets written), and kills it if it has not after a while. */
    async stop() {
      if (exited) return;
      const gone = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      child.send({ type: "exit" });
      const timer = setTimeout(() => child.kill("SIGKILL"), PROFILE ? 30_000 : 2_000);
      await gone;
      clearTimeout(timer);
    },
  };
}

/** Runs a bench script (`tsx`) to its end in a child process; resolves with its stdout. */
export function runScript(script: string, args: string[]): Promise<string> {
  const file = fileURLToPath(new URL(script, import.meta.url));
  const child = fork(file, args, { execArgv: ["--import", "tsx"], stdio: ["ignore", "pipe", "pipe", "ipc"] });
  live.add(child);
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr = (stderr + chunk).slice(-4000)));
  return new Promise((resolve, reject) => {
    child.once("exit", (code, signal) => {
      live.delete(child);
      if (code === 0) resolve(stdout);
      else reject(new Error(`${script} ${args.join(" ")} failed (${signal ?? code})\n${stderr}`));
    });
  });
}

/** Binds a bench server to a free loopback port: serveParent's `start`. */
export function bindLoopback(server: Server): Promise<{ port: number; address: string }> {
  return new Promise((resolve, reject) => {
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (error, port) => {
      if (error) reject(error);
      else resolve({ port, address: `127.0.0.1:${port}` });
    });
  });
}

/**
 * The child's side: reports ready (or the failure), answers requests with `handle`, and exits when
 * the parent goes away.
 */
export function serveParent(start: () => Promise<{ port: number; address: string }>, handle: (message: Record<string, unknown>) => Promise<unknown> | unknown): void {
  const send = (message: ChildMessage) => process.send?.(message);
  process.on("disconnect", () => process.exit(0));
  process.on("message", (message: Record<string, unknown> & { id: number }) => {
    if (message.type === "exit") process.exit(0);
    if (message.type === "cpu") {
      const { user, system } = process.cpuUsage();
      return send({ type: "reply", id: message.id, value: user + system });
    }
    Promise.resolve()
      .then(() => handle(message))
      .then(
        (value) => send({ type: "reply", id: message.id, value }),
        (error: unknown) => send({ type: "reply", id: message.id, value: null, error: String((error as Error)?.stack ?? error) }),
      );
  });
  start().then(
    ({ port, address }) => send({ type: "ready", port, address }),
    (error: unknown) => {
      send({ type: "failed", message: String((error as Error)?.stack ?? error) });
      setTimeout(() => process.exit(1), 100);
    },
  );
}

/**
 * Waits until every child has been idle (under 5% of a CPU) for 100 ms, at most `maxMs`: a server
 * still busy with the previous run's background work would slow the next measure of another.
 */
export async function whenIdle(children: ServerChild[], maxMs = 3_000): Promise<void> {
  const started = performance.now();
  let last = await Promise.all(children.map((child) => child.request<number>({ type: "cpu" })));
  let calm = 0;
  while (calm < 2 && performance.now() - started < maxMs) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    const now = await Promise.all(children.map((child) => child.request<number>({ type: "cpu" })));
    calm = now.every((micros, i) => micros - last[i]! < 2_500) ? calm + 1 : 0;
    last = now;
  }
}

/** Heap in use after full collections (children run with --expose-gc). */
export function heapUsedAfterGc(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error("run with --expose-gc");
  for (let i = 0; i < 4; i++) gc();
  return process.memoryUsage().heapUsed;
}
