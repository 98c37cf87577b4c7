import { execFile, spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { MessageKind } from "../src/gen/agentd/v1/runtime.js";
import { collect, scripted, serversStoppedAfterAll, useSharedTestServer, waitFor } from "./helpers/harness.js";
import { stallingProxy } from "./helpers/stalling-proxy.js";

/** `agentd sessions ...` against real servers: creating with a model, following, the transcript's context marks. */

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, "..");
const tsx = path.join(root, "node_modules/.bin/tsx");
const main = path.join(root, "src/cli/main.ts");

const server = useSharedTestServer();
const startServer = serversStoppedAfterAll();

/** Runs the CLI to its end; a non-zero exit resolves too, with its code. */
async function agentd(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(tsx, [main, ...args], { cwd: root, timeout: 30_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const { code, stdout, stderr } = error as { code: number; stdout: string; stderr: string };
    return { code, stdout, stderr };
  }
}

interface Running {
  child: ChildProcess;
  out(): string;
  err(): string;
  /** Resolves once stdout plus stderr satisfy `check`; fails, quoting them, after the timeout. */
  until(check: (out: string, err: string) => boolean, timeoutMs?: number): Promise<void>;
  exited: Promise<number | null>;
}

/** Starts the CLI and keeps reading what it prints. */
function start(...args: string[]): Running {
  const child = spawn(tsx, [main, ...args], { cwd: root });
  let out = "";
  let err = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (err += chunk));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return {
    child,
    out: () => out,
    err: () => err,
    exited,
    until: (check, timeoutMs = 30_000) =>
      waitFor(() => (check(out, err) ? true : undefined), timeoutMs).then(
        () => undefined,
        () => {
          child.kill("SIGKILL");
          throw new Error(`the CLI printed:\n${out}\n--- stderr ---\n${err}`);
        },
      ),
  };
}

async function leave(follower: Running): Promise<number | null> {
  follower.child.kill("SIGINT");
  return follower.exited;
}

describe("agentd sessions create", { timeout: 60_000 }, () => {
  it("sets a scripted model from a script file, with a context window", async () => {
    const created = await agentd("sessions", "create", "--server", server().server.address, "--script", "examples/demo-script.json", "--context-window", "5000");
    expect(created.code).toBe(0);
    expect(created.stdout).toContain("model=scripted/script");
    const id = created.stdout.split(/\s+/)[0]!;
    const { session } = await server().client.getSession({ sessionId: id });
    expect(session!.config!.model).toMatchObject({ provider: "scripted", model: "script", scriptPath: "", contextWindow: 5000 });
    expect(session!.config!.model!.scriptJson).toContain("steps");
    const usage = await agentd("sessions", "context", id, "--server", server().server.address);
    expect(usage.stdout).toContain("of 5000");
  });

  it("sets a provider, model, endpoint and context window", async () => {
    const created = await agentd(
      "sessions", "create", "--server", server().server.address, "--owner", "modeller",
      "--provider", "openai", "--model", "gpt-4o-mini", "--base-url", "https://api.openai.com/v1", "--context-window", "128000",
    );
    expect(created.code).toBe(0);
    expect(created.stdout).toContain("owner=modeller  messages=0  model=openai/gpt-4o-mini");
    const { session } = await server().client.getSession({ sessionId: created.stdout.split(/\s+/)[0]! });
    expect(session!.config!.model).toMatchObject({ provider: "openai", model: "gpt-4o-mini", baseUrl: "https://api.openai.com/v1", contextWindow: 128000 });
  });

  it("refuses model flags it could only ignore, and a context window that is not a number", async () => {
    const orphan = await agentd("sessions", "create", "--server", server().server.address, "--model", "gpt-4o");
    expect(orphan.code).toBe(1);
    expect(orphan.stderr).toContain("--model needs --provider");
    const window = await agentd("sessions", "create", "--server", server().server.address, "--provider", "openai", "--model", "m", "--context-window", "lots");
    expect(window.code).toBe(1);
    expect(window.stderr).toContain('--context-window must be a positive number of tokens, got "lots"');
  });
});

