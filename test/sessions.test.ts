import { status } from "@grpc/grpc-js";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { ChildPolicy, SessionState } from "../src/gen/agentd/v1/runtime.js";
import { grpcError, removeTempDirs, scripted, startTestServer, type TestServer } from "./helpers/harness.js";

let t: TestServer;

beforeEach(async () => {
  t = await startTestServer({ config: { limits: { maxSessions: 6, maxSessionsPerOwner: 4 } } });
});
afterEach(() => t.stop());
afterAll(removeTempDirs);

describe("session lifecycle", () => {
  it("creates, gets, lists and destroys sessions", async () => {
    const { session } = await t.client.createSession({
      owner: "alice",
      config: { model: scripted([{ text: "hi" }]), systemPrompt: "Be brief." },
      labels: { team: "infra" },
    });
    expect(session!.state).toBe(SessionState.SESSION_STATE_IDLE);
    expect(session!.owner).toBe("alice");
    expect(session!.config!.systemPrompt).toBe("Be brief.");
    expect(session!.config!.limits!.maxToolRounds).toBe(50);
    expect(session!.labels).toEqual({ team: "infra" });
    expect(session!.workspace).toContain(session!.id);

    const got = await t.client.getSession({ sessionId: session!.id });
    expect(got.session!.id).toBe(session!.id);
    expect(got.session!.createTime).toBeInstanceOf(Date);

    const listed = await t.client.listSessions({});
    expect(listed.sessions.map((s) => s.id)).toEqual([session!.id]);

    const destroyed = await t.client.destroySession({ sessionId: session!.id });
    expect(destroyed.destroyedSessionIds).toEqual([session!.id]);
    const missing = await grpcError(t.client.getSession({ sessionId: session!.id }));
    expect(missing.code).toBe(status.NOT_FOUND);
    expect(missing.details).toContain(session!.id);
  });

  it("pages through sessions in creation order and filters by owner", async () => {
    const ids: string[] = [];
    for (const owner of ["a", "b", "a", "b", "a"]) ids.push((await t.client.createSession({ owner })).session!.id);
    const seen: string[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const page = await t.client.listSessions({ pageSize: 2, pageToken });
      expect(page.sessions.length).toBeLessThanOrEqual(2);
      seen.push(...page.sessions.map((s) => s.id));
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken !== "");
    expect(pages).toBe(3);
    expect(seen).toEqual(ids);

    const onlyA = await t.client.listSessions({ owner: "a" });
    expect(onlyA.sessions.map((s) => s.id)).toEqual([ids[0], ids[2], ids[4]]);

    const bad = await grpcError(t.client.listSessions({ pageToken: "not-a-token" }));
    expect(bad.code).toBe(status.INVALID_ARGUMENT);
    expect(bad.details).toContain("page_token");
  });

  it("configures model, system prompt and limits, keeping what is unset", async () => {
    const { session } = await t.client.createSession({ config: { systemPrompt: "old" } });
    const { session: updated } = await t.client.configureSession({
      sessionId: session!.id,
      config: { model: scripted([{ text: "x" }]), limits: { maxToolRounds: 3 } },
    });
    expect(updated!.config!.model!.provider).toBe("scripted");
    expect(updated!.config!.systemPrompt).toBe("old");
    expect(updated!.config!.limits).toEqual({ maxToolRounds: 3, toolTimeoutMs: 120_000, budgetUsd: 0 });
  });
});

