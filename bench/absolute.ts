/**
 * The absolute benchmarks (information): client and server in this one process, over a real
 * loopback port, with the scripted model. They show the runtime's own costs in familiar units:
 * gRPC handling, the agent loop, event streaming and background persistence. bench/run.ts prints
 * them after the comparisons; their targets are shown but do not fail the bench (the ratio targets
 * against the raw baselines do).
 *
 *   - CreateSession p50 under 5 ms with the file store.
 *   - Time to the first streamed event under 20 ms (p50).
 *   - At least 20,000 streamed events per second for one session.
 *   - 100 sessions generating at once all complete, p95 turn time under 2 s.
 *   - Replaying 10,000 events to a new subscriber under 200 ms; under 1 MiB held per subscriber
 *     that stopped reading.
 *   - An MCP tool call inside a turn (tool_call to tool_result, stdio fixture server) under 5 ms
 *     p50, reported next to a bare SDK client's call to the same server.
 *   - Storing a turn costs the same for a session of 10,000 messages as for one of 10 (bytes written
 *     and write time within 2x), and 100 sessions saving at once share fsyncs (group commit).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { AgentdClient, events } from "../src/client/client.js";
import { resolveConfig } from "../src/config/config.js";
import { createLogger } from "../src/logging.js";
import { startServer } from "../src/server/server.js";
import type { SessionEvent } from "../src/events/types.js";
import { FileSessionStore } from "../src/store/file-store.js";
import type { MessageRecord, SessionRecord } from "../src/store/record.js";
import { RuleSet } from "../src/policy/rules.js";
import { fileURLToPath } from "node:url";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { stallingProxy } from "../test/helpers/stalling-proxy.js";
import { percentile, script } from "./measure.js";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

const MCP_FIXTURE = fileURLToPath(new URL("../test/fixtures/mcp/fixture-server.mjs", import.meta.url));

export interface AbsoluteResult {
  name: string;
  value: number;
  unit: string;
  target: string;
  ok: boolean;
}

const results: AbsoluteResult[] = [];

/** Runs every absolute benchmark against an in-process server; returns the figures. */
export async function runAbsoluteBenchmarks(): Promise<AbsoluteResult[]> {
  results.length = 0;
  const dataDir = await mkdtemp(path.join(tmpdir(), "agentd-bench-"));
  const config = resolveConfig({
    port: 0,
    dataDir,
    limits: { maxSessions: 100_000, maxSessionsPerOwner: 100_000 },
    mcpServers: { fixture: { command: process.execPath, args: [MCP_FIXTURE, "stdio"] } },
  });
  const server = await startServer({ config, logger: createLogger("warn") });
  const client = new AgentdClient(server.address);
  try {
    await benchCreate(client);
    await benchFirstEvent(client);
    await benchThroughput(client);
    await benchConcurrentSessions(client);
    benchPolicyCheck();
    await benchConfirmToToolStart(client);
    await benchMcpCall(client);
    await benchReplay(client);
    await benchStalledSubscribers(client, server.address);
    await benchStoreGrowth(path.join(dataDir, "store-bench"));
  } finally {
    client.close();
    await server.close();
    await rm(dataDir, { recursive: true, force: true });
  }
  return [...results];
}

/** The permission check in front of every tool call, with 100 rules of every kind. */
function benchPolicyCheck(): void {
  const rules = new RuleSet({
    deny: Array.from({ length: 30 }, (_, i) => `read_file(secret${i}/**/*.env)`),
    ask: Array.from({ length: 30 }, (_, i) => `bash(tool${i} deploy:*)`),
    allow: [...Array.from({ length: 38 }, (_, i) => `write_file(src/module${i}/**)`), "bash(npm test:*)", "mcp__github__*"],
    defaultDecision: "ask",
  });
  const calls = [
    { name: "write_file", args: { path: "src/module37/deep/file.ts", content: "x" }, workspace: "/w" },
    { name: "bash", args: { command: "npm test -- --run && npm test" }, workspace: "/w" },
    { name: "read_file", args: { path: "secret29/a/b/.env" }, workspace: "/w" },
  ];
  const samples: number[] = [];
  for (let i = 0; i < 30_000; i++) {
    const t0 = performance.now();
    rules.decide(calls[i % calls.length]!);
    samples.push((performance.now() - t0) * 1000);
  }
  const p50 = percentile(samples.slice(3000), 50);
  results.push({ name: "policy check, 100 rules, p50", value: p50, unit: "µs", target: "< 50 µs", ok: p50 < 50 });
}

