import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { createLogger, type Logger } from "../../src/logging.js";
import { McpConnection, type McpConnectionOptions } from "../../src/mcp/connection.js";
import type { McpServerState, McpTransportSpec } from "../../src/mcp/types.js";

export const FIXTURE = fileURLToPath(new URL("../fixtures/mcp/fixture-server.mjs", import.meta.url));
export const EVERYTHING = fileURLToPath(
  new URL("../../node_modules/@modelcontextprotocol/server-everything/dist/index.js", import.meta.url),
);
/** Small, so tests see retries quickly. */
export const FAST_BACKOFF = { baseMs: 50, maxMs: 200 };

/** A logger whose lines the test can read. */
export function captureLogger(): { logger: Logger; lines: Array<Record<string, unknown>>; text: () => string } {
  const raw: string[] = [];
  const logger = createLogger("debug", { write: (line: string) => void raw.push(line) });
  return {
    logger,
    get lines() {
      return raw.map((line) => JSON.parse(line) as Record<string, unknown>);
    },
    text: () => raw.join(""),
  };
}

export function fixtureStdio(env: Record<string, string> = {}): McpTransportSpec {
  return { type: "stdio", command: process.execPath, args: [FIXTURE, "stdio"], env, cwd: "" };
}

/** Everything a test started, closed after it whatever happened. */
export class Cleanup {
  private readonly steps: Array<() => Promise<unknown> | unknown> = [];

  add(step: () => Promise<unknown> | unknown): void {
    this.steps.push(step);
  }

  connection(name: string, spec: McpTransportSpec, options: Partial<McpConnectionOptions> = {}): McpConnection {
    const connection = new McpConnection(name, spec, {
      logger: createLogger("silent"),
      backoff: FAST_BACKOFF,
      connectTimeoutMs: 10_000,
      ...options,
    });
    this.add(() => connection.close());
    return connection;
  }

  async tempDir(): Promise<string> {
    const dir = await mkdtemp(path.join(tmpdir(), "agentd-mcp-"));
    this.add(() => rm(dir, { recursive: true, force: true }));
    return dir;
  }

  async run(): Promise<void> {
    await Promise.allSettled(this.steps.splice(0).reverse().map((step) => step()));
  }
}

/** Polls until `check` is true, or fails after `timeoutMs`. */
export async function waitFor(check: () => boolean | Promise<boolean>, what: string | (() => string), timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${typeof what === "string" ? what : what()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export async function waitForState(connection: McpConnection, state: McpServerState, timeoutMs = 10_000): Promise<void> {
  await waitFor(() => connection.status().state === state, () => `state ${state} (now ${JSON.stringify(connection.status())})`, timeoutMs);
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ESRCH") return false;
    throw error;
  }
}

export interface HttpFixture {
  /** Where the MCP endpoint is: /mcp for "http", /sse for "sse". */
  url: string;
  port: number;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** Starts the fixture server over HTTP on an ephemeral port. */
export async function startHttpFixture(mode: "http" | "sse", env: Record<string, string> = {}): Promise<HttpFixture> {
  const child = spawn(process.execPath, [FIXTURE, mode, "0"], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  child.stderr?.resume();
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const port = await new Promise<number>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.once("line", (line) => resolve((JSON.parse(line) as { port: number }).port));
    child.once("exit", (code) => reject(new Error(`the fixture server exited with ${code} before listening`)));
  });
  return {
    url: `http://127.0.0.1:${port}${mode === "http" ? "/mcp" : "/sse"}`,
    port,
    child,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
}

/** A loopback port nothing listens on. */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