describe("parent and child sessions", () => {
  it("a child inherits its parent's model and prompt unless overridden", async () => {
    const parentModel = scripted([{ text: "parent" }]);
    const { session: parent } = await t.client.createSession({
      owner: "alice",
      config: { model: parentModel, systemPrompt: "parent prompt", limits: { maxToolRounds: 7 } },
    });
    const { session: inherited } = await t.client.createChildSession({ parentId: parent!.id });
    expect(inherited!.parentId).toBe(parent!.id);
    expect(inherited!.owner).toBe("alice");
    expect(inherited!.config!.model).toEqual(parent!.config!.model);
    expect(inherited!.config!.systemPrompt).toBe("parent prompt");
    expect(inherited!.config!.limits!.maxToolRounds).toBe(7);
    expect(inherited!.workspace).toBe(parent!.workspace);

    const { session: overridden } = await t.client.createChildSession({
      parentId: parent!.id,
      config: { systemPrompt: "child prompt", limits: { toolTimeoutMs: 5 } },
    });
    expect(overridden!.config!.systemPrompt).toBe("child prompt");
    expect(overridden!.config!.model).toEqual(parent!.config!.model);
    expect(overridden!.config!.limits).toEqual({ maxToolRounds: 7, toolTimeoutMs: 5, budgetUsd: 0 });

    const children = await t.client.listChildSessions({ sessionId: parent!.id });
    expect(children.sessions.map((s) => s.id)).toEqual([inherited!.id, overridden!.id]);
  });

  it("destroying a parent cascades to all descendants by default", async () => {
    const { session: root } = await t.client.createSession({});
    const { session: child } = await t.client.createChildSession({ parentId: root!.id });
    const { session: grandchild } = await t.client.createChildSession({ parentId: child!.id });
    const { session: other } = await t.client.createSession({});

    const result = await t.client.destroySession({ sessionId: root!.id });
    expect(result.destroyedSessionIds).toEqual([root!.id, child!.id, grandchild!.id]);
    const left = await t.client.listSessions({});
    expect(left.sessions.map((s) => s.id)).toEqual([other!.id]);
  });

  it("destroying a parent with CHILD_POLICY_ORPHAN keeps the children as top-level sessions", async () => {
    const { session: root } = await t.client.createSession({});
    const { session: child } = await t.client.createChildSession({ parentId: root!.id });
    const { session: grandchild } = await t.client.createChildSession({ parentId: child!.id });

    const result = await t.client.destroySession({ sessionId: root!.id, childPolicy: ChildPolicy.CHILD_POLICY_ORPHAN });
    expect(result.destroyedSessionIds).toEqual([root!.id]);
    expect(result.orphanedSessionIds).toEqual([child!.id]);
    const { session: orphan } = await t.client.getSession({ sessionId: child!.id });
    expect(orphan!.parentId).toBe("");
    const { session: kept } = await t.client.getSession({ sessionId: grandchild!.id });
    expect(kept!.parentId).toBe(child!.id);
  });

  it("creating a child of an unknown session is NOT_FOUND", async () => {
    const error = await grpcError(t.client.createChildSession({ parentId: "nope" }));
    expect(error.code).toBe(status.NOT_FOUND);
    const empty = await grpcError(t.client.createChildSession({}));
    expect(empty.code).toBe(status.INVALID_ARGUMENT);
  });
});

describe("pause and resume", () => {
  it("a paused session refuses turns until resumed", async () => {
    const { session } = await t.client.createSession({ config: { model: scripted([{ text: "ok" }]) } });
    const paused = await t.client.pause({ sessionId: session!.id });
    expect(paused.session!.state).toBe(SessionState.SESSION_STATE_PAUSED);

    const refused = await grpcError(t.client.generate({ sessionId: session!.id, prompt: "hello" }));
    expect(refused.code).toBe(status.FAILED_PRECONDITION);
    expect(refused.details).toMatch(/paused.*Resume/);

    const again = await grpcError(t.client.pause({ sessionId: session!.id }));
    expect(again.code).toBe(status.FAILED_PRECONDITION);

    const resumed = await t.client.resume({ sessionId: session!.id });
    expect(resumed.session!.state).toBe(SessionState.SESSION_STATE_IDLE);
    const reply = await t.client.generate({ sessionId: session!.id, prompt: "hello" });
    expect(reply.result!.text).toBe("ok");

    const notPaused = await grpcError(t.client.resume({ sessionId: session!.id }));
    expect(notPaused.code).toBe(status.FAILED_PRECONDITION);
    expect(notPaused.details).toContain("not paused");
  });
});

