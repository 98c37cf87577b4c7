import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentdClient } from "../src/client/client.js";
import type { SubscribeResponse } from "../src/gen/agentd/v1/runtime.js";
import { removeTempDirs, scripted, startTestServer, waitFor, type TestServer } from "./helpers/harness.js";
import { stallingProxy } from "./helpers/stalling-proxy.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

/** Heap plus Buffers after a full collection: what the process really holds. */
function heldBytes(): number {
  gc();
  gc();
  const { heapUsed, external } = process.memoryUsage();
  return heapUsed + external;
}

const MiB = 1024 * 1024;
const TEXT_CHARS = 4 * MiB;

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer({ config: { store: "memory" } });
});
afterAll(async () => {
  await t.stop();
  await removeTempDirs();
});

describe("a client that stops reading", () => {
  it("holds little for a reader that stops: past the limit its stream ends, naming where to pick up, and its turn is cancelled", async () => {
    // Eight model calls of 512 KiB of text each, in 8-character deltas: 524,288 events the reader
    // does not read while the turn runs. (The step repeats: a script may hold at most 1 MiB.)
    const step = { text: "y".repeat(TEXT_CHARS / 8), chunkSize: 8, toolCalls: [{ name: "list_dir", arguments: {} }] };
    const model = scripted([step], true);
    const { session } = await t.client.createSession({ config: { model, limits: { maxToolRounds: 7 } } });
    const proxy = await stallingProxy(t.server.address);
    const reader = new AgentdClient(proxy.address);
    await reader.getSession({ sessionId: session!.id });
    const before = heldBytes();

    proxy.stall();
    const call = reader.streamGenerate({ sessionId: session!.id, prompt: "long" });
    const ended = new Promise<{ code: number; details: string }>((resolve) => call.on("error", (error) => resolve(error as never)));
    call.on("data", () => {});
    await waitFor(async () => ((await t.client.getSession({ sessionId: session!.id })).session!.turnActive ? true : undefined));
    await waitFor(async () => ((await t.client.getSession({ sessionId: session!.id })).session!.turnActive ? undefined : true), 30_000);
    expect(t.logs.some((line) => line.msg === "turn ended" && line.outcome === "turn_cancelled")).toBe(true);
    const held = heldBytes() - before;
    // Its followers are told why: not a disconnect, a reader too slow.
    const log = t.client.subscribe({ sessionId: session!.id, afterSequence: 0, fromOldestKept: true });
    let reason = "";
    for await (const message of log as AsyncIterable<SubscribeResponse>) {
      if (message.event?.payload?.$case === "cancelled") reason = message.event.payload.cancelled.reason;
      if (message.caughtUp) break;
    }
    log.cancel();
    expect(reason).toBe("client_too_slow");
    // The client hears why once its network moves again.
    proxy.resume();
    const error = await ended;
    expect(error.code).toBe(8); // RESOURCE_EXHAUSTED
    expect(error.details).toMatch(/after_sequence \d+/);
    // The history keeps what was streamed; nothing waits for the reader any more (merged deltas of
    // the whole turn held 11 MiB when readers were waited for without a limit).
    expect(held).toBeLessThan(8 * MiB);
    const { messages } = await t.client.getMessages({ sessionId: session!.id });
    expect(messages.at(-1)!.text.length).toBeLessThan(TEXT_CHARS);
    reader.close();
  }, 60_000);

  it("a detached reader that stops is cut off, and its turn runs to the end for Subscribe to pick up", async () => {
    // Large deltas, so the turn's events fit in what the server keeps for re-attaching readers.
    const model = scripted([{ text: "y".repeat(MiB - 1_000), chunkSize: 512 }]);
    const { session } = await t.client.createSession({ config: { model } });
    const proxy = await stallingProxy(t.server.address);
    const reader = new AgentdClient(proxy.address);
    await reader.getSession({ sessionId: session!.id });
    proxy.stall();
    const call = reader.streamGenerate({ sessionId: session!.id, prompt: "long", detachOnDisconnect: true });
    const ended = new Promise<{ code: number; details: string }>((resolve) => call.on("error", (error) => resolve(error as never)));
    call.on("data", () => {});
    await waitFor(async () => ((await t.client.getSession({ sessionId: session!.id })).session!.turnActive ? true : undefined));
    await waitFor(async () => ((await t.client.getSession({ sessionId: session!.id })).session!.turnActive ? undefined : true), 15_000);
    proxy.resume();
    const error = await ended;
    expect(error.code).toBe(8);
    const last = Number(/after_sequence (\d+)/.exec(error.details)![1]);
    let text = 0;
    let terminal = "";
    for await (const message of t.client.subscribe({ sessionId: session!.id, afterSequence: last }) as AsyncIterable<{ event?: { payload?: { $case: string; textDelta?: { text: string } } }; caughtUp?: unknown }>) {
      if (message.caughtUp) break;
      const payload = message.event?.payload;
      if (payload?.$case === "textDelta") text += payload.textDelta!.text.length;
      else if (payload) terminal = payload.$case;
    }
    expect(terminal).toBe("turnCompleted");
    expect(text).toBeGreaterThan(0);
    reader.close();
    await proxy.close();
  }, 60_000);

  it("lets the server forget a reader that went away, and keeps answering others", async () => {
    // Slow enough (a delta a millisecond) that the reader leaves mid-turn.
    const model = scripted([{ text: "z".repeat(MiB / 2), chunkSize: 64, delayMs: 1 }]);
    const { session } = await t.client.createSession({ config: { model } });
    const reader = new AgentdClient(t.server.address);
    const call = reader.streamGenerate({ sessionId: session!.id, prompt: "long" });
    call.on("error", () => {});
    call.pause();
    await new Promise((resolve) => setTimeout(resolve, 200));
    call.cancel();
    reader.close();
    const started = performance.now();
    await t.client.listSessions({});
    expect(performance.now() - started).toBeLessThan(1000);
    // The turn is cancelled (its reader left) and the text streamed so far is kept.
    await waitFor(async () => ((await t.client.getSession({ sessionId: session!.id })).session!.turnActive ? undefined : true));
    const { messages } = await t.client.getMessages({ sessionId: session!.id });
    expect(messages.at(-1)!.text.length).toBeGreaterThan(0);
    expect(messages.at(-1)!.text.length).toBeLessThan(MiB / 2);
    expect(t.logs.some((line) => line.msg === "turn ended" && line.outcome === "turn_cancelled")).toBe(true);
  });
});