/** From a ConfirmToolCall approving a call to the call's result on the turn's stream (the tool is quick). */
async function benchConfirmToToolStart(client: AgentdClient): Promise<void> {
  const model = { ...script([{ toolCalls: [{ name: "write_file", arguments: { path: "n.txt", content: "x" } }] }, { text: "ok" }]) };
  const { session } = await client.createSession({ config: { model, confirmation: { enabled: true, timeoutMs: 0 } } });
  const latencies: number[] = [];
  for (let i = 0; i < 100; i++) {
    let approvedAt = 0;
    for await (const event of events(client.streamGenerate({ sessionId: session!.id, prompt: `w${i}` }))) {
      const payload = event.payload;
      if (payload?.$case === "confirmationRequired") {
        approvedAt = performance.now();
        void client.confirmToolCall({ sessionId: session!.id, confirmationId: payload.confirmationRequired.confirmation!.id, decision: 1 });
      }
      if (payload?.$case === "toolResult" && approvedAt > 0) latencies.push(performance.now() - approvedAt);
    }
  }
  const p50 = percentile(latencies, 50);
  results.push({ name: "confirm to tool result p50", value: p50, unit: "ms", target: "< 5 ms", ok: p50 < 5 && latencies.length === 100 });
}

/** A new subscriber replaying a session's last 10,000 events (from the store and from memory). */
async function benchReplay(client: AgentdClient): Promise<void> {
  const { session } = await client.createSession({ config: { model: script([{ text: "r".repeat(10_000), chunkSize: 1 }]) } });
  await client.generate({ sessionId: session!.id, prompt: "stream ten thousand deltas" });
  const last = (await client.getSession({ sessionId: session!.id })).session!.lastSequence;
  const times: number[] = [];
  let replayed = 0;
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    const call = client.subscribe({ sessionId: session!.id, afterSequence: last - 10_000 });
    replayed = 0;
    for await (const message of call as AsyncIterable<{ event?: unknown; caughtUp?: unknown }>) {
      if (message.event) replayed++;
      if (message.caughtUp) break;
    }
    call.cancel();
    times.push(performance.now() - t0);
  }
  const p50 = percentile(times, 50);
  results.push({ name: `Subscribe replay of ${replayed} events p50`, value: p50, unit: "ms", target: "< 200 ms", ok: p50 < 200 && replayed >= 10_000 });
}

/** Memory the server holds for each subscriber whose network stopped taking data. */
async function benchStalledSubscribers(client: AgentdClient, address: string): Promise<void> {
  const readers = 20;
  const { session } = await client.createSession({ config: { model: script([{ text: "s".repeat(400_000), chunkSize: 16 }]) } });
  const proxies = await Promise.all(Array.from({ length: readers }, () => stallingProxy(address)));
  const clients = proxies.map((proxy) => new AgentdClient(proxy.address));
  try {
    await Promise.all(clients.map((c) => c.getSession({ sessionId: session!.id })));
    const before = heldBytes();
    for (const proxy of proxies) proxy.stall();
    const calls = clients.map((c) => c.subscribe({ sessionId: session!.id, afterSequence: session!.lastSequence }));
    for (const call of calls) call.on("error", () => {}).on("data", () => {});
    await client.generate({ sessionId: session!.id, prompt: "400 kB of text nobody reads" });
    const perReader = (heldBytes() - before) / readers;
    results.push({ name: "memory held per stalled subscriber", value: perReader / 1024, unit: "KiB", target: "< 1024 KiB", ok: perReader < 1024 * 1024 });
    for (const call of calls) call.cancel();
  } finally {
    for (const c of clients) c.close();
    await Promise.all(proxies.map((proxy) => proxy.close()));
  }
}

