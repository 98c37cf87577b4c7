import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import type { Tool } from "../types.js";
import { resolveInWorkspace } from "../workspace.js";

export interface BashToolLimits {
  /** Time limit of a command when the model gives none. */
  defaultTimeoutMs: number;
  /** The most the model may ask for. */
  maxTimeoutMs: number;
  /** Output kept (UTF-8 bytes): the first and last halves; the middle is dropped with a note. */
  maxOutputBytes: number;
  /** Between SIGTERM and SIGKILL to the process group, for processes that clean up on SIGTERM. */
  killGraceMs: number;
  /**
   * Extra variables passed on from the server's environment, besides PATH and LANG. Names that look
   * secret (containing KEY, TOKEN, SECRET, PASSWORD, ...) are dropped even when listed.
   */
  passEnv: string[];
  /** The shell run as `shell -c command`; default /bin/bash, or /bin/sh where bash is missing. */
  shell?: string;
}

export const DEFAULT_BASH_TOOL_LIMITS: BashToolLimits = {
  defaultTimeoutMs: 120_000,
  maxTimeoutMs: 600_000,
  maxOutputBytes: 30_000,
  killGraceMs: 2_000,
  passEnv: [],
};

/** After the shell exits, how long its output pipes get to drain before background holders are stopped. */
const DRAIN_MS = 100;
/** How often a dying process group is polled. */
const POLL_MS = 20;
/** Never passed to a command, whatever an operator lists: the server's model keys must not leak. */
const SECRET_NAME = /KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH/i;

/** bash: runs a shell command in the workspace; everything it starts is killed when it ends. */
export function createBashTool(overrides: Partial<BashToolLimits> = {}): Tool {
  const limits = { ...DEFAULT_BASH_TOOL_LIMITS, ...overrides };
  const { defaultTimeoutMs, maxTimeoutMs, maxOutputBytes } = limits;
  const shell = limits.shell ?? (existsSync("/bin/bash") ? "/bin/bash" : "/bin/sh");
  return {
    name: "bash",
    readOnly: false,
    description:
      `Run a shell command with \`${shell} -c\` in the workspace directory, e.g. to run tests, builds, git or ` +
      "package managers. The working directory is the workspace root at the start of every call (nothing carries " +
      "over between calls: use `cd dir && cmd`), HOME is the workspace, stdin is closed (so no interactive " +
      "programs or prompts: pass flags such as --yes), and only PATH, HOME, LANG and TERM=dumb are set. Returns " +
      "stdout and stderr interleaved, then a line with the exit code; a non-zero exit is a normal result to read, " +
      `not a failure of the tool. Output over ${maxOutputBytes} bytes keeps its beginning and end. Commands time ` +
      `out after ${defaultTimeoutMs / 1000} s unless \`timeout_ms\` says otherwise (at most ${maxTimeoutMs / 1000} s); ` +
      "on time-out or cancellation the command and every process it started are killed. Background processes " +
      "(`cmd &`) are also stopped when the command ends, so do not start servers meant to outlive it. Prefer " +
      "read_file, edit_file, glob and grep for reading, editing and searching files.",
    inputSchema: {
      type: "object",
      properties: {
        command: { type: "string", minLength: 1, description: "The shell command (may span several lines)." },
        timeout_ms: {
          type: "integer",
          minimum: 1,
          maximum: maxTimeoutMs,
          description: `Time limit in milliseconds. Default ${defaultTimeoutMs}, at most ${maxTimeoutMs}.`,
        },
      },
      required: ["command"],
      additionalProperties: false,
    },
    async execute(args, context) {
      const command = args.command as string;
      const timeoutMs = Math.min(Math.max(1, (args.timeout_ms as number | undefined) ?? defaultTimeoutMs), maxTimeoutMs);
      context.signal.throwIfAborted();
      const cwd = await resolveInWorkspace(context.workspace, ".");
      return run(shell, command, { cwd, env: commandEnv(cwd, limits.passEnv), timeoutMs, signal: context.signal, limits });
    },
  };
}

/** The command's whole environment, built from an allow list: nothing else of the server's leaks. */
export function commandEnv(workspace: string, passEnv: readonly string[] = []): Record<string, string> {
  const env: Record<string, string> = {
    PATH: process.env.PATH || "/usr/local/bin:/usr/bin:/bin",
    HOME: workspace,
    LANG: process.env.LANG || "C.UTF-8",
    // No colours, no pagers, no cursor tricks: the output is read by a model.
    TERM: "dumb",
  };
  for (const name of passEnv) {
    const value = process.env[name];
    if (value !== undefined && !SECRET_NAME.test(name)) env[name] = value;
  }
  for (const name of Object.keys(env)) if (SECRET_NAME.test(name)) delete env[name];
  return env;
}

interface RunOptions {
  cwd: string;
  env: Record<string, string>;
  timeoutMs: number;
  signal: AbortSignal;
  limits: BashToolLimits;
}