describe("agentd sessions follow", { timeout: 60_000 }, () => {
  it("prints a failed turn's error code and message, and a cancelled turn's reason", async () => {
    const { client } = server();
    const model = scripted([{ error: { code: "FAILED_PRECONDITION", message: "the model is down" } }, { text: "slow text that will not finish", chunkSize: 1, delayMs: 100 }]);
    const { session } = await client.createSession({ config: { model } });
    const id = session!.id;
    const follower = start("sessions", "follow", id, "--server", server().server.address);
    await follower.until((_, err) => err.includes("caught up"));

    await client.startTurn({ sessionId: id, prompt: "fail please" });
    await follower.until((_, err) => err.includes("error FAILED_PRECONDITION"));
    expect(follower.err()).toContain('turnStarted');
    expect(follower.err()).toContain('"fail please"');
    expect(follower.err()).toMatch(/\[\d+\] error FAILED_PRECONDITION: .*the model is down/);

    await client.startTurn({ sessionId: id, prompt: "then cancel" });
    await follower.until((out) => out.includes("slow"));
    await client.cancel({ sessionId: id });
    await follower.until((_, err) => err.includes("cancelled: cancel_rpc"));
    expect(await leave(follower)).toBe(0);
  });

  it("--descendants labels a child session's events and text with its id prefix", async () => {
    const { client } = server();
    const { session: parent } = await client.createSession({ config: { model: scripted([{ text: "parent speaks" }]) } });
    const { session: child } = await client.createChildSession({ parentId: parent!.id, config: { model: scripted([{ text: "child speaks" }]) } });
    const prefix = child!.id.slice(0, 8);
    const follower = start("sessions", "follow", parent!.id, "--descendants", "--server", server().server.address);
    await follower.until((_, err) => err.includes("caught up"));

    await collect(client.streamGenerate({ sessionId: child!.id, prompt: "hi child" }));
    await follower.until((_, err) => new RegExp(`\\[${prefix}:\\d+\\] turnCompleted end_turn`).test(err));
    expect(follower.out()).toContain(`[${prefix}] child speaks`);

    await collect(client.streamGenerate({ sessionId: parent!.id, prompt: "hi parent" }));
    await follower.until((_, err) => /\n\[\d+\] turnCompleted end_turn/.test(err));
    expect(follower.out()).toMatch(/\nparent speaks/);
    expect(follower.out()).not.toContain(`[${parent!.id.slice(0, 8)}]`);
    expect(await leave(follower)).toBe(0);
  });

  it("without --descendants, a child's events are not shown", async () => {
    const { client } = server();
    const { session: parent } = await client.createSession({ config: { model: scripted([{ text: "parent speaks" }]) } });
    const { session: child } = await client.createChildSession({ parentId: parent!.id, config: { model: scripted([{ text: "child speaks" }]) } });
    const follower = start("sessions", "follow", parent!.id, "--server", server().server.address);
    await follower.until((_, err) => err.includes("caught up"));
    await collect(client.streamGenerate({ sessionId: child!.id, prompt: "hi child" }));
    await collect(client.streamGenerate({ sessionId: parent!.id, prompt: "hi parent" }));
    await follower.until((_, err) => err.includes("turnCompleted"));
    expect(follower.out()).not.toContain("child speaks");
    expect(await leave(follower)).toBe(0);
  });

  it("reports OUT_OF_RANGE for a cursor past the session's events, with its message, and exits 1", async () => {
    const { session } = await server().client.createSession({});
    const followed = await agentd("sessions", "follow", session!.id, "--after", "1000", "--server", server().server.address);
    expect(followed.code).toBe(1);
    expect(followed.stderr).toMatch(/OUT_OF_RANGE: after_sequence 1000 is past session/);
  });

  it("reports OUT_OF_RANGE for a cursor whose events are no longer kept, and --from-oldest replays what is", async () => {
    const small = await startServer({ config: { store: "memory", persistence: { maxEventsPerSession: 10, maxEventBytesPerSession: 100_000, recentEventsMemoryBytes: 1 } } });
    const { session } = await small.client.createSession({ config: { model: scripted([{ text: "many little deltas here", chunkSize: 1 }], true) } });
    for (const prompt of ["one", "two"]) await collect(small.client.streamGenerate({ sessionId: session!.id, prompt }));

    const trimmed = await agentd("sessions", "follow", session!.id, "--after", "0", "--server", small.server.address);
    expect(trimmed.code).toBe(1);
    expect(trimmed.stderr).toMatch(/OUT_OF_RANGE: events after 0 are no longer kept/);
    expect(trimmed.stderr).toContain(`agentd sessions follow ${session!.id} --from-oldest`);

    const follower = start("sessions", "follow", session!.id, "--from-oldest", "--server", small.server.address);
    await follower.until((_, err) => err.includes("caught up"));
    expect(follower.err()).toContain("turnCompleted end_turn");
    expect(await leave(follower)).toBe(0);
  });

  it("reports RESOURCE_EXHAUSTED when it reads too slowly, says where to pick up, and exits 1", async () => {
    const tight = await startServer({ config: { store: "memory", grpc: { maxPendingEvents: 20, maxPendingEventChars: 8192 } } });
    const { session } = await tight.client.createSession({ config: { model: scripted([{ text: "y".repeat(512 * 1024), chunkSize: 256 }]) } });
    const proxy = await stallingProxy(tight.server.address);
    try {
      const follower = start("sessions", "follow", session!.id, "--server", proxy.address);
      await follower.until((_, err) => err.includes("caught up"));
      proxy.stall();
      await tight.client.startTurn({ sessionId: session!.id, prompt: "a lot" });
      await waitFor(async () => ((await tight.client.getSession({ sessionId: session!.id })).session!.turnActive ? undefined : true), 30_000);
      proxy.resume();
      expect(await follower.exited).toBe(1);
      expect(follower.err()).toMatch(/agentd sessions follow: RESOURCE_EXHAUSTED: /);
      expect(follower.err()).toMatch(new RegExp(`pick up where it stopped with: agentd sessions follow ${session!.id} --after \\d+`));
    } finally {
      await proxy.close();
    }
  });
});