/** Heap plus Buffers after a full collection. */
function heldBytes(): number {
  gc();
  gc();
  const { heapUsed, external } = process.memoryUsage();
  return heapUsed + external;
}

/** An MCP tool call as the model makes it, against the same call from a bare SDK client. */
async function benchMcpCall(client: AgentdClient): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if ((await client.listMcpServers({})).servers.some((s) => s.toolCount > 0)) break;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  const call = { name: "mcp__fixture__echo", arguments: { text: "ping" } };
  const { session } = await client.createSession({
    config: { model: script([{ toolCalls: [call] }, { text: "ok" }]), permissions: { allow: ["mcp__fixture__*"] } },
  });
  const inTurn: number[] = [];
  for (let i = 0; i < 220; i++) {
    let calledAt = 0;
    for await (const event of events(client.streamGenerate({ sessionId: session!.id, prompt: `q${i}` }))) {
      if (event.payload?.$case === "toolCall") calledAt = performance.now();
      if (event.payload?.$case === "toolResult" && i >= 20) inTurn.push(performance.now() - calledAt);
    }
  }
  const bare = new Client({ name: "bench", version: "1" });
  await bare.connect(new StdioClientTransport({ command: process.execPath, args: [MCP_FIXTURE, "stdio"], stderr: "ignore" }));
  const direct: number[] = [];
  try {
    for (let i = 0; i < 220; i++) {
      const t0 = performance.now();
      await bare.callTool({ name: "echo", arguments: { text: "ping" } });
      if (i >= 20) direct.push(performance.now() - t0);
    }
  } finally {
    await bare.close();
  }
  const p50 = percentile(inTurn, 50);
  const base = percentile(direct, 50);
  results.push({ name: "MCP tool call in a turn p50 (stdio)", value: p50, unit: "ms", target: "< 5 ms", ok: p50 < 5 && inTurn.length === 200 });
  results.push({ name: "  the same call, bare SDK client p50", value: base, unit: "ms", target: "(info)", ok: true });
  results.push({ name: "  ratio in a turn / bare", value: p50 / base, unit: "x", target: "(info)", ok: true });
}

async function benchCreate(client: AgentdClient): Promise<void> {
  const model = script([{ text: "hi" }]);
  for (let i = 0; i < 50; i++) await client.createSession({ owner: "warmup", config: { model } });
  const latencies: number[] = [];
  const started = performance.now();
  for (let i = 0; i < 1000; i++) {
    const t0 = performance.now();
    await client.createSession({ owner: "bench", config: { model } });
    latencies.push(performance.now() - t0);
  }
  const seconds = (performance.now() - started) / 1000;
  const p50 = percentile(latencies, 50);
  results.push({ name: "CreateSession p50 (file store)", value: p50, unit: "ms", target: "< 5 ms", ok: p50 < 5 });
  results.push({ name: "CreateSession p99 (file store)", value: percentile(latencies, 99), unit: "ms", target: "(info)", ok: true });
  results.push({ name: "CreateSession sequential rate", value: 1000 / seconds, unit: "/s", target: "(info)", ok: true });
}

