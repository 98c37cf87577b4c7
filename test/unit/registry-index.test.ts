import { describe, expect, it } from "vitest";
import { DEFAULT_CONFIRMATION, DEFAULT_PERMISSIONS } from "../../src/policy/types.js";
import { newSessionRecord } from "../../src/session/new-session.js";
import { OrderedIndex } from "../../src/session/ordered-index.js";
import { SessionRegistry } from "../../src/session/registry.js";
import { Session } from "../../src/session/session.js";

const config = { model: null, systemPrompt: "", limits: { maxToolRounds: 1, toolTimeoutMs: 0 }, permissions: DEFAULT_PERMISSIONS, confirmation: DEFAULT_CONFIRMATION, tools: null };
const base = Date.parse("2026-01-01T00:00:00.000Z");

/** A seeded generator, so a failure can be replayed. */
function random(seed: number): (below: number) => number {
  let state = seed >>> 0;
  return (below) => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return Math.floor((state / 2 ** 32) * below);
  };
}

function byCreation(a: Session, b: Session): number {
  if (a.createdAt !== b.createdAt) return a.createdAt < b.createdAt ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** Every page, following tokens, of one listing. */
function pages(registry: SessionRegistry, options: { owner: string; parentId?: string }, size: number): string[][] {
  const result: string[][] = [];
  let pageToken = "";
  do {
    const page = registry.list({ ...options, pageSize: size, pageToken });
    result.push(page.sessions.map((s) => s.id));
    pageToken = page.nextPageToken;
  } while (pageToken !== "" && result.length < 10_000);
  return result;
}

/** What the listing must be: the matching sessions sorted, cut into pages (one empty page when none). */
function expectedPages(sessions: Session[], size: number): string[][] {
  const ids = [...sessions].sort(byCreation).map((s) => s.id);
  const result: string[][] = [];
  for (let i = 0; i < ids.length; i += size) result.push(ids.slice(i, i + size));
  return result.length ? result : [[]];
}

describe("OrderedIndex", () => {
  it("stays sorted through random inserts and deletes, small chunks forcing splits and merges", () => {
    const next = random(7);
    const index = new OrderedIndex<{ key: number }>((a, b) => a.key - b.key, 4);
    const model: { key: number }[] = [];
    for (let step = 0; step < 5_000; step++) {
      if (model.length === 0 || next(3) > 0) {
        // Many equal keys, and runs of appends, as restore and create make them.
        const item = { key: next(4) === 0 ? model.length + 1_000 : next(200) };
        index.insert(item);
        model.push(item);
      } else {
        const [item] = model.splice(next(model.length), 1);
        expect(index.delete(item!)).toBe(true);
        expect(index.delete(item!)).toBe(false);
      }
      if (step % 97 === 0) {
        const sorted = index.toArray();
        expect(sorted.length).toBe(model.length);
        expect(new Set(sorted)).toEqual(new Set(model));
        for (let i = 1; i < sorted.length; i++) expect(sorted[i - 1]!.key).toBeLessThanOrEqual(sorted[i]!.key);
        const cut = next(220);
        expect([...index.from((item) => item.key > cut)]).toEqual(sorted.filter((item) => item.key > cut));
      }
    }
    expect(index.size).toBe(model.length);
    expect([...index.from()]).toEqual(index.toArray());
  });
});

describe("SessionRegistry indexes", () => {
  it("page owners, all sessions and children like a sorted scan, through random adds, detaches and destroys", async () => {
    const next = random(42);
    const limits = { maxSessions: 1_000_000, maxSessionsPerOwner: 1_000_000 };
    const registry = new SessionRegistry(limits);
    const live = new Map<string, Session>();
    const owners = ["a", "b", "c"];
    let serial = 0;
    const make = (owner: string, parentId: string | null): Session => {
      // Some sessions share a millisecond (ties go by id); some are old, as restore adds them.
      const ms = next(5) === 0 ? next(serial + 1) : serial;
      const id = `s${String(next(1_000_000)).padStart(6, "0")}-${serial++}`;
      return new Session(newSessionRecord({ id, owner, parentId, config, workspace: "/w", ephemeral: true, labels: {} }, new Date(base + ms).toISOString()), () => {});
    };
    const check = (): void => {
      const all = [...live.values()];
      const size = 1 + next(7);
      expect(pages(registry, { owner: "" }, size)).toEqual(expectedPages(all, size));
      for (const owner of owners) {
        expect(pages(registry, { owner }, size)).toEqual(expectedPages(all.filter((s) => s.owner === owner), size));
      }
      for (const parent of all.slice(0, 20)) {
        const children = all.filter((s) => s.parentId === parent.id);
        expect(registry.children(parent.id).map((s) => s.id)).toEqual([...children].sort(byCreation).map((s) => s.id));
        expect(pages(registry, { owner: "", parentId: parent.id }, size)).toEqual(expectedPages(children, size));
        expect(pages(registry, { owner: parent.owner === "a" ? "b" : "a", parentId: parent.id }, size)).toEqual(
          expectedPages(
            children.filter((s) => s.owner === (parent.owner === "a" ? "b" : "a")),
            size,
          ),
        );
      }
      // The per-owner counts, read through the limit (the registry reads its limits on each check).
      for (const owner of owners) {
        const count = all.filter((s) => s.owner === owner).length;
        limits.maxSessionsPerOwner = count + 1;
        expect(() => registry.checkCapacity(owner)).not.toThrow();
        limits.maxSessionsPerOwner = count;
        expect(() => registry.checkCapacity(owner)).toThrow(`has ${count} sessions`);
      }
      limits.maxSessionsPerOwner = 1_000_000;
    };

    for (let step = 0; step < 1_500; step++) {
      const roll = next(10);
      const sessions = [...live.values()];
      if (sessions.length === 0 || roll < 6) {
        const parent = sessions.length > 0 && next(3) === 0 ? sessions[next(sessions.length)]! : null;
        // Children are mostly of the parent's owner; a few are not, so the owner filter on children matters.
        const owner = parent && next(4) > 0 ? parent.owner : owners[next(owners.length)]!;
        const session = make(owner, parent?.id ?? null);
        registry.add(session);
        live.set(session.id, session);
      } else if (roll < 7) {
        const session = sessions[next(sessions.length)]!;
        registry.detachFromParent(session);
      } else {
        const session = sessions[next(sessions.length)]!;
        const policy = next(2) === 0 ? "cascade" : "orphan";
        const expectedDoomed = policy === "cascade" ? registry.descendantsOf(session) : [session];
        const { destroyed } = await registry.destroy(session.id, policy);
        expect(destroyed).toEqual(expectedDoomed);
        for (const s of destroyed) live.delete(s.id);
      }
      if (step % 150 === 0) check();
    }
    check();
    expect(new Set(registry.all())).toEqual(new Set(live.values()));
  });

  it("keeps page tokens in the existing format: a cursor of createdAt|id", () => {
    const registry = new SessionRegistry({ maxSessions: 10, maxSessionsPerOwner: 10 });
    for (const id of ["x", "y", "z"]) {
      registry.add(new Session(newSessionRecord({ id, owner: "o", parentId: null, config, workspace: "/w", ephemeral: true, labels: {} }, "2026-01-01T00:00:00.000Z"), () => {}));
    }
    const { nextPageToken } = registry.list({ owner: "", pageSize: 1, pageToken: "" });
    expect(JSON.parse(Buffer.from(nextPageToken, "base64url").toString("utf8"))).toEqual({ k: "sessions", c: "2026-01-01T00:00:00.000Z|x" });
    // A token made by the earlier registry, for a session since destroyed, resumes at the next one.
    const old = Buffer.from(JSON.stringify({ k: "sessions", c: "2026-01-01T00:00:00.000Z|xa" })).toString("base64url");
    expect(registry.list({ owner: "", pageSize: 5, pageToken: old }).sessions.map((s) => s.id)).toEqual(["y", "z"]);
  });

  it("shortens a page to its byte budget and still says that more follow", () => {
    const registry = new SessionRegistry({ maxSessions: 10, maxSessionsPerOwner: 10 });
    for (let i = 0; i < 5; i++) {
      registry.add(new Session(newSessionRecord({ id: `s${i}`, owner: "o", parentId: null, config, workspace: "/w", ephemeral: true, labels: {} }, new Date(base + i).toISOString()), () => {}));
    }
    const budget = { sizeOf: () => 10, maxBytes: 25 };
    const first = registry.list({ owner: "", pageSize: 3, pageToken: "", budget });
    expect(first.sessions.map((s) => s.id)).toEqual(["s0", "s1"]);
    const second = registry.list({ owner: "", pageSize: 3, pageToken: first.nextPageToken, budget });
    expect(second.sessions.map((s) => s.id)).toEqual(["s2", "s3"]);
    const third = registry.list({ owner: "", pageSize: 3, pageToken: second.nextPageToken, budget });
    expect(third).toEqual({ sessions: [expect.objectContaining({ id: "s4" })], nextPageToken: "" });
  });
});
