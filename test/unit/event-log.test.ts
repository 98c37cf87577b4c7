import { describe, expect, it } from "vitest";
import { EventMemory, RecentEvents, eventSize } from "../../src/events/log.js";
import { subscribeToSession, type SubscriptionItem } from "../../src/events/subscribe.js";
import { restoreSessions } from "../../src/session/restore.js";
import { SessionRegistry } from "../../src/session/registry.js";
import { MemoryStore } from "../../src/store/memory-store.js";
import { createLogger } from "../../src/logging.js";
import type { SessionEvent } from "../../src/events/types.js";
import { newSessionRecord } from "../../src/session/new-session.js";
import { Session } from "../../src/session/session.js";
import { DEFAULT_CONFIRMATION, DEFAULT_PERMISSIONS } from "../../src/policy/types.js";

const event = (sequence: number, text = "t"): SessionEvent => ({ sessionId: "s", sequence, timeMs: 0, turnId: "x", payload: { type: "text_delta", text } });

describe("RecentEvents", () => {
  it("keeps the newest events within its limits and says when a cursor is older than what it holds", () => {
    const recent = new RecentEvents({ maxEvents: 3, maxBytes: 1_000_000 });
    expect(recent.after(0)).toBeNull();
    for (let i = 1; i <= 5; i++) recent.append(event(i));
    expect(recent.oldest).toBe(3);
    expect(recent.newest).toBe(5);
    expect(recent.after(2)!.map((e) => e.sequence)).toEqual([3, 4, 5]);
    expect(recent.after(4)!.map((e) => e.sequence)).toEqual([5]);
    expect(recent.after(5)).toEqual([]);
    expect(recent.after(1)).toBeNull();
  });

  it("bounds the bytes it holds, keeping at least the newest event", () => {
    const recent = new RecentEvents({ maxEvents: 100, maxBytes: 10_000 });
    for (let i = 1; i <= 10; i++) recent.append(event(i, "x".repeat(3_000)));
    expect(recent.all().length).toBeLessThanOrEqual(2);
    recent.append(event(11, "y".repeat(50_000)));
    expect(recent.all().map((e) => e.sequence)).toEqual([11]);
  });
});

describe("EventMemory", () => {
  it("bounds the windows of all sessions together; the one idle longest gives up its events first", () => {
    const size = eventSize(event(1, "x".repeat(1_000)));
    const memory = new EventMemory(size * 5);
    const limits = { maxEvents: 100, maxBytes: 1_000_000 };
    const [idle, busy, other] = [new RecentEvents(limits, memory), new RecentEvents(limits, memory), new RecentEvents(limits, memory)];
    for (let i = 1; i <= 2; i++) idle.append(event(i, "x".repeat(1_000)));
    for (let i = 1; i <= 2; i++) other.append(event(i, "x".repeat(1_000)));
    for (let i = 1; i <= 3; i++) busy.append(event(i, "x".repeat(1_000)));
    // Seven events over a budget of five: the idle window emptied first, then the next least recent.
    expect(idle.length).toBe(0);
    expect(other.length).toBe(2);
    expect(busy.length).toBe(3);
    expect(memory.bytes).toBeLessThanOrEqual(size * 5);
    for (let i = 4; i <= 10; i++) busy.append(event(i, "x".repeat(1_000)));
    expect(other.length).toBe(0);
    expect(busy.all().map((e) => e.sequence)).toEqual([6, 7, 8, 9, 10]);
    busy.clear();
    expect(memory.bytes).toBe(0);
  });
});

