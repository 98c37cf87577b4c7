import { DEFAULT_CONFIRMATION, DEFAULT_PERMISSIONS } from "../../src/policy/types.js";
import { describe, expect, it } from "vitest";
import { AgentdError } from "../../src/errors.js";
import { newSessionRecord } from "../../src/session/new-session.js";
import { SessionRegistry } from "../../src/session/registry.js";
import { Session } from "../../src/session/session.js";

const config = { model: null, systemPrompt: "", limits: { maxToolRounds: 1, toolTimeoutMs: 0 }, permissions: DEFAULT_PERMISSIONS, confirmation: DEFAULT_CONFIRMATION, tools: null };

function session(id: string, owner = "o", parentId: string | null = null, createdAt = `2026-01-01T00:00:00.${id.padStart(3, "0")}Z`) {
  return new Session(newSessionRecord({ id, owner, parentId, config, workspace: "/w", ephemeral: false, labels: {} }, createdAt), () => {});
}

function kindOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    if (error instanceof AgentdError) return error.kind;
    throw error;
  }
  return "none";
}

describe("SessionRegistry, without a server", () => {
  it("enforces the server and per-owner limits, counting removals", async () => {
    const registry = new SessionRegistry({ maxSessions: 3, maxSessionsPerOwner: 2 });
    registry.add(session("1", "a"));
    registry.add(session("2", "a"));
    expect(kindOf(() => registry.checkCapacity("a"))).toBe("resource_exhausted");
    expect(kindOf(() => registry.checkCapacity("b"))).toBe("none");
    registry.add(session("3", "b"));
    expect(kindOf(() => registry.checkCapacity("c"))).toBe("resource_exhausted");
    await registry.destroy("1", "cascade");
    expect(kindOf(() => registry.checkCapacity("a"))).toBe("none");
  });

  it("pages in creation order, per owner, with opaque tokens", () => {
    const registry = new SessionRegistry({ maxSessions: 100, maxSessionsPerOwner: 100 });
    for (const id of ["5", "1", "4", "2", "3"]) registry.add(session(id, Number(id) % 2 ? "odd" : "even"));
    const first = registry.list({ owner: "", pageSize: 2, pageToken: "" });
    expect(first.sessions.map((s) => s.id)).toEqual(["1", "2"]);
    const second = registry.list({ owner: "", pageSize: 2, pageToken: first.nextPageToken });
    expect(second.sessions.map((s) => s.id)).toEqual(["3", "4"]);
    const third = registry.list({ owner: "", pageSize: 2, pageToken: second.nextPageToken });
    expect(third).toEqual({ sessions: [expect.objectContaining({ id: "5" })], nextPageToken: "" });
    expect(registry.list({ owner: "odd", pageSize: 0, pageToken: "" }).sessions.map((s) => s.id)).toEqual(["1", "3", "5"]);
    expect(kindOf(() => registry.list({ owner: "", pageSize: 2, pageToken: "garbage" }))).toBe("invalid_argument");
  });

  it("keeps the tree: children, cascade and orphan", async () => {
    const registry = new SessionRegistry({ maxSessions: 100, maxSessionsPerOwner: 100 });
    registry.add(session("1"));
    registry.add(session("2", "o", "1"));
    registry.add(session("3", "o", "2"));
    registry.add(session("4", "o", "1"));
    expect(registry.children("1").map((s) => s.id)).toEqual(["2", "4"]);

    const orphaned = await registry.destroy("2", "orphan");
    expect(orphaned.destroyed.map((s) => s.id)).toEqual(["2"]);
    expect(orphaned.orphaned.map((s) => s.id)).toEqual(["3"]);
    expect(registry.find("3")!.parentId).toBeNull();
    expect(registry.children("1").map((s) => s.id)).toEqual(["4"]);

    const cascaded = await registry.destroy("1", "cascade");
    expect(cascaded.destroyed.map((s) => s.id)).toEqual(["1", "4"]);
    expect(cascaded.destroyed.every((s) => s.state === "closed")).toBe(true);
    expect([...registry.all()].map((s) => s.id)).toEqual(["3"]);
    expect(kindOf(() => registry.get("1"))).toBe("not_found");
    expect(kindOf(() => registry.get(""))).toBe("invalid_argument");
  });
});
