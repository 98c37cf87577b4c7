import { readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { status } from "@grpc/grpc-js";
import { afterAll, describe, expect, it } from "vitest";
import { SessionState } from "../src/gen/agentd/v1/runtime.js";
import type { SessionEvent } from "../src/events/types.js";
import type { AgentEvent } from "../src/gen/agentd/v1/runtime.js";
import type { SessionRecord } from "../src/store/record.js";
import { MemoryStore } from "../src/store/memory-store.js";
import type { SessionStore } from "../src/store/types.js";
import type { SpendMark, SpendRow } from "../src/store/spend.js";
import { FileSessionStore } from "../src/store/file-store.js";
import { cases, collect, grpcError, makeTempDir, removeTempDirs, scripted, startTestServer, waitFor } from "./helpers/harness.js";
import { readStoredRecord, storedSessionIds } from "./helpers/records.js";

afterAll(removeTempDirs);

/** A store that fails while `failing` is set, like a full or read-only disk. */
class FlakyStore implements SessionStore {
  failing = true;
  readonly inner = new MemoryStore();
  loadAll = () => this.inner.loadAll();
  delete = (id: string) => this.inner.delete(id);
  readEvents = (id: string, after: number, limit: number) => this.inner.readEvents(id, after, limit);
  spendOf = (owner: string, fromDay: string) => this.inner.spendOf(owner, fromDay);
  marksOf = (ids: readonly string[]) => this.inner.marksOf(ids);
  async addSpend(rows: readonly SpendRow[], marks?: readonly SpendMark[]): Promise<void> {
    if (this.failing) throw new Error("ENOSPC: no space left on device (simulated)");
    await this.inner.addSpend(rows, marks);
  }
  async save(record: SessionRecord, events: readonly SessionEvent[]): Promise<void> {
    if (this.failing) throw new Error("ENOSPC: no space left on device (simulated)");
    await this.inner.save(record, events);
  }
}

describe("file store", () => {
  it("restores sessions, history, config, parent links, usage and sequence after a restart", async () => {
    const dataDir = await makeTempDir();
    const first = await startTestServer({ dataDir });
    const { session: parent } = await first.client.createSession({
      owner: "alice",
      config: { model: scripted([{ text: "one", usage: { inputTokens: 5, outputTokens: 2 } }, { text: "two" }]), systemPrompt: "sp" },
      labels: { k: "v" },
    });
    const { session: child } = await first.client.createChildSession({ parentId: parent!.id });
    await first.client.pause({ sessionId: child!.id });
    const firstTurn = await collect(first.client.streamGenerate({ sessionId: parent!.id, prompt: "hello" }));
    const { session: before } = await first.client.getSession({ sessionId: parent!.id });
    await first.stop();

    expect(await storedSessionIds(dataDir)).toEqual([parent!.id, child!.id].sort());
    const files = await readdir(path.join(dataDir, "sessions"), { recursive: true });
    expect(files.some((f) => f.endsWith(".tmp"))).toBe(false);

    const second = await startTestServer({ dataDir });
    try {
      const { session: restored } = await second.client.getSession({ sessionId: parent!.id });
      expect(restored).toEqual({ ...before, updateTime: restored!.updateTime });
      expect(restored!.usage).toEqual({ inputTokens: 5, outputTokens: 2, totalTokens: 7, costUsd: 0 });
      const { session: restoredChild } = await second.client.getSession({ sessionId: child!.id });
      expect(restoredChild!.parentId).toBe(parent!.id);
      expect(restoredChild!.state).toBe(SessionState.SESSION_STATE_PAUSED);
      expect((await second.client.listChildSessions({ sessionId: parent!.id })).sessions).toHaveLength(1);

      const { messages } = await second.client.getMessages({ sessionId: parent!.id });
      expect(messages.map((m) => m.text)).toEqual(["hello", "one"]);

      // Sequence numbers continue where they stopped; the scripted model starts its script again.
      const next = await collect(second.client.streamGenerate({ sessionId: parent!.id, prompt: "again" }));
      expect(next[0]!.sequence).toBe(firstTurn.at(-1)!.sequence + 1);
    } finally {
      await second.stop();
    }
  });

  it("skips a corrupt file with a log line and never overwrites it", async () => {
    const dataDir = await makeTempDir();
    const first = await startTestServer({ dataDir });
    const { session } = await first.client.createSession({ owner: "bob" });
    await first.stop();
    const corrupt = path.join(dataDir, "sessions", "0badf00d-dead-beef-0000-000000000000.json");
    await writeFile(corrupt, '{"version":1,"id":"0badf00d-dead-beef-0000-000000000000", "trunc');
    const wrongVersion = path.join(dataDir, "sessions", "from-the-future.json");
    await writeFile(wrongVersion, JSON.stringify({ version: 99, id: "from-the-future" }));

    const second = await startTestServer({ dataDir });
    try {
      const { sessions } = await second.client.listSessions({});
      expect(sessions.map((s) => s.id)).toEqual([session!.id]);
      const skipped = second.logs.filter((line) => String(line.msg).includes("cannot be read"));
      expect(skipped.map((line) => line.location).sort()).toEqual([corrupt, wrongVersion].sort());
      expect(skipped.find((line) => line.location === wrongVersion)!.error).toContain("unsupported record version 99");
      await second.client.createSession({ owner: "bob" });
      await second.server.runtime.flush();
    } finally {
      await second.stop();
    }
    expect(await readFile(corrupt, "utf8")).toBe('{"version":1,"id":"0badf00d-dead-beef-0000-000000000000", "trunc');
  });

  it("restores a session interrupted mid-turn as idle with its unanswered tool calls closed", async () => {
    const dataDir = await makeTempDir();
    const first = await startTestServer({ dataDir });
    const { session } = await first.client.createSession({ config: { model: scripted([{ text: "ok" }]) } });
    await first.stop();
    // What a crash in the middle of a tool call leaves behind.
    const store = new FileSessionStore(dataDir);
    const record = (await store.loadAll()).records.find((r) => r.id === session!.id)!;
    record.state = "running";
    record.messages.push(
      { id: "m1", role: "user", text: "do it", toolCalls: [], createdAt: new Date().toISOString(), turnId: "t1" },
      { id: "m2", role: "assistant", text: "", toolCalls: [{ id: "c9", name: "list_dir", argumentsJson: "{}" }], createdAt: new Date().toISOString(), turnId: "t1" },
    );
    await store.save(record, []);
    await store.close();

    const second = await startTestServer({ dataDir });
    try {
      const { session: restored } = await second.client.getSession({ sessionId: session!.id });
      expect(restored!.state).toBe(SessionState.SESSION_STATE_IDLE);
      const { messages } = await second.client.getMessages({ sessionId: session!.id });
      expect(messages.at(-1)!.toolResult).toMatchObject({ callId: "c9", isError: true, output: expect.stringContaining("interrupted") });
      expect((await second.client.generate({ sessionId: session!.id, prompt: "next" })).result!.text).toBe("ok");
    } finally {
      await second.stop();
    }
  });

  it("keeps ephemeral sessions out of the store", async () => {
    const dataDir = await makeTempDir();
    const server = await startTestServer({ dataDir });
    const { session: kept } = await server.client.createSession({});
    await server.client.createSession({ ephemeral: true });
    await server.stop();
    expect(await storedSessionIds(dataDir)).toEqual([kept!.id]);
  });

  it("removes the file of a destroyed session", async () => {
    const dataDir = await makeTempDir();
    const server = await startTestServer({ dataDir });
    const { session } = await server.client.createSession({});
    await server.server.runtime.flush();
    expect(await storedSessionIds(dataDir)).toEqual([session!.id]);
    await server.client.destroySession({ sessionId: session!.id });
    await server.stop();
    expect(await storedSessionIds(dataDir)).toEqual([]);
    expect(await readdir(path.join(dataDir, "sessions"))).not.toContain(session!.id);
  });
});

/** A store whose writes hang until released, like a stalled disk. */
class StalledStore implements SessionStore {
  readonly inner = new MemoryStore();
  private release: () => void = () => {};
  private readonly released = new Promise<void>((resolve) => (this.release = resolve));
  writesStarted = 0;
  loadAll = () => this.inner.loadAll();
  delete = (id: string) => this.inner.delete(id);
  readEvents = (id: string, after: number, limit: number) => this.inner.readEvents(id, after, limit);
  addSpend = (rows: readonly SpendRow[], marks?: readonly SpendMark[]) => this.inner.addSpend(rows, marks);
  spendOf = (owner: string, fromDay: string) => this.inner.spendOf(owner, fromDay);
  marksOf = (ids: readonly string[]) => this.inner.marksOf(ids);
  async save(record: SessionRecord, events: readonly SessionEvent[]): Promise<void> {
    this.writesStarted++;
    // The transcript as it is now (see SessionStore.save): the session goes on appending to it.
    const taken = { ...record, messages: record.messages.slice() };
    await this.released;
    await this.inner.save(taken, events);
  }
  unblock(): void {
    this.release();
  }
}

describe("requests and the disk", () => {
  it("only acknowledgements wait for the disk: a stalled store holds CreateSession's reply, not other requests", async () => {
    const store = new StalledStore();
    const server = await startTestServer({ store });
    try {
      let created = false;
      const creating = server.client.createSession({ config: { model: scripted([{ text: "answer" }]) } }).then((reply) => ((created = true), reply));
      // The first write is now stuck; the session exists, but its creation is not acknowledged.
      await waitFor(() => (store.writesStarted === 1 ? true : undefined));
      const [listed] = (await server.client.listSessions({})).sessions;
      expect(created).toBe(false);
      const id = listed!.id;

      // Other requests go on while the disk stalls.
      await server.client.configureSession({ sessionId: id, config: { systemPrompt: "changed" } });
      expect((await server.client.getMessages({ sessionId: id })).messages).toHaveLength(0);
      expect(store.inner.has(id)).toBe(false);

      // Once the disk moves again, the acknowledgements go out, and the latest state is stored.
      store.unblock();
      expect((await creating).session!.id).toBe(id);
      expect((await server.client.generate({ sessionId: id, prompt: "q" })).result!.text).toBe("answer");
      await server.server.runtime.flush();
      const saved = (await store.inner.loadAll()).records[0]!;
      expect(saved.config.systemPrompt).toBe("changed");
      expect(saved.messages).toHaveLength(2);
    } finally {
      store.unblock();
      await server.stop();
    }
  });

  it("an ephemeral session never waits for the disk", async () => {
    const store = new StalledStore();
    const server = await startTestServer({ store });
    try {
      const { session } = await server.client.createSession({ ephemeral: true, config: { model: scripted([{ text: "answer" }]) } });
      const reply = await server.client.generate({ sessionId: session!.id, prompt: "q" });
      expect(reply.result!.text).toBe("answer");
      expect(store.writesStarted).toBe(0);
    } finally {
      store.unblock();
      await server.stop();
    }
  });

  it("a graceful stop cancels running turns and writes their final state", async () => {
    const dataDir = await makeTempDir();
    const server = await startTestServer({ dataDir });
    const { session } = await server.client.createSession({
      config: { model: scripted([{ text: "a slow answer", chunkSize: 2, delayMs: 100 }]) },
    });
    const events = collect(server.client.streamGenerate({ sessionId: session!.id, prompt: "go" }));
    await waitFor(async () => ((await server.client.getSession({ sessionId: session!.id })).session!.lastSequence >= 2 ? true : undefined));
    await server.server.close();
    const all = await events;
    expect(all.at(-1)!.payload).toEqual({ $case: "cancelled", cancelled: { reason: "shutdown" } });
    server.client.close();

    const record = (await readStoredRecord(dataDir, session!.id))!;
    expect(record.lastSequence).toBe(all.at(-1)!.sequence);
    expect(record.state).toBe("idle");
    expect(record.messages.map((m) => m.role)).toEqual(["user", "assistant"]);
  });
});

describe("a failing store", () => {
  it("CreateSession is UNAVAILABLE and keeps nothing when the store cannot take the session; no turn starts while a session cannot be written", async () => {
    const store = new FlakyStore();
    store.failing = false;
    const server = await startTestServer({ store });
    try {
      const { session } = await server.client.createSession({ config: { model: scripted([{ text: "ok" }], true) } });
      store.failing = true;
      const refused = await grpcError(server.client.createSession({}));
      expect(refused.code).toBe(status.UNAVAILABLE);
      expect(refused.details).toContain("nothing was created");
      expect((await server.client.listSessions({})).sessions.map((s) => s.id)).toEqual([session!.id]);

      // A change the store cannot take marks the session; a new turn would only pile up more.
      await server.client.pause({ sessionId: session!.id });
      await server.client.resume({ sessionId: session!.id });
      await waitFor(async () => ((await server.client.getSession({ sessionId: session!.id })).session!.persistenceError !== "" ? true : undefined));
      const busy = await grpcError(server.client.generate({ sessionId: session!.id, prompt: "q" }));
      expect(busy.code).toBe(status.UNAVAILABLE);
      expect(busy.details).toContain("no new turn starts");

      store.failing = false;
      await waitFor(async () => ((await server.client.getSession({ sessionId: session!.id })).session!.persistenceError === "" ? true : undefined));
      expect((await server.client.generate({ sessionId: session!.id, prompt: "q" })).result!.text).toBe("ok");
      await server.server.runtime.flush();
      expect((await store.inner.loadAll()).records.map((r) => r.id)).toEqual([session!.id]);
    } finally {
      store.failing = false;
      await server.stop();
    }
  });

  it("reports persistence_failed on the stream and on the session, retries, and clears it once a write succeeds", async () => {
    const store = new FlakyStore();
    store.failing = false;
    const server = await startTestServer({ store });
    try {
      const { session } = await server.client.createSession({
        config: { model: scripted([{ text: "slow reply", delayMs: 150, chunkSize: 100 }, { text: "next" }]) },
      });
      await server.client.generate({ sessionId: session!.id, prompt: "first" });
      store.failing = true;
      // The turn's end is not acknowledged while the store fails; the failure is said at once.
      const events: AgentEvent[] = [];
      const call = server.client.streamGenerate({ sessionId: session!.id, prompt: "hi" });
      const done = (async () => {
        for await (const message of call as AsyncIterable<{ event?: AgentEvent }>) events.push(message.event!);
      })();
      await waitFor(() => (events.some((e) => e.payload?.$case === "persistenceFailed") ? true : undefined), 10_000);
      expect(cases(events)).not.toContain("turnCompleted");
      store.failing = false;
      await done;
      const failure = events.find((e) => e.payload?.$case === "persistenceFailed");
      expect(failure, `events: ${cases(events).join(",")}`).toBeDefined();
      expect(failure!.turnId).toBe("");
      if (failure!.payload?.$case !== "persistenceFailed") throw new Error("unreachable");
      expect(failure!.payload.persistenceFailed.message).toContain("ENOSPC");
      expect(failure!.payload.persistenceFailed.attempts).toBeGreaterThanOrEqual(1);
      expect(cases(events).at(-1)).toBe("turnCompleted");

      expect(server.logs.some((line) => line.msg === "writing session to the store failed; will retry" && line.sessionId === session!.id)).toBe(true);

      // The disk recovered: the latest state is written and the error is cleared.
      await server.server.runtime.flush();
      const saved = (await store.inner.loadAll()).records.find((r) => r.id === session!.id)!;
      expect(saved.messages.map((m) => m.text)).toEqual(["first", "slow reply", "hi", "next"]);
      await waitFor(async () => ((await server.client.getSession({ sessionId: session!.id })).session!.persistenceError === "" ? true : undefined));
    } finally {
      store.failing = false;
      await server.stop();
    }
  });
});