describe("subscribeToSession", () => {
  const config = { model: null, systemPrompt: "", limits: { maxToolRounds: 1, toolTimeoutMs: 0 }, permissions: DEFAULT_PERMISSIONS, confirmation: DEFAULT_CONFIRMATION, tools: null };
  const sources = {
    readStored: async () => ({ events: [], oldest: 0 }),
    flush: async () => true,
    descendants: () => [],
    added: () => () => {},
    isDescendant: () => false,
  };

  it("holds nothing for a reader that stalls mid-replay: the replay goes on over the log, exactly once, in order, then live", async () => {
    const session = new Session(newSessionRecord({ id: "s1", owner: "o", parentId: null, config, workspace: "/w", ephemeral: true, labels: {} }), () => {});
    session.pause();
    session.resume();
    await session.published();
    let release = () => {};
    let stalled = true;
    const ready = () => (stalled ? new Promise<void>((resolve) => (release = resolve)) : Promise.resolve());
    const items: SubscriptionItem[] = [];
    const subscription = subscribeToSession(session, { afterSequence: 0, includeDescendants: false, ready }, sources).subscribe((item) => items.push(item));
    await new Promise((resolve) => setImmediate(resolve));
    // The reader took event 1 and stalls; the session goes on, and nothing waits for the reader.
    for (let i = 0; i < 600; i++) {
      session.pause();
      session.resume();
    }
    await session.published();
    expect(items).toHaveLength(1);
    stalled = false;
    release();
    await new Promise((resolve) => setTimeout(resolve, 20));
    const order = (list: SubscriptionItem[]) => list.map((item) => (item.kind === "event" ? item.event.sequence : "caught_up"));
    expect(order(items)).toEqual([...Array.from({ length: 1202 }, (_, i) => i + 1), "caught_up"]);
    session.pause();
    expect(order(items).at(-1)).toBe(1203);
    subscription.unsubscribe();
  });

  it("goes on from the store when the session's memory was given up to busier sessions mid-replay", async () => {
    const memory = new EventMemory(20_000);
    const limits = { maxEvents: 1000, maxBytes: 1_000_000 };
    const stored: SessionEvent[] = [];
    const keep = (s: Session) => stored.push(...s.takeUnpersistedEvents());
    const session = new Session(
      newSessionRecord({ id: "s4", owner: "o", parentId: null, config, workspace: "/w", ephemeral: false, labels: {} }),
      () => {},
      async (s) => (keep(s), true),
      new RecentEvents(limits, memory),
    );
    session.pause();
    session.resume();
    session.pause();
    await session.published();
    keep(session);
    const fromStore = {
      ...sources,
      readStored: async (_id: string, after: number, limit: number) => ({ events: stored.filter((e) => e.sequence > after).slice(0, limit), oldest: stored[0]?.sequence ?? 0 }),
      flush: async () => (keep(session), true),
    };
    let release = () => {};
    let stalled = true;
    const ready = () => (stalled ? new Promise<void>((resolve) => (release = resolve)) : Promise.resolve());
    const items: SubscriptionItem[] = [];
    subscribeToSession(session, { afterSequence: 0, includeDescendants: false, ready }, fromStore).subscribe((item) => items.push(item));
    await new Promise((resolve) => setImmediate(resolve));
    session.resume();
    session.pause();
    await session.published();
    keep(session);
    // Another session's text fills the shared memory: this session's window, least recent, empties.
    const other = new RecentEvents(limits, memory);
    for (let i = 1; i <= 10; i++) other.append({ sessionId: "b", sequence: i, timeMs: 0, turnId: "", payload: { type: "text_delta", text: "x".repeat(2000) } });
    expect(session.recentEvents.length).toBe(0);
    stalled = false;
    release();
    await new Promise((resolve) => setTimeout(resolve, 20));
    session.resume();
    await session.published();
    expect(items.map((item) => (item.kind === "event" ? item.event.sequence : "caught_up"))).toEqual([1, 2, 3, 4, 5, "caught_up", 6]);
  });

  it("replays a session restarted cleanly after a crash: the numbers the crash skipped are no loss", async () => {
    const stored: SessionEvent[] = [1, 2, 3, 4, 5].map((sequence) => ({ sessionId: "s5", sequence, timeMs: 0, turnId: "", payload: { type: "state_changed", state: "idle" } }));
    const base = newSessionRecord({ id: "s5", owner: "o", parentId: null, config, workspace: "/w", ephemeral: false, labels: {} });
    const session = new Session({ ...base, lastSequence: 100_005, sequenceReservedThrough: 100_005, skippedSequences: [{ after: 5, through: 100_005 }] }, () => {});
    const fromStore = { ...sources, readStored: async (_id: string, after: number) => ({ events: stored.filter((e) => e.sequence > after), oldest: 1 }) };
    const items: SubscriptionItem[] = [];
    let failure: unknown = null;
    subscribeToSession(session, { afterSequence: 0, includeDescendants: false }, fromStore).subscribe({ next: (item) => items.push(item), error: (error) => (failure = error) });
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(failure).toBeNull();
    expect(items.map((item) => (item.kind === "event" ? item.event.sequence : `caught_up ${item.sequence}`))).toEqual([1, 2, 3, 4, 5, "caught_up 5"]);
  });

  it("answers UNAVAILABLE, not a gap, when the events it lacks wait for a store that fails", async () => {
    const session = new Session(newSessionRecord({ id: "s6", owner: "o", parentId: null, config, workspace: "/w", ephemeral: false, labels: {} }), () => {});
    session.pause();
    session.resume();
    // The memory holds events 1 and 2; a cursor before a gap the store cannot fill (it fails).
    const failing = { ...sources, readStored: async () => ({ events: [], oldest: 0 }), flush: async () => false };
    for (let i = 0; i < 3; i++) session.recentEvents.dropOldest();
    session.pause();
    let failure: (Error & { kind?: string }) | null = null;
    subscribeToSession(session, { afterSequence: 0, includeDescendants: false }, failing).subscribe({ error: (error) => (failure = error as Error) });
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(failure!.kind).toBe("unavailable");
    expect(failure!.message).toContain("the store is failing");
  });

  it("sends a notice outside the log (sequence 0) at once, even mid-replay, and never replays it", async () => {
    const session = new Session(newSessionRecord({ id: "s3", owner: "o", parentId: null, config, workspace: "/w", ephemeral: true, labels: {} }), () => {});
    session.pause();
    await session.published();
    const items: SubscriptionItem[] = [];
    subscribeToSession(session, { afterSequence: 0, includeDescendants: false, ready: () => new Promise(() => {}) }, sources).subscribe((item) => items.push(item));
    await new Promise((resolve) => setImmediate(resolve));
    session.reportPersistenceFailure("disk full", 1);
    expect(items.map((item) => (item.kind === "event" ? [item.event.sequence, item.event.payload.type] : ["caught_up"]))).toEqual([
      [1, "state_changed"],
      [0, "persistence_failed"],
    ]);
    expect(session.recentEvents.all().map((e) => e.sequence)).toEqual([1]);
  });
});