describe("agentd sessions messages", { timeout: 60_000 }, () => {
  it("tags each message by where it stands in the model's context: compacted away, the compaction point, the summary, rewound", async () => {
    const { client } = server();
    const steps = [{ text: "a1" }, { text: "a2" }, { text: "a3" }, { text: "the summary" }, { text: "a4" }];
    const { session } = await client.createSession({ config: { model: scripted(steps) } });
    const id = session!.id;
    for (const prompt of ["p1", "p2", "p3"]) await collect(client.streamGenerate({ sessionId: id, prompt }));
    const compacted = await agentd("sessions", "compact", id, "--server", server().server.address);
    expect(compacted.code).toBe(0);
    expect(compacted.stdout).toMatch(/^summary: \d+ → \d+ tokens/);
    const fourth = await collect(client.streamGenerate({ sessionId: id, prompt: "p4" }));
    const rewound = await agentd("sessions", "rewind", id, fourth.at(-1)!.turnId, "--server", server().server.address);
    expect(rewound.stdout).toContain("2 messages rewound");

    const listed = await agentd("sessions", "messages", id, "--server", server().server.address);
    expect(listed.code).toBe(0);
    const lines = listed.stdout.trimEnd().split("\n");
    const { messages } = (await client.getMessages({ sessionId: id, pageSize: 1000 }));
    expect(lines).toHaveLength(messages.length);
    // Every mark the server gives shows on its line, and an ordinary message in context has none.
    messages.forEach((m, i) => {
      const line = lines[i]!;
      expect(line.startsWith("[")).toBe(m.kind === MessageKind.MESSAGE_KIND_SUMMARY || m.contextStart || m.rewound || !m.inContext);
      expect(line.startsWith("[summary")).toBe(m.kind === MessageKind.MESSAGE_KIND_SUMMARY);
      expect(line.includes("context start")).toBe(m.contextStart);
      expect(line.includes("[rewound")).toBe(m.rewound);
      expect(line.includes("out of context")).toBe(!m.inContext && !m.rewound);
    });
    expect(lines[0]).toBe("[out of context] user: p1");
    expect(lines).toContain("[rewound] user: p4");
    expect(lines).toContain("[rewound] assistant: a4");
    expect(lines.some((line) => line.startsWith("[summary] user: "))).toBe(true);
    expect(lines.filter((line) => line.includes("context start"))).toHaveLength(1);
    expect(listed.stderr).toMatch(/^\d+ messages, \d+ of them in the model's context/);
  });
});
