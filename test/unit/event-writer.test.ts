import { EventEmitter } from "node:events";
import type { ServerWritableStream } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import type { EventPayload, SessionEvent } from "../../src/events/types.js";
import type { StreamGenerateResponse } from "../../src/gen/agentd/v1/runtime.js";
import { EventWriter } from "../../src/server/event-writer.js";

/** A server stream whose buffer is full whenever `full` is set, like a client that stopped reading. */
class FakeCall extends EventEmitter {
  full = false;
  ended = false;
  readonly written: StreamGenerateResponse[] = [];
  write(message: StreamGenerateResponse): boolean {
    this.written.push(message);
    return !this.full;
  }
  end(): void {
    this.ended = true;
  }
}

let sequence = 0;
const event = (payload: EventPayload, turnId = "t1"): SessionEvent => ({ sessionId: "s", sequence: ++sequence, timeMs: 0, turnId, payload });
const delta = (text: string, turnId = "t1") => event({ type: "text_delta", text }, turnId);

function writerFor(call: FakeCall) {
  return new EventWriter(call as unknown as ServerWritableStream<unknown, StreamGenerateResponse>);
}

const summary = (call: FakeCall) =>
  call.written.map((m) => {
    const p = m.event!.payload!;
    return `${m.event!.sequence}:${p.$case === "textDelta" ? p.textDelta.text : p.$case}`;
  });

describe("EventWriter", () => {
  it("waits for drain once the buffer is full, merging consecutive deltas of a turn", () => {
    sequence = 0;
    const call = new FakeCall();
    const writer = writerFor(call);
    call.full = true;
    writer.write(delta("a")); // written; the buffer is now full
    writer.write(delta("b"));
    writer.write(delta("c"));
    writer.write(event({ type: "state_changed", state: "paused" }, ""));
    writer.write(delta("d"));
    writer.write(delta("e", "t2"));
    writer.end();
    expect(summary(call)).toEqual(["1:a"]);
    expect(writer.backlog).toBe(4);
    expect(call.ended).toBe(false);

    call.full = false;
    call.emit("drain");
    // Merged deltas carry the sequence number of the last one merged.
    expect(summary(call)).toEqual(["1:a", "3:bc", "4:stateChanged", "5:d", "6:e"]);
    expect(call.ended).toBe(true);
  });

  it("stops at a full buffer again while draining, and merges into the text still waiting", () => {
    sequence = 0;
    const call = new FakeCall();
    const writer = writerFor(call);
    call.full = true;
    writer.write(delta("x"));
    writer.write(event({ type: "usage", step: { inputTokens: 1, outputTokens: 1 }, turn: { inputTokens: 1, outputTokens: 1 }, session: { inputTokens: 1, outputTokens: 1 } }));
    writer.write(delta("y"));
    call.emit("drain"); // still full: the usage event goes out, the delta waits
    writer.write(delta("z"));
    expect(summary(call)).toEqual(["1:x", "2:usage"]);
    call.full = false;
    call.emit("drain");
    expect(summary(call)).toEqual(["1:x", "2:usage", "4:yz"]);
  });

  it("merges many deltas into flat pieces of bounded size", () => {
    sequence = 0;
    const call = new FakeCall();
    const writer = writerFor(call);
    call.full = true;
    writer.write(delta("first"));
    for (let i = 0; i < 10_000; i++) writer.write(delta("12345678"));
    call.full = false;
    call.emit("drain");
    const texts = call.written.slice(1).map((m) => (m.event!.payload as { textDelta: { text: string } }).textDelta.text);
    expect(texts.join("")).toBe("12345678".repeat(10_000));
    expect(Math.max(...texts.map((t) => t.length))).toBeLessThanOrEqual(32_768 + 8);
    expect(texts.length).toBe(3);
  });

  it("drops what waits when the reader goes away", () => {
    sequence = 0;
    const call = new FakeCall();
    const writer = writerFor(call);
    call.full = true;
    writer.write(delta("a"));
    writer.write(delta("b"));
    writer.close();
    call.full = false;
    call.emit("drain");
    writer.end();
    expect(summary(call)).toEqual(["1:a"]);
    expect(call.ended).toBe(false);
  });
});

describe("EventWriter limits", () => {
  /** A writer with these limits on a fresh call, and the resume points it cut readers off at. */
  function limited(limits: { maxWaitingMessages: number; maxWaitingChars: number }, resumeSessionId = "") {
    sequence = 0;
    const call = new FakeCall();
    const cut: number[] = [];
    const writer = new EventWriter(call as unknown as ServerWritableStream<unknown, StreamGenerateResponse>, (last) => cut.push(last), limits, resumeSessionId);
    return { call, cut, writer };
  }

  it("cuts off a reader past the limits, naming the last sequence written, and drops what waited", () => {
    const { call, cut, writer } = limited({ maxWaitingMessages: 3, maxWaitingChars: 1_000 });
    call.full = true;
    writer.write(delta("a"));
    writer.write(event({ type: "state_changed", state: "paused" }, ""));
    writer.write(event({ type: "state_changed", state: "idle" }, ""));
    writer.writeMessage({ heartbeat: { time: new Date(0) } });
    expect(cut).toEqual([]);
    writer.write(event({ type: "state_changed", state: "paused" }, ""));
    expect(cut).toEqual([1]);
    expect(writer.backlog).toBe(0);
    writer.write(delta("late"));
    call.emit("drain");
    expect(summary(call)).toEqual(["1:a"]);
  });

  it("counts the characters of merged text against its limit", () => {
    const { call, cut, writer } = limited({ maxWaitingMessages: 100, maxWaitingChars: 10 });
    call.full = true;
    writer.write(delta("start"));
    for (let i = 0; i < 10; i++) writer.write(delta("x"));
    expect(cut).toEqual([]);
    writer.write(delta("x"));
    expect(cut).toEqual([1]);
  });

  it("counts every event's size, not only text: large tool results fill it too", () => {
    const { call, cut, writer } = limited({ maxWaitingMessages: 100, maxWaitingChars: 10_000 });
    call.full = true;
    writer.write(delta("start"));
    const result = (n: number) => event({ type: "tool_result", result: { callId: `c${n}`, name: "read_file", output: "z".repeat(4_000), isError: false } });
    writer.write(result(1));
    writer.write(result(2));
    expect(cut).toEqual([]);
    writer.write(result(3));
    expect(cut).toEqual([1]);
  });

  it("names the followed session's sequence as the resume point, not a descendant's", () => {
    const { call, cut, writer } = limited({ maxWaitingMessages: 1, maxWaitingChars: 1_000 }, "s");
    writer.write(delta("own"));
    writer.write({ ...delta("child's", "t2"), sessionId: "child", sequence: 500 });
    call.full = true;
    writer.write({ ...delta("child again", "t2"), sessionId: "child", sequence: 501 });
    writer.write({ ...delta("child more", "t3"), sessionId: "child", sequence: 502 });
    writer.write({ ...delta("and more", "t4"), sessionId: "child", sequence: 503 });
    expect(cut).toEqual([1]);
  });
});