async function benchFirstEvent(client: AgentdClient): Promise<void> {
  const { session } = await client.createSession({ config: { model: script([{ text: "short answer" }]) } });
  const firstEvent: number[] = [];
  const turn: number[] = [];
  for (let i = 0; i < 200; i++) {
    const t0 = performance.now();
    let first = 0;
    for await (const event of events(client.streamGenerate({ sessionId: session!.id, prompt: `q${i}` }))) {
      if (first === 0 && event) first = performance.now() - t0;
    }
    firstEvent.push(first);
    turn.push(performance.now() - t0);
  }
  const p50 = percentile(firstEvent, 50);
  results.push({ name: "StreamGenerate time to first event p50", value: p50, unit: "ms", target: "< 20 ms", ok: p50 < 20 });
  results.push({ name: "StreamGenerate short turn p50", value: percentile(turn, 50), unit: "ms", target: "(info)", ok: true });
}

async function benchThroughput(client: AgentdClient): Promise<void> {
  const chunkSize = 5;
  const text = "x".repeat(50_000);
  const { session } = await client.createSession({ config: { model: script([{ text, chunkSize }]) } });
  const t0 = performance.now();
  let chars = 0;
  let messages = 0;
  for await (const event of events(client.streamGenerate({ sessionId: session!.id, prompt: "stream" }))) {
    if (event.payload?.$case !== "textDelta") continue;
    chars += event.payload.textDelta.text.length;
    messages++;
  }
  // A reader that falls behind gets consecutive deltas merged, so deltas are counted by their text.
  const rate = chars / chunkSize / ((performance.now() - t0) / 1000);
  results.push({ name: "streamed text deltas per second (1 session)", value: rate, unit: "/s", target: "> 20000/s", ok: rate > 20_000 && chars === text.length });
  results.push({ name: "  delta messages the client received", value: messages, unit: "", target: "(info)", ok: true });
}

async function benchConcurrentSessions(client: AgentdClient): Promise<void> {
  const model = script([
    { text: "Looking.", toolCalls: [{ name: "list_dir", arguments: {} }] },
    { text: "Done: nothing there.", chunkSize: 4 },
  ]);
  const sessions = await Promise.all(
    Array.from({ length: 100 }, async (_, i) => (await client.createSession({ owner: `c${i}`, config: { model } })).session!.id),
  );
  const durations: number[] = [];
  let completed = 0;
  await Promise.all(
    sessions.map(async (sessionId) => {
      const t0 = performance.now();
      for await (const event of events(client.streamGenerate({ sessionId, prompt: "go" }))) {
        if (event.payload?.$case === "turnCompleted") completed++;
      }
      durations.push(performance.now() - t0);
    }),
  );
  const p95 = percentile(durations, 95);
  results.push({ name: "100 concurrent turns with a tool: p95", value: p95, unit: "ms", target: "< 2000 ms", ok: p95 < 2000 && completed === 100 });
}

/**
 * What storing a turn costs as a session grows: bytes written (write-ahead log and checkpoints) and
 * time, for sessions of 10, 1,000 and 10,000 messages; and group commit across sessions.
 */
