import { mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { lastValueFrom, toArray } from "rxjs";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { resolveConfig } from "../../src/config/config.js";
import { AgentdError } from "../../src/errors.js";
import { createLogger } from "../../src/logging.js";
import { ANONYMOUS_ADMIN as admin } from "../../src/runtime/caller.js";
import { Runtime } from "../../src/runtime/runtime.js";
import { MemoryStore } from "../../src/store/memory-store.js";
import { ToolRegistry } from "../../src/tools/registry.js";
import { sessionRecord } from "../helpers/records.js";

let dataDir: string;
let store: MemoryStore;

beforeEach(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), "agentd-runtime-"));
  store = new MemoryStore();
});
afterEach(() => rm(dataDir, { recursive: true, force: true }));

function open() {
  const config = resolveConfig({ dataDir, persistence: { debounceMs: 1, retryBaseMs: 10, retryMaxMs: 10 } });
  return Runtime.open({ config, store, tools: ToolRegistry.withBuiltins(), logger: createLogger("silent") });
}

const model = (steps: object[]) => ({
  provider: "scripted",
  model: "script",
  baseUrl: "",
  apiKeyEnv: "",
  scriptPath: "",
  scriptJson: JSON.stringify({ steps }),
});

describe("Runtime, the core without the wire", () => {
  it("runs a turn through its handle and keeps what it did across a reopen", async () => {
    const runtime = await open();
    const session = await runtime.createSession(admin, {
      owner: "ann",
      config: { model: model([{ toolCalls: [{ name: "list_dir", arguments: {} }] }, { text: "empty" }]) },
      workspace: "",
      ephemeral: false,
      labels: { team: "x" },
    });
    const turn = runtime.startTurn(admin, session.id, "look");
    const events = await lastValueFrom(turn.events.pipe(toArray()));
    expect(events.map((e) => e.payload.type)).toEqual(["turn_started", "usage", "tool_call", "tool_result", "text_delta", "usage", "turn_completed"]);
    expect(events.every((e, i) => e.sequence === i + 1 && e.turnId === turn.turnId)).toBe(true);
    expect(runtime.getSession(admin, session.id)).toMatchObject({ state: "idle", messageCount: 4, lastSequence: 7, activeTurnId: null });
    await runtime.stopTurns();
    await runtime.close();

    const reopened = await open();
    expect(reopened.getSession(admin, session.id)).toMatchObject({ owner: "ann", labels: { team: "x" }, messageCount: 4, lastSequence: 7 });
    expect(reopened.messages(admin, session.id, { pageSize: 0, pageToken: "" }).messages.at(-1)).toMatchObject({ role: "assistant", text: "empty" });
    await reopened.close();
  });

  it("cancels through the handle with a reason, and refuses a second turn while one runs", async () => {
    const runtime = await open();
    const session = await runtime.createSession(admin, {
      owner: "",
      config: { model: model([{ text: "slow", delayMs: 5_000 }]) },
      workspace: "",
      ephemeral: true,
      labels: {},
    });
    const turn = runtime.startTurn(admin, session.id, "wait");
    const done = lastValueFrom(turn.events.pipe(toArray()));
    expect(() => runtime.startTurn(admin, session.id, "again")).toThrow(AgentdError);
    expect(turn.cancel("cancel_rpc")).toBe(true);
    expect((await done).at(-1)!.payload).toEqual({ type: "turn_cancelled", reason: "cancel_rpc" });
    expect(turn.cancel("cancel_rpc")).toBe(false);
    // Ephemeral sessions never reach the store.
    await runtime.flush();
    expect(store.has(session.id)).toBe(false);
    await runtime.close();
  });

  it("ends a turn whose deadline passes as deadline_exceeded", async () => {
    const runtime = await open();
    const session = await runtime.createSession(admin, {
      owner: "",
      config: { model: model([{ text: "slow", delayMs: 5_000 }]) },
      workspace: "",
      ephemeral: true,
      labels: {},
    });
    const turn = runtime.startTurn(admin, session.id, "wait", { deadlineMs: Date.now() + 50 });
    const events = await lastValueFrom(turn.events.pipe(toArray()));
    expect(events.at(-1)!.payload).toEqual({ type: "turn_cancelled", reason: "deadline_exceeded" });
    await runtime.close();
  });

  it("keeps a deadline weeks away from firing at once", async () => {
    const runtime = await open();
    const session = await runtime.createSession(admin, {
      owner: "",
      config: { model: model([{ text: "slow", delayMs: 100 }]) },
      workspace: "",
      ephemeral: true,
      labels: {},
    });
    const turn = runtime.startTurn(admin, session.id, "wait", { deadlineMs: Date.now() + 30 * 24 * 3600 * 1000 });
    const events = await lastValueFrom(turn.events.pipe(toArray()));
    expect(events.at(-1)!.payload.type).toBe("turn_completed");
    await runtime.close();
  });

  it("a model changed during a turn applies to the next turn, whose script starts at its first step", async () => {
    const runtime = await open();
    const session = await runtime.createSession(admin, {
      owner: "",
      config: { model: model([{ toolCalls: [{ name: "list_dir", arguments: {} }], delayMs: 20 }, { text: "old two", delayMs: 50 }]) },
      workspace: "",
      ephemeral: true,
      labels: {},
    });
    const turn = runtime.startTurn(admin, session.id, "first");
    const done = lastValueFrom(turn.events.pipe(toArray()));
    await new Promise((resolve) => setTimeout(resolve, 40));
    runtime.configureSession(admin, session.id, { model: model([{ text: "new one" }, { text: "new two" }]) });
    const first = (await done).at(-1)!.payload;
    expect(first.type === "turn_completed" && first.result.text).toBe("old two");

    const next = await lastValueFrom(runtime.startTurn(admin, session.id, "second").events.pipe(toArray()));
    const last = next.at(-1)!.payload;
    expect(last.type === "turn_completed" && last.result.text).toBe("new one");
    await runtime.close();
  });

  it("frees an owner's turn slot before the end of its turn goes out", async () => {
    const config = resolveConfig({ dataDir, limits: { maxConcurrentTurnsPerOwner: 1 } });
    const runtime = await Runtime.open({ config, store, tools: ToolRegistry.withBuiltins(), logger: createLogger("silent") });
    const session = await runtime.createSession(admin, { owner: "o", config: { model: model([{ text: "a" }, { text: "b" }]) }, workspace: "", ephemeral: true, labels: {} });
    const next = await new Promise<string>((resolve, reject) =>
      runtime.startTurn(admin, session.id, "one").events.subscribe({
        // A client that starts the next turn the moment it sees the end.
        complete: () => {
          try {
            lastValueFrom(runtime.startTurn(admin, session.id, "two").events.pipe(toArray())).then((events) => {
              const last = events.at(-1)!.payload;
              resolve(last.type === "turn_completed" ? last.result.text : last.type);
            }, reject);
          } catch (error) {
            reject(error);
          }
        },
      }),
    );
    expect(next).toBe("b");
    await runtime.close();
  });

  it("runs no tool in a restored session whose workspace is no longer allowed, nor lets a child in", async () => {
    const outside = await mkdtemp(path.join(tmpdir(), "agentd-old-root-"));
    await store.save({ ...sessionRecord("old"), workspace: outside, config: { model: model([{ toolCalls: [{ name: "list_dir", arguments: {} }] }, { text: "done" }]), systemPrompt: "", limits: { maxToolRounds: 5, toolTimeoutMs: 0 } } });
    const runtime = await open();
    const events = await lastValueFrom(runtime.startTurn(admin, "old", "look").events.pipe(toArray()));
    const result = events.find((e) => e.payload.type === "tool_result")!.payload;
    expect(result).toMatchObject({ result: { isError: true, output: expect.stringContaining("outside the server's allowed workspace roots") } });
    await expect(
      runtime.createChildSession(admin, "old", { config: {}, workspace: path.join(outside, "sub"), labels: {} }),
    ).rejects.toMatchObject({ kind: "permission_denied" });
    await rm(outside, { recursive: true, force: true });
    await runtime.close();
  });

  it("resolves a root that is a symlink, so its real path and its link name are one root", async () => {
    const real = await mkdtemp(path.join(tmpdir(), "agentd-real-root-"));
    const link = path.join(dataDir, "..", `${path.basename(dataDir)}-link`);
    await symlink(real, link);
    const config = resolveConfig({ dataDir, sandbox: { allowedWorkspaceRoots: [link], scriptsDir: "" } });
    const runtime = await Runtime.open({ config, store, tools: ToolRegistry.withBuiltins(), logger: createLogger("silent") });
    const options = { owner: "", config: {}, ephemeral: true, labels: {} };
    expect((await runtime.createSession(admin, { ...options, workspace: path.join(link, "a") })).workspace).toBe(path.join(real, "a"));
    expect((await runtime.createSession(admin, { ...options, workspace: path.join(real, "b") })).workspace).toBe(path.join(real, "b"));
    await expect(runtime.createSession(admin, { ...options, workspace: path.join(link, "..") })).rejects.toMatchObject({ kind: "permission_denied" });
    await runtime.close();
    await rm(link, { force: true });
    await rm(real, { recursive: true, force: true });
  });

  it("refuses a workspace root that holds the data directory or an operator's file", async () => {
    const config = (roots: string[], tokensFile = "") => resolveConfig({ dataDir, sandbox: { allowedWorkspaceRoots: roots, scriptsDir: "" }, auth: { tokensFile, jwt: null, adminOwners: [] } });
    const options = { store, tools: ToolRegistry.withBuiltins(), logger: createLogger("silent") };
    await expect(Runtime.open({ ...options, config: config([path.dirname(dataDir)]) })).rejects.toThrow("holds the data directory");
    const elsewhere = await mkdtemp(path.join(tmpdir(), "agentd-root-"));
    await expect(Runtime.open({ ...options, config: config([elsewhere], path.join(elsewhere, "tokens.json")) })).rejects.toThrow("tokens.json; a workspace there could read it");
    await rm(elsewhere, { recursive: true, force: true });
  });

  it("restores a child whose parent is gone as top-level, with a consistent tree", async () => {
    await store.save({ ...sessionRecord("parent"), createdAt: "2026-01-01T00:00:00.000Z" });
    await store.save({ ...sessionRecord("child"), parentId: "parent", createdAt: "2026-01-01T00:00:01.000Z" });
    await store.save({ ...sessionRecord("stray"), parentId: "lost", createdAt: "2026-01-01T00:00:02.000Z" });
    const runtime = await open();
    expect(runtime.listChildSessions(admin, "parent").sessions.map((s) => s.id)).toEqual(["child"]);
    expect(runtime.getSession(admin, "stray").parentId).toBeNull();
    await runtime.destroySession(admin, "parent", "cascade");
    expect(runtime.listSessions(admin, { owner: "", pageSize: 0, pageToken: "" }).sessions.map((s) => s.id)).toEqual(["stray"]);
    await runtime.close();
  });
});