async function run(shell: string, command: string, options: RunOptions): Promise<string> {
  const { cwd, env, timeoutMs, signal, limits } = options;
  // detached: the shell leads a new process group, so one signal to -pid reaches all it started.
  const child = spawn(shell, ["-c", command], { cwd, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  const output = new HeadTail(limits.maxOutputBytes);
  child.stdout.on("data", (chunk: Buffer) => output.push(chunk));
  child.stderr.on("data", (chunk: Buffer) => output.push(chunk));
  const closed = new Promise<void>((resolve) => child.once("close", () => resolve()));

  let spawnError: Error | undefined;
  // Listening for good: an "error" event without a listener would crash the server.
  child.on("error", (error) => (spawnError ??= error));
  await new Promise<void>((resolve) => {
    child.once("spawn", resolve);
    child.once("error", () => resolve());
  });
  if (spawnError || child.pid === undefined) throw new Error(`could not start ${shell}: ${spawnError?.message ?? "no pid"}`);
  const pid = child.pid;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, exitSignal) => resolve({ code, signal: exitSignal })),
  );

  let stopping: Promise<void> | undefined;
  const stop = () => (stopping ??= killGroup(pid, limits.killGraceMs));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    void stop();
  }, timeoutMs);
  const onAbort = () => void stop();
  signal.addEventListener("abort", onAbort, { once: true });

  let leftovers = false;
  let status: { code: number | null; signal: NodeJS.Signals | null };
  try {
    status = await exited;
    // Output still flowing after the shell exits comes from processes it left in the background.
    await Promise.race([closed, delay(DRAIN_MS)]);
    if (!stopping && groupAlive(pid)) leftovers = true;
    await stop();
    await Promise.race([closed, delay(DRAIN_MS)]);
  } finally {
    clearTimeout(timer);
    signal.removeEventListener("abort", onAbort);
    // A process that left the group (setsid) may still hold the pipes: stop listening to it.
    child.stdout.destroy();
    child.stderr.destroy();
  }

  if (signal.aborted) {
    const error = new Error("the command was cancelled; it and the processes it started were killed", { cause: signal.reason });
    error.name = "AbortError";
    throw error;
  }
  const lines = [output.text() === "" ? "[no output]" : output.text().replace(/\n$/, "")];
  if (timedOut) {
    lines.push(`[timed out after ${timeoutMs} ms: the command and the processes it started were killed]`);
  } else if (status.signal) {
    lines.push(`[killed by signal ${status.signal}]`);
  } else {
    lines.push(`[exit code ${status.code}]`);
  }
  if (leftovers) lines.push("[processes it left running in the background were stopped]");
  return lines.join("\n");
}

/** Whether a process of the group led by `pid` still runs. */
function groupAlive(pid: number): boolean {
  try {
    process.kill(-pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  return hasLiveMember(pid) ?? true;
}

/**
 * Linux: whether a process of group `pgid` is running, zombies aside. A killed background process
 * is a zombie until its new parent (init, or a container's PID 1, which may reap only now and then)
 * collects it; kill(-pgid, 0) still counts it, and waiting for it would cost the whole grace period.
 * Undefined where there is no /proc.
 */
function hasLiveMember(pgid: number): boolean | undefined {
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return undefined;
  }
  for (const name of entries) {
    if (name.charCodeAt(0) < 48 || name.charCodeAt(0) > 57) continue;
    let line: string;
    try {
      line = readFileSync(`/proc/${name}/stat`, "utf8");
    } catch {
      continue;
    }
    // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses, so split after the last ")".
    const [state, , pgrp] = line.slice(line.lastIndexOf(")") + 2).split(" ");
    if (Number(pgrp) === pgid && state !== "Z" && state !== "X") return true;
  }
  return false;
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: the group is already gone.
  }
}

/**
 * SIGTERM to the whole group, then SIGKILL to what is left after the grace period. Polling stops as
 * soon as the group is empty, so a recycled pid is never signalled.
 */
async function killGroup(pid: number, graceMs: number): Promise<void> {
  if (!groupAlive(pid)) return;
  signalGroup(pid, "SIGTERM");
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    await delay(POLL_MS);
    if (!groupAlive(pid)) return;
  }
  signalGroup(pid, "SIGKILL");
  // SIGKILL cannot be caught; wait (briefly) until the kernel has taken them all down.
  for (let i = 0; i < 50 && groupAlive(pid); i++) await delay(POLL_MS);
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Keeps the first and last halves of a byte stream, counting what falls between. */
export class HeadTail {
  private readonly headLimit: number;
  private readonly tailLimit: number;
  private readonly head: Buffer[] = [];
  private headBytes = 0;
  private tail: Buffer[] = [];
  private tailBytes = 0;
  private total = 0;

  constructor(maxBytes: number) {
    this.headLimit = Math.ceil(maxBytes / 2);
    this.tailLimit = maxBytes - this.headLimit;
  }

  push(chunk: Buffer): void {
    this.total += chunk.length;
    if (this.headBytes < this.headLimit) {
      const taken = chunk.subarray(0, this.headLimit - this.headBytes);
      this.head.push(taken);
      this.headBytes += taken.length;
      chunk = chunk.subarray(taken.length);
    }
    if (chunk.length === 0 || this.tailLimit === 0) return;
    this.tail.push(chunk);
    this.tailBytes += chunk.length;
    while (this.tailBytes - this.tail[0].length >= this.tailLimit) this.tailBytes -= this.tail.shift()!.length;
  }

  text(): string {
    const head = Buffer.concat(this.head);
    let tail = Buffer.concat(this.tail);
    if (tail.length > this.tailLimit) tail = tail.subarray(tail.length - this.tailLimit);
    const omitted = this.total - head.length - tail.length;
    if (omitted <= 0) return Buffer.concat([head, tail]).toString("utf8");
    // Cut at character boundaries: a streaming decode leaves out a character the head ends inside,
    // and the tail skips the continuation bytes of one it starts inside.
    const headText = new TextDecoder().decode(head, { stream: true });
    let start = 0;
    while (start < tail.length && (tail[start] & 0xc0) === 0x80) start++;
    const cut = this.total - Buffer.byteLength(headText, "utf8") - (tail.length - start);
    const note = `\n[... ${cut} bytes of output omitted in the middle (${this.total} in all) ...]\n`;
    return headText + note + tail.subarray(start).toString("utf8");
  }
}
