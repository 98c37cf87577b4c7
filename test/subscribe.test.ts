import { status, type ClientReadableStream } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { AgentdClient } from "../src/client/client.js";
import type { AgentEvent, SubscribeResponse } from "../src/gen/agentd/v1/runtime.js";
import { collect, grpcError, scripted, waitFor, serversStoppedAfterAll } from "./helpers/harness.js";

const start = serversStoppedAfterAll();

/** Reads a Subscribe stream until `done` says so; returns what came, markers included. */
async function readUntil(call: ClientReadableStream<SubscribeResponse>, done: (messages: SubscribeResponse[]) => boolean): Promise<SubscribeResponse[]> {
  const messages: SubscribeResponse[] = [];
  for await (const message of call as AsyncIterable<SubscribeResponse>) {
    messages.push(message);
    if (done(messages)) break;
  }
  call.cancel();
  return messages;
}

const eventsOf = (messages: SubscribeResponse[]) => messages.filter((m) => m.event).map((m) => m.event!);
const turnEnded = (messages: SubscribeResponse[]) => messages.some((m) => m.event?.payload?.$case === "turnCompleted");
const slowText = (text: string) => scripted([{ text, chunkSize: 2, delayMs: 20 }], true);

describe("the event log: Subscribe, StartTurn and detached turns", () => {
  it("a turn outlives its client; a new client gets exactly what it missed, from its last sequence", async () => {
    const t = await start();
    const { session } = await t.client.createSession({ config: { model: slowText("a long answer that takes a while to stream") } });
    const id = session!.id;
    const call = t.client.streamGenerate({ sessionId: id, prompt: "go", detachOnDisconnect: true });
    const seen: AgentEvent[] = [];
    for await (const message of call as AsyncIterable<{ event?: AgentEvent }>) {
      seen.push(message.event!);
      if (seen.length === 5) break;
    }
    call.cancel();
    const last = seen.at(-1)!.sequence;

    // The turn goes on without anyone watching.
    await waitFor(async () => ((await t.client.getSession({ sessionId: id })).session!.turnActive ? undefined : true), 10_000);
    const rest = eventsOf(await readUntil(t.client.subscribe({ sessionId: id, afterSequence: last }), turnEnded));
    expect(rest[0]!.sequence).toBe(last + 1);
    const all = [...seen, ...rest].map((e) => e.sequence);
    expect(new Set(all).size).toBe(all.length);
    expect(all).toEqual(Array.from({ length: all.length }, (_, i) => all[0]! + i));
    expect(rest.at(-1)!.payload?.$case).toBe("turnCompleted");
    const text = [...seen, ...rest].map((e) => (e.payload?.$case === "textDelta" ? e.payload.textDelta.text : "")).join("");
    expect(text).toBe("a long answer that takes a while to stream");
  });

  it("StartTurn returns at once; Subscribe from its after_sequence sees the whole turn, then caught_up and live events, for three clients alike", async () => {
    const t = await start();
    const { session } = await t.client.createSession({ config: { model: slowText("shared view") } });
    const id = session!.id;
    const started = await t.client.startTurn({ sessionId: id, prompt: "go" });
    expect(started.turnId).not.toBe("");
    const readers = [0, 1, 2].map(() => readUntil(t.client.subscribe({ sessionId: id, afterSequence: started.afterSequence }), turnEnded));
    const results = await Promise.all(readers);
    const sequences = results.map((messages) => eventsOf(messages).map((e) => e.sequence));
    expect(sequences[1]).toEqual(sequences[0]);
    expect(sequences[2]).toEqual(sequences[0]);
    expect(sequences[0]![0]).toBe(started.afterSequence + 1);
    for (const messages of results) expect(messages.filter((m) => m.caughtUp)).toHaveLength(1);
    expect(eventsOf(results[0]!).find((e) => e.payload?.$case === "turnStarted")!.turnId).toBe(started.turnId);
  });

  it("replays from 0, marks the end of the replay, sends heartbeats, and refuses a cursor past the end", async () => {
    const t = await start();
    const { session } = await t.client.createSession({ config: { model: scripted([{ text: "hello" }], true) } });
    const id = session!.id;
    await t.client.generate({ sessionId: id, prompt: "one" });
    const { session: now } = await t.client.getSession({ sessionId: id });
    const messages = await readUntil(t.client.subscribe({ sessionId: id, afterSequence: 0, heartbeatSeconds: 1 }), (m) => m.some((x) => x.heartbeat));
    const caughtUp = messages.findIndex((m) => m.caughtUp);
    expect(caughtUp).toBeGreaterThan(0);
    expect(messages[caughtUp]!.caughtUp!.sequence).toBe(now!.lastSequence);
    expect(eventsOf(messages.slice(0, caughtUp)).map((e) => e.sequence)).toEqual(Array.from({ length: now!.lastSequence }, (_, i) => i + 1));
    expect(messages.at(-1)!.heartbeat!.time).toBeInstanceOf(Date);

    const past = await grpcError(collect(t.client.subscribe({ sessionId: id, afterSequence: now!.lastSequence + 5 }) as never));
    expect(past.code).toBe(status.OUT_OF_RANGE);
    expect(past.details).toContain(`last event (${now!.lastSequence})`);
  });

  it("follows a whole session tree when asked, each event with its own session id", async () => {
    const t = await start();
    const { session: parent } = await t.client.createSession({ config: { model: scripted([{ text: "parent" }], true) } });
    const call = t.client.subscribe({ sessionId: parent!.id, afterSequence: parent!.lastSequence, includeDescendants: true });
    const reading = readUntil(call, (m) => eventsOf(m).filter((e) => e.payload?.$case === "turnCompleted").length === 2);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const { session: child } = await t.client.createChildSession({ parentId: parent!.id });
    await t.client.generate({ sessionId: child!.id, prompt: "child turn" });
    await t.client.generate({ sessionId: parent!.id, prompt: "parent turn" });
    const events = eventsOf(await reading);
    const completed = events.filter((e) => e.payload?.$case === "turnCompleted").map((e) => e.sessionId);
    expect(completed).toEqual([child!.id, parent!.id]);
  });

  it("never skips events silently: a cursor older than what is kept is OUT_OF_RANGE naming the oldest, unless from_oldest_kept", async () => {
    // Little memory for recent events, and an ephemeral session (nothing in the store): early events are gone.
    const t = await start({ config: { persistence: { recentEventsMemoryBytes: 16 * 1024 } } });
    const { session } = await t.client.createSession({ ephemeral: true, config: { model: scripted([{ text: "x".repeat(400), chunkSize: 4 }], true) } });
    const id = session!.id;
    await t.client.generate({ sessionId: id, prompt: "go" });
    const { session: now } = await t.client.getSession({ sessionId: id });
    const gone = await grpcError(collect(t.client.subscribe({ sessionId: id, afterSequence: 0 }) as never));
    expect(gone.code).toBe(status.OUT_OF_RANGE);
    const oldest = Number(/the oldest available is (\d+)/.exec(gone.details)![1]);
    expect(oldest).toBeGreaterThan(1);

    const kept = await readUntil(t.client.subscribe({ sessionId: id, afterSequence: 0, fromOldestKept: true }), (m) => m.some((x) => x.caughtUp));
    const sequences = eventsOf(kept).map((e) => e.sequence);
    expect(sequences[0]).toBe(oldest);
    expect(sequences).toEqual(Array.from({ length: now!.lastSequence - oldest + 1 }, (_, i) => oldest + i));
    // From the oldest kept on, a cursor is fine.
    const fromThere = await readUntil(t.client.subscribe({ sessionId: id, afterSequence: oldest - 1 }), (m) => m.some((x) => x.caughtUp));
    expect(eventsOf(fromThere).map((e) => e.sequence)).toEqual(sequences);
  });

  it("answers a cursor beyond 2^53 - 1 with OUT_OF_RANGE, not INTERNAL", async () => {
    const t = await start();
    const { session } = await t.client.createSession({});
    const error = await grpcError(collect(t.client.subscribe({ sessionId: session!.id, afterSequence: 2 ** 60 }) as never));
    expect(error.code).toBe(status.OUT_OF_RANGE);
    expect(error.details).toContain("larger than 9007199254740991 (2^53 - 1)");
    // The server is fine, and so are unary calls with such a number (none has one today, so the stream stands for them).
    expect((await t.client.getSession({ sessionId: session!.id })).session!.id).toBe(session!.id);
  });

  it("replays text deltas not yet handed to the store instead of calling them lost", async () => {
    // A memory window of a few events: the replay must read the rest from the store, where deltas
    // arrive only every so often while a model streams.
    const t = await start({ config: { persistence: { recentEventsMemoryBytes: 4 * 1024 } } });
    const { session } = await t.client.createSession({ config: { model: scripted([{ text: "x".repeat(600), chunkSize: 1, delayMs: 2 }], true) } });
    const id = session!.id;
    const started = await t.client.startTurn({ sessionId: id, prompt: "go" });
    await new Promise((resolve) => setTimeout(resolve, 400));
    const messages = await readUntil(t.client.subscribe({ sessionId: id, afterSequence: started.afterSequence }), turnEnded);
    const events = eventsOf(messages);
    expect(events[0]!.sequence).toBe(started.afterSequence + 1);
    // All the text, none skipped (deltas may come merged for a reader that fell behind).
    const text = events.map((event) => (event.payload?.$case === "textDelta" ? event.payload.textDelta.text : "")).join("");
    expect(text).toBe("x".repeat(600));
  });

  it("limits the streams one owner may keep open, and gives a place back when a stream ends", async () => {
    const t = await start({ config: { grpc: { maxSubscriptionsPerOwner: 2 } } });
    const { session } = await t.client.createSession({});
    const id = session!.id;
    const open = [0, 1].map(() => t.client.subscribe({ sessionId: id, afterSequence: 0 }));
    for (const call of open) call.on("error", () => {});
    await Promise.all(open.map((call) => new Promise((resolve) => call.once("data", resolve))));
    const refused = await grpcError(collect(t.client.subscribe({ sessionId: id, afterSequence: 0 }) as never));
    expect(refused.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(refused.details).toContain("limit is 2");
    open[0]!.cancel();
    // A place comes back when a stream is cancelled, and when one ends with an error.
    const opens = async () => {
      const call = t.client.subscribe({ sessionId: id, afterSequence: 0 });
      call.on("error", () => {});
      const ok = await new Promise<boolean>((resolve) => {
        call.once("data", () => resolve(true));
        call.once("error", () => resolve(false));
      });
      call.cancel();
      return ok ? true : undefined;
    };
    await waitFor(opens);
    const failed = await waitFor(async () => {
      const error = await grpcError(collect(t.client.subscribe({ sessionId: id, afterSequence: 999 }) as never));
      return error.code === status.RESOURCE_EXHAUSTED ? undefined : error;
    });
    expect(failed.code).toBe(status.OUT_OF_RANGE);
    await waitFor(opens);
    open[1]!.cancel();
  });

  it("cuts off a subscriber that stops reading, with the last sequence it was sent; the server's memory stays bounded", async () => {
    // A low limit (the default is 512 Ki characters of text) so a few turns pass it, past what the client's own buffers absorb.
    const t = await start({ config: { grpc: { maxPendingEventChars: 256 * 1024 } } });
    const { session } = await t.client.createSession({ config: { model: scripted([{ text: "{{last_user_message}}", chunkSize: 1000 }], true) } });
    const id = session!.id;
    // Its own connection: a stalled stream holds its connection's flow-control window.
    const reader = new AgentdClient(t.server.address);
    const stalled = reader.subscribe({ sessionId: id, afterSequence: session!.lastSequence });
    const ended = new Promise<{ code: number; details: string }>((resolve) => stalled.on("error", (error) => resolve(error as never)));
    stalled.pause();
    global.gc?.();
    const before = process.memoryUsage().heapUsed;
    // Turns of 900 kB each, until what waits for the stalled reader passes the limit.
    const prompt = "x".repeat(900_000);
    let cut = false;
    void ended.then(() => (cut = true));
    for (let i = 0; i < 20 && !cut; i++) await t.client.generate({ sessionId: id, prompt });
    const error = await ended;
    expect(error.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(error.details).toMatch(/Subscribe again with after_sequence \d+/);
    global.gc?.();
    // What the stalled reader did not take was dropped when it was cut off.
    expect(process.memoryUsage().heapUsed - before).toBeLessThan(64 * 1024 * 1024);
    reader.close();
  });
});