describe("restore", () => {
  it("tells the followers of a turn the server died in that it ended: turn_cancelled, server_restarted", async () => {
    const config = { model: null, systemPrompt: "", limits: { maxToolRounds: 1, toolTimeoutMs: 0 }, permissions: DEFAULT_PERMISSIONS, confirmation: DEFAULT_CONFIRMATION, tools: null };
    const store = new MemoryStore();
    const base = newSessionRecord({ id: "s2", owner: "o", parentId: null, config, workspace: "/w", ephemeral: false, labels: {} });
    await store.save({ ...base, state: "running", runningTurnId: "turn-1", lastSequence: 3, sequenceReservedThrough: 3 }, []);
    const registry = new SessionRegistry({ maxSessions: 10, maxSessionsPerOwner: 10 });
    await restoreSessions(store, registry, (record) => new Session(record, () => {}), createLogger("silent"));
    const session = registry.find("s2")!;
    await session.published();
    const last = session.recentEvents.all().at(-1)!;
    expect(last).toMatchObject({ sequence: 4, turnId: "turn-1", payload: { type: "turn_cancelled", reason: "server_restarted" } });
    expect(session.state).toBe("idle");
    expect(session.toRecord().runningTurnId).toBeNull();
  });
});

describe("sequence numbers", () => {
  const config = { model: null, systemPrompt: "", limits: { maxToolRounds: 1, toolTimeoutMs: 0 }, permissions: DEFAULT_PERMISSIONS, confirmation: DEFAULT_CONFIRMATION, tools: null };
  const record = () => newSessionRecord({ id: "s1", owner: "o", parentId: null, config, workspace: "/w", ephemeral: false, labels: {} });

  it("are reserved ahead in the record, and resume above the reservation after a crash", async () => {
    const session = new Session(record(), () => {});
    session.pause();
    const stored = session.toRecord();
    expect(stored.lastSequence).toBe(1);
    expect(stored.sequenceReservedThrough).toBeGreaterThan(1_000);
    // A crash: the record says what was reserved, not what was used.
    const restored = new Session({ ...stored, lastSequence: 1 }, () => {});
    const seen: number[] = [];
    restored.events$.subscribe((e) => seen.push(e.sequence));
    restored.resume();
    await restored.published();
    expect(seen[0]).toBeGreaterThan(stored.sequenceReservedThrough!);
  });

  it("remember the numbers a crash skipped across later clean restarts, so replays pass over them", async () => {
    const session = new Session(record(), () => {});
    session.pause();
    const crashed = new Session({ ...session.toRecord(), lastSequence: 1 }, () => {});
    expect(crashed.skippedSequences).toEqual([{ after: 1, through: session.toRecord().sequenceReservedThrough }]);
    crashed.resume();
    await crashed.published();
    crashed.releaseSequenceReservation();
    const clean = new Session(crashed.toRecord(), () => {});
    expect(clean.skippedSequences).toEqual(crashed.skippedSequences);
  });

  it("resume right after the last one when the reservation was released at a clean stop", async () => {
    const session = new Session(record(), () => {});
    session.pause();
    session.releaseSequenceReservation();
    const restored = new Session(session.toRecord(), () => {});
    const seen: number[] = [];
    restored.events$.subscribe((e) => seen.push(e.sequence));
    restored.resume();
    await restored.published();
    expect(seen).toEqual([2]);
  });

  it("hand the store every event once, in order", () => {
    const session = new Session(record(), () => {});
    session.pause();
    session.resume();
    expect(session.takeUnpersistedEvents().map((e) => e.sequence)).toEqual([1, 2]);
    session.pause();
    expect(session.takeUnpersistedEvents().map((e) => e.sequence)).toEqual([3]);
    expect(session.takeUnpersistedEvents()).toEqual([]);
  });
});
