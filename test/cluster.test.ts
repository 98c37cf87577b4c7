/**
 * Three agentd processes on one PostgreSQL, driven through the generated client like any user:
 * a session created on one node is run by one node at a time (the holder of its tree's lease), and
 * any node answers any call on it.
 */
import { status } from "@grpc/grpc-js";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { AgentdClient } from "../src/client/client.js";
import { ConfirmDecision, SessionState, type AgentEvent } from "../src/gen/agentd/v1/runtime.js";
import { spawnServer, type ServerProcess } from "./helpers/crash-server.js";
import { cases, collect, grpcError, makeTempDir, removeTempDirs, scripted, waitFor } from "./helpers/harness.js";
import { freshDatabase, type FreshDatabase } from "./helpers/postgres.js";

const LEASE_MS = 1_500;

interface Node {
  name: string;
  process: ServerProcess;
  client: AgentdClient;
}

const started: Node[] = [];
const databases: FreshDatabase[] = [];

afterEach(async () => {
  for (const node of started.splice(0)) {
    node.client.close();
    await node.process.kill();
  }
  for (const db of databases.splice(0)) await db.drop();
});
afterAll(removeTempDirs);

/** Three nodes on a fresh database, sharing one data directory (the sessions' workspaces). */
async function cluster(extra: string[] = []): Promise<Node[]> {
  const db = await freshDatabase();
  databases.push(db);
  const dataDir = await makeTempDir("agentd-cluster-");
  const args = ["--store", "postgres", "--database-url", db.url, "--cluster", "--lease-ms", String(LEASE_MS), ...extra];
  // One after the other: the first applies the schema (the others would wait on its lock anyway).
  const nodes: Node[] = [];
  for (const name of ["A", "B", "C"]) {
    const process = await spawnServer(dataDir, args);
    const node = { name, process, client: new AgentdClient(process.address) };
    started.push(node);
    nodes.push(node);
  }
  return nodes;
}

const slow = (text: string) => scripted([{ text, chunkSize: 2, delayMs: 40 }], true);

