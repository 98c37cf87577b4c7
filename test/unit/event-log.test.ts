import { describe, expect, it } from "vitest";
import { RecentEvents } from "../../src/events/log.js";
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