describe("capacity limits", () => {
  it("answers RESOURCE_EXHAUSTED naming the per-owner limit", async () => {
    for (let i = 0; i < 4; i++) await t.client.createSession({ owner: "greedy" });
    const error = await grpcError(t.client.createSession({ owner: "greedy" }));
    expect(error.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(error.details).toContain("maxSessionsPerOwner");
    expect(error.details).toContain('"greedy"');
    // Children count against their owner too.
    const { sessions } = await t.client.listSessions({ owner: "greedy" });
    const child = await grpcError(t.client.createChildSession({ parentId: sessions[0]!.id }));
    expect(child.code).toBe(status.RESOURCE_EXHAUSTED);
    // Another owner is not affected.
    await t.client.createSession({ owner: "modest" });
  });

  it("answers RESOURCE_EXHAUSTED naming the global limit", async () => {
    for (let i = 0; i < 6; i++) await t.client.createSession({ owner: `owner-${i}` });
    const error = await grpcError(t.client.createSession({ owner: "late" }));
    expect(error.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(error.details).toContain("maxSessions ");
    // Destroying one frees a place.
    const { sessions } = await t.client.listSessions({});
    await t.client.destroySession({ sessionId: sessions[0]!.id });
    await t.client.createSession({ owner: "late" });
  });
});

describe("bad input", () => {
  it("rejects unknown sessions, missing ids and malformed configuration with clear statuses", async () => {
    expect((await grpcError(t.client.getSession({ sessionId: "does-not-exist" }))).code).toBe(status.NOT_FOUND);
    const noId = await grpcError(t.client.getSession({}));
    expect(noId.code).toBe(status.INVALID_ARGUMENT);
    expect(noId.details).toContain("session_id is required");

    const unknownProvider = await grpcError(
      t.client.createSession({ config: { model: { provider: "gpt-magic", model: "x" } } }),
    );
    expect(unknownProvider.code).toBe(status.INVALID_ARGUMENT);
    expect(unknownProvider.details).toContain("gpt-magic");

    const noProvider = await grpcError(t.client.createSession({ config: { model: { model: "gpt-4o" } } }));
    expect(noProvider.code).toBe(status.INVALID_ARGUMENT);
    expect(noProvider.details).toContain("provider is required");

    const badScript = await grpcError(
      t.client.createSession({ config: { model: { provider: "scripted", scriptJson: "{not json" } } }),
    );
    expect(badScript.code).toBe(status.INVALID_ARGUMENT);

    const badRounds = await grpcError(t.client.createSession({ config: { limits: { maxToolRounds: 0 } } }));
    expect(badRounds.code).toBe(status.INVALID_ARGUMENT);
    expect(badRounds.details).toContain("max_tool_rounds");

    const badTemperature = await grpcError(
      t.client.createSession({ config: { model: { provider: "openai", model: "m", temperature: 7 } } }),
    );
    expect(badTemperature.code).toBe(status.INVALID_ARGUMENT);

    const relative = await grpcError(t.client.createSession({ workspace: "some/dir" }));
    expect(relative.code).toBe(status.INVALID_ARGUMENT);
    expect(relative.details).toContain("absolute");

    const { session } = await t.client.createSession({});
    const badConfigure = await grpcError(
      t.client.configureSession({ sessionId: session!.id, config: { limits: { toolTimeoutMs: -1 } } }),
    );
    expect(badConfigure.code).toBe(status.INVALID_ARGUMENT);
    // Nothing changed by the refused request.
    const { session: after } = await t.client.getSession({ sessionId: session!.id });
    expect(after!.config!.limits!.toolTimeoutMs).toBe(120_000);

    const negativePage = await grpcError(t.client.listSessions({ pageSize: -1 }));
    expect(negativePage.code).toBe(status.INVALID_ARGUMENT);
    expect(negativePage.details).toContain("page_size");

    const unknownPolicy = await grpcError(t.client.destroySession({ sessionId: session!.id, childPolicy: 7 as ChildPolicy }));
    expect(unknownPolicy.code).toBe(status.INVALID_ARGUMENT);
    expect(unknownPolicy.details).toContain("child_policy");

    const tooManyLabels = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, "v"]));
    const labels = await grpcError(t.client.createSession({ labels: tooManyLabels }));
    expect(labels.code).toBe(status.INVALID_ARGUMENT);
    expect(labels.details).toContain("at most 64 labels");

    // None of the refused requests took a place or destroyed anything.
    expect((await t.client.listSessions({})).sessions).toHaveLength(1);
  });
});
