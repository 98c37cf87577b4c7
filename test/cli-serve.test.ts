import { spawn, type ChildProcess } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { connect } from "node:net";
import path from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { AgentdClient } from "../src/client/client.js";
import { makeTempDir, removeTempDirs, waitFor } from "./helpers/harness.js";

const root = path.resolve(import.meta.dirname, "..");
const agentd = path.join(root, "bin/agentd");

interface Served {
  child: ChildProcess;
  /** stdout so far, and its complete lines. */
  stdout: () => string;
  lines: () => string[];
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const started: ChildProcess[] = [];

/** Starts `bin/agentd serve` from another directory, its output on pipes. */
async function serve(...args: string[]): Promise<Served> {
  const dataDir = await makeTempDir("agentd-cli-serve-");
  const child = spawn(agentd, ["serve", "--port", "0", "--data-dir", dataDir, "--store", "memory", ...args], {
    cwd: dataDir,
    stdio: ["ignore", "pipe", "pipe"],
  });
  started.push(child);
  let out = "";
  let err = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (err += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  return {
    child,
    stdout: () => out,
    lines: () => out.split("\n").slice(0, -1),
    stderr: () => err,
    exited,
  };
}

/** The parsed JSON log line with this message, once it was written. */
function logLine(served: Served, msg: string): Promise<Record<string, unknown>> {
  return waitFor(() => {
    if (served.child.exitCode !== null) throw new Error(`agentd exited early: ${served.stderr()}${served.stdout()}`);
    return served
      .lines()
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .find((entry) => entry.msg === msg);
  }, 10_000);
}

/** The pids whose parent is `pid`, from /proc. */
function childrenOf(pid: number): number[] {
  return readdirSync("/proc")
    .filter((name) => /^\d+$/.test(name))
    .flatMap((name) => {
      try {
        const stat = readFileSync(`/proc/${name}/stat`, "utf8");
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
        return ppid === pid ? [Number(name)] : [];
      } catch {
        return []; // gone meanwhile
      }
    });
}

/** Still running: it exists and is not a zombie (exited, waiting to be reaped). */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

function portRefuses(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(false);
    });
    socket.once("error", () => resolve(true));
  });
}

afterEach(() => {
  for (const child of started.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
});
afterAll(removeTempDirs);

describe("bin/agentd serve", () => {
  it("is the server process itself: it answers, and SIGTERM to it stops it cleanly and frees the port", async () => {
    const served = await serve();
    const pid = served.child.pid!;
    const listening = await logLine(served, "agentd listening");
    // The process that logs is the one we started: no npx, shell or tsx process in between.
    expect(listening.pid).toBe(pid);
    const address = listening.address as string;
    const port = Number(address.split(":").at(-1));

    const client = new AgentdClient(address);
    try {
      expect((await client.listSessions({})).sessions).toEqual([]);
    } finally {
      client.close();
    }

    const children = process.platform === "linux" ? childrenOf(pid) : [];
    process.kill(pid, "SIGTERM");
    expect(await served.exited).toEqual({ code: 0, signal: null });
    expect(served.lines().map((line) => (JSON.parse(line) as { msg: string }).msg)).toContain("agentd stopped");
    expect(await portRefuses(port)).toBe(true);
    // Its only child, if any, is tsx's esbuild service (started on a cold transform cache), which
    // exits when its parent does.
    await waitFor(() => (children.some(running) ? undefined : true), 2000);
  });

  it("writes readable lines and a banner with --log-format pretty (JSON is the default on a pipe, above)", async () => {
    const served = await serve("--log-format", "pretty");
    const banner = await waitFor(() => served.lines().find((line) => line.startsWith("agentd listening on ")), 10_000);
    expect(banner).toMatch(/^agentd listening on 127\.0\.0\.1:\d+ · data in \/\S+ \(memory store\) · Ctrl-C to stop$/);
    // pino-pretty's lines, not JSON, and no colours on a pipe.
    expect(served.stdout()).toMatch(/INFO: agentd listening \{"address":"127\.0\.0\.1:\d+"/);
    expect(served.stdout()).not.toContain('"level":30');
    expect(served.stdout()).not.toContain("\u001b[");
    served.child.kill("SIGINT");
    expect((await served.exited).code).toBe(0);
    expect(served.stdout()).toContain("INFO: agentd stopped");
  });

  it("refuses an unknown --log-format", async () => {
    const served = await serve("--log-format", "xml");
    expect((await served.exited).code).toBe(1);
    expect(served.stderr()).toContain('--log-format must be auto, json or pretty, got "xml"');
  });
});