async function benchStoreGrowth(dir: string): Promise<void> {
  const turns = 200;
  const message = (n: number, turnId: string): MessageRecord => ({
    id: `m${n}`,
    role: n % 2 === 0 ? "user" : "assistant",
    text: `message ${n}: ${"lorem ipsum dolor sit amet ".repeat(10)}`,
    toolCalls: [],
    createdAt: new Date().toISOString(),
    turnId,
  });
  const record = (id: string, messages: MessageRecord[], lastSequence: number): SessionRecord => ({
    version: 1,
    id,
    owner: "bench",
    parentId: null,
    state: "idle",
    config: { model: { provider: "scripted", model: "script", baseUrl: "", apiKeyEnv: "", scriptPath: "", scriptJson: JSON.stringify({ steps: [{ text: "x".repeat(2000) }] }) }, systemPrompt: "You are a helpful assistant.", limits: { maxToolRounds: 50, toolTimeoutMs: 120_000 } },
    workspace: "/srv/work",
    ephemeral: false,
    labels: { project: "bench" },
    createdAt: new Date().toISOString(),
    updatedAt: new Date().toISOString(),
    usage: { inputTokens: lastSequence * 10, outputTokens: lastSequence },
    lastSequence,
    sequenceReservedThrough: lastSequence + 100_000,
    messages: [...messages],
  });
  const event = (sessionId: string, sequence: number, turnId: string, text: string): SessionEvent => ({
    sessionId,
    sequence,
    timeMs: Date.now(),
    turnId,
    payload: { type: "text_delta", text },
  });
  const perTurn: Record<number, { bytes: number; ms: number; wholeRecord: number }> = {};
  for (const size of [10, 1_000, 10_000]) {
    const store = new FileSessionStore(path.join(dir, `s${size}`));
    await store.loadAll();
    const history = Array.from({ length: size }, (_, n) => message(n, `t${n >> 1}`));
    let sequence = size * 5;
    await store.save(record("s", history, sequence), []);
    await store.checkpoint();
    const bytesBefore = store.stats.wal.bytes + store.stats.checkpointBytes;
    const started = performance.now();
    for (let turn = 0; turn < turns; turn++) {
      const turnId = `turn${turn}`;
      // Three writes per turn, as the persister makes them: the prompt, the streamed answer, the end.
      history.push(message(history.length, turnId));
      await store.save(record("s", history, sequence + 2), [event("s", ++sequence, turnId, ""), event("s", ++sequence, turnId, "")]);
      const deltas = Array.from({ length: 20 }, () => event("s", ++sequence, turnId, "some streamed text "));
      await store.save(record("s", history, sequence), deltas);
      history.push(message(history.length, turnId));
      await store.save(record("s", history, sequence + 3), [event("s", ++sequence, turnId, ""), event("s", ++sequence, turnId, ""), event("s", ++sequence, turnId, "")]);
      // Checkpoints as the background timer would make them.
      if (turn % 20 === 19) await store.checkpoint();
    }
    const ms = (performance.now() - started) / turns;
    perTurn[size] = {
      bytes: (store.stats.wal.bytes + store.stats.checkpointBytes - bytesBefore) / turns,
      ms,
      wholeRecord: 3 * Buffer.byteLength(JSON.stringify(record("s", history, sequence))),
    };
    await store.close();
  }
  for (const size of [10, 1_000, 10_000]) {
    const { bytes, ms, wholeRecord } = perTurn[size]!;
    const flat = size === 10 || (bytes <= 2 * perTurn[10]!.bytes && ms <= 2 * perTurn[10]!.ms);
    const label = size.toLocaleString("en-US");
    results.push({ name: `store: bytes written per turn, ${label} msgs`, value: bytes / 1024, unit: "KiB", target: size === 10 ? "(base)" : "<= 2x base", ok: flat });
    results.push({ name: `store: write time per turn, ${label} msgs`, value: ms, unit: "ms", target: size === 10 ? "(base)" : "<= 2x base", ok: flat });
    results.push({ name: `  old format (whole record), at the end`, value: wholeRecord / 1024, unit: "KiB", target: "(info)", ok: true });
  }

  // Group commit: 100 sessions ending their turns at once.
  const store = new FileSessionStore(path.join(dir, "group"));
  await store.loadAll();
  const ids = Array.from({ length: 100 }, (_, i) => `g${i}`);
  await Promise.all(ids.map((id) => store.save(record(id, [message(0, "t0")], 1), [event(id, 1, "t0", "")])));
  const syncs = store.stats.wal.syncs;
  const started = performance.now();
  await Promise.all(ids.map((id) => store.save(record(id, [message(0, "t0"), message(1, "t0")], 2), [event(id, 2, "t0", "")])));
  const ms = performance.now() - started;
  const used = store.stats.wal.syncs - syncs;
  await store.close();
  results.push({ name: "store: fsyncs for 100 sessions saving at once", value: used, unit: "fsyncs", target: "<= 5", ok: used <= 5 });
  results.push({ name: "  time until all 100 are durable", value: ms, unit: "ms", target: "(info)", ok: true });
}