describe("three nodes on one database", () => {
  it("create on A, stream the turn through B, cancel it from C, confirm a tool call through A", async () => {
    const [a, b, c] = await cluster();
    const { session } = await a.client.createSession({ config: { model: slow("a long and slow answer that is still streaming") } });
    const id = session!.id;

    const events: AgentEvent[] = [];
    const streamed = (async () => {
      for await (const message of b.client.streamGenerate({ sessionId: id, prompt: "go" }) as AsyncIterable<{ event?: AgentEvent }>) events.push(message.event!);
    })();
    await waitFor(() => (events.some((e) => e.payload?.$case === "textDelta") ? true : undefined));
    await c.client.cancel({ sessionId: id });
    await streamed;
    expect(cases(events).at(-1)).toBe("cancelled");
    expect((await c.client.getSession({ sessionId: id })).session!.turnActive).toBe(false);

    // A tool call that asks a person, answered through another node than the one streaming.
    const steps = [{ toolCalls: [{ id: "w1", name: "write_file", arguments: { path: "hello.txt", content: "from the cluster" } }] }, { text: "written" }];
    const { session: asking } = await c.client.createSession({ config: { model: scripted(steps), confirmation: { enabled: true, timeoutMs: 0 } } });
    const turn = collect(b.client.streamGenerate({ sessionId: asking!.id, prompt: "write it" }));
    const pending = await waitFor(async () => (await a.client.listPendingConfirmations({ sessionId: asking!.id })).confirmations[0]);
    await a.client.confirmToolCall({ sessionId: asking!.id, confirmationId: pending.id, decision: ConfirmDecision.CONFIRM_DECISION_APPROVE });
    const seen = cases(await turn);
    expect(seen).toContain("confirmationRequired");
    expect(seen.at(-1)).toBe("turnCompleted");
    expect(await readFile(path.join(asking!.workspace, "hello.txt"), "utf8")).toBe("from the cluster");
  }, 60_000);

  it("any node's web console serves a session another node runs: its details, a turn, its live events, a confirmation", async () => {
    const [a, b, c] = await cluster(["--console-port", "0"]);
    const consoleOf = (node: Node) => /"console":"http:\/\/([^/]+)\/"/.exec(node.process.output())![1]!;
    const steps = [{ toolCalls: [{ id: "w1", name: "write_file", arguments: { path: "console.txt", content: "approved through C" } }] }, { text: "written" }];
    const { session } = await a.client.createSession({ config: { model: scripted(steps), confirmation: { enabled: true, timeoutMs: 0 } } });
    const id = session!.id;
    const api = (node: Node, rest: string, body?: unknown) =>
      fetch(`http://${consoleOf(node)}/api/sessions/${id}${rest}`, body === undefined ? {} : { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

    const details = (await (await api(b, "")).json()) as { session: { id: string } };
    expect(details.session.id).toBe(id);
    // The event stream through C, the turn started through B, the call approved through C.
    const reading = new AbortController();
    const stream = await fetch(`http://${consoleOf(c)}/api/sessions/${id}/events?after=0`, { signal: reading.signal });
    expect(stream.status).toBe(200);
    expect(stream.headers.get("content-type")).toBe("text/event-stream");
    let seen = "";
    const read = (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of stream.body as unknown as AsyncIterable<Uint8Array>) seen += decoder.decode(chunk, { stream: true });
    })().catch(() => {});
    expect((await api(b, "/turns", { prompt: "write it" })).status).toBe(202);
    const pending = await waitFor(async () => ((await (await api(c, "")).json()) as { confirmations: Array<{ id: string }> }).confirmations[0]);
    expect((await api(c, `/confirmations/${pending.id}`, { decision: "approve" })).status).toBe(200);
    await waitFor(() => (seen.includes('"type":"turn_completed"') ? true : undefined));
    expect(seen).toContain('"type":"confirmation_required"');
    reading.abort();
    await read;
    expect(await readFile(path.join(session!.workspace, "console.txt"), "utf8")).toBe("approved through C");
    // A session that does not exist is still "not found", wherever it is asked.
    expect((await fetch(`http://${consoleOf(b)}/api/sessions/00000000-0000-4000-8000-000000000000`)).status).toBe(404);
  }, 60_000);

  it("a client that sends each call to the next node sees one consistent session", async () => {
    const nodes = await cluster();
    let turn = 0;
    const next = () => nodes[turn++ % nodes.length]!.client;
    const { session } = await next().createSession({ owner: "rr", config: { model: scripted([{ text: "ok", usage: { inputTokens: 10, outputTokens: 1 } }], true) }, labels: { n: "0" } });
    const id = session!.id;
    for (let round = 1; round <= 4; round++) {
      expect((await next().generate({ sessionId: id, prompt: `q${round}` })).result!.text).toBe("ok");
      const { messages } = await next().getMessages({ sessionId: id });
      expect(messages.map((m) => m.text)).toEqual(Array.from({ length: round }, (_, i) => [`q${i + 1}`, "ok"]).flat());
      await next().configureSession({ sessionId: id, config: { systemPrompt: `prompt ${round}` } });
      expect((await next().getSession({ sessionId: id })).session!.config!.systemPrompt).toBe(`prompt ${round}`);
      await next().pause({ sessionId: id });
      expect((await next().getSession({ sessionId: id })).session!.state).toBe(SessionState.SESSION_STATE_PAUSED);
      expect((await grpcError(next().generate({ sessionId: id, prompt: "refused" }))).code).toBe(status.FAILED_PRECONDITION);
      await next().resume({ sessionId: id });
      const listed = (await next().listSessions({ owner: "rr" })).sessions;
      expect(listed.map((s) => [s.id, s.messageCount])).toEqual([[id, round * 2]]);
    }
    const { session: child } = await next().createChildSession({ parentId: id });
    expect((await next().listChildSessions({ sessionId: id })).sessions.map((s) => s.id)).toEqual([child!.id]);
    expect((await next().destroySession({ sessionId: id })).destroyedSessionIds.sort()).toEqual([id, child!.id].sort());
    for (const node of nodes) expect((await grpcError(node.client.getSession({ sessionId: id }))).code).toBe(status.NOT_FOUND);
    expect((await next().listSessions({ owner: "rr" })).sessions).toEqual([]);
    // The owner's spending is the cluster's, from any node, and outlives the session.
    for (const node of nodes) {
      await expect.poll(async () => (await node.client.getOwnerUsage({ owner: "rr" })).ownerUsage!.usage!.totalTokens, { timeout: 5_000 }).toBe(44);
    }
  }, 60_000);

  it("kill -9 of the holder mid-turn: another node takes the session within the lease time, with the acknowledged history intact", async () => {
    const [a, b, c] = await cluster();
    const { session } = await a.client.createSession({ config: { model: slow("a slow answer to the second question") } });
    const id = session!.id;
    expect((await b.client.generate({ sessionId: id, prompt: "first" })).result!.text).toBe("a slow answer to the second question");
    const events: AgentEvent[] = [];
    const streaming = (async () => {
      for await (const message of b.client.streamGenerate({ sessionId: id, prompt: "second" }) as AsyncIterable<{ event?: AgentEvent }>) events.push(message.event!);
    })().catch((error: { code?: number }) => error);
    await waitFor(() => (events.some((e) => e.payload?.$case === "textDelta") ? true : undefined));
    await a.process.kill();
    const cut = await streaming;
    expect((cut as { code?: number } | undefined)?.code).toBe(status.UNAVAILABLE);

    const t0 = Date.now();
    const { messages } = await c.client.getMessages({ sessionId: id });
    const tookOver = Date.now() - t0;
    expect(tookOver).toBeLessThan(LEASE_MS + 1_500);
    // The first turn was acknowledged: it is all there. Of the second, what was stored before the kill.
    expect(messages.slice(0, 2).map((m) => m.text)).toEqual(["first", "a slow answer to the second question"]);
    const { session: now } = await c.client.getSession({ sessionId: id });
    expect(now!.turnActive).toBe(false);
    expect((await b.client.generate({ sessionId: id, prompt: "third" })).result!.text).toBe("a slow answer to the second question");
  }, 60_000);

  it("a holder stopped past its lease and resumed finds its writes fenced, and says so in its log", async () => {
    const [a, b] = await cluster();
    const answer = "a slow answer that A is still writing when it is stopped";
    const { session } = await a.client.createSession({ config: { model: slow(answer) } });
    const id = session!.id;
    await a.client.generate({ sessionId: id, prompt: "on A" });
    // A is stopped in the middle of a turn: when it goes on, it has events to write.
    const events: AgentEvent[] = [];
    const onA = (async () => {
      for await (const message of a.client.streamGenerate({ sessionId: id, prompt: "stopped" }) as AsyncIterable<{ event?: AgentEvent }>) events.push(message.event!);
    })().catch((error: unknown) => error);
    await waitFor(() => (events.some((e) => e.payload?.$case === "textDelta") ? true : undefined));
    process.kill(a.process.pid, "SIGSTOP");
    try {
      // Past A's lease, B takes the tree (the interrupted turn ends as after a restart) and runs a turn.
      await new Promise((resolve) => setTimeout(resolve, LEASE_MS + 200));
      expect((await b.client.generate({ sessionId: id, prompt: "on B" }, { deadline: Date.now() + 10_000 })).result!.text).toBe(answer);
    } finally {
      process.kill(a.process.pid, "SIGCONT");
    }
    await waitFor(() => (a.process.output().includes("fenced") ? true : undefined), 10_000);
    await onA;
    // A's late writes did not land: the history is what B stored.
    const { messages } = await b.client.getMessages({ sessionId: id });
    expect(messages.map((m) => m.text).slice(-2)).toEqual(["on B", answer]);
    expect(messages.filter((m) => m.text === answer)).toHaveLength(2);
    // A dropped the tree: a call through A is served by B.
    expect((await a.client.generate({ sessionId: id, prompt: "through A" })).result!.text).toBe(answer);
    expect((await b.client.getMessages({ sessionId: id })).messages.slice(-2).map((m) => m.text)).toEqual(["through A", answer]);
  }, 60_000);

  it("counts sessions against the limits across the cluster", async () => {
    const [a, b, c] = await cluster(["--max-sessions-per-owner", "3"]);
    await a.client.createSession({ owner: "capped" });
    await b.client.createSession({ owner: "capped" });
    await c.client.createSession({ owner: "capped" });
    const refused = await grpcError(a.client.createSession({ owner: "capped" }));
    expect(refused.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(refused.details).toContain("per-owner limit (limits.maxSessionsPerOwner = 3)");
    expect((await b.client.listSessions({ owner: "capped" })).sessions).toHaveLength(3);
  }, 60_000);

  it("a node stopped with SIGTERM hands its idle sessions over at once", async () => {
    const [a, b] = await cluster();
    const { session } = await a.client.createSession({ config: { model: scripted([{ text: "ok" }], true) } });
    // Through B, which then remembers that A runs the session.
    await b.client.generate({ sessionId: session!.id, prompt: "before" });
    process.kill(a.process.pid, "SIGTERM");
    await waitFor(() => (a.process.output().includes("agentd stopped") ? true : undefined), 10_000);
    const t0 = Date.now();
    expect((await b.client.generate({ sessionId: session!.id, prompt: "after" })).result!.text).toBe("ok");
    // No lease to wait out: A gave it back, and B found out that A is gone.
    expect(Date.now() - t0).toBeLessThan(LEASE_MS);
    expect((await b.client.getMessages({ sessionId: session!.id })).messages.map((m) => m.text)).toEqual(["before", "ok", "after", "ok"]);
  }, 60_000);

  it("a draining node hands each idle tree back at once while its running turns finish", async () => {
    const [a, b] = await cluster();
    const { session: idle } = await a.client.createSession({ config: { model: scripted([{ text: "ok" }], true) } });
    const { session: busy } = await a.client.createSession({ config: { model: scripted([{ text: "x".repeat(60), chunkSize: 2, delayMs: 100 }], true) } });
    const running = collect(a.client.streamGenerate({ sessionId: busy!.id, prompt: "long" }));
    await waitFor(async () => ((await b.client.getSession({ sessionId: busy!.id })).session!.turnActive ? true : undefined));
    process.kill(a.process.pid, "SIGTERM");
    await waitFor(() => (a.process.output().includes("draining") ? true : undefined), 10_000);
    // During the drain: the idle tree is B's at once, the running turn goes on at A.
    expect((await b.client.generate({ sessionId: idle!.id, prompt: "meanwhile" })).result!.text).toBe("ok");
    expect(a.process.output()).not.toContain("agentd stopped");
    expect(cases(await running).at(-1)).toBe("turnCompleted");
    await waitFor(() => (a.process.output().includes("agentd stopped") ? true : undefined), 10_000);
    expect((await b.client.getMessages({ sessionId: busy!.id })).messages.map((m) => m.text)).toEqual(["long", "x".repeat(60)]);
  }, 60_000);
});
