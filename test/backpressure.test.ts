import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentdClient } from "../src/client/client.js";
import type { StreamGenerateResponse } from "../src/gen/agentd/v1/runtime.js";
import { removeTempDirs, scripted, startTestServer, waitFor, type TestServer } from "./helpers/harness.js";

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
  it("holds server memory to about the size of the turn's text, and still gets every character", async () => {
    // Eight model calls of 512 KiB of text each, in 8-character deltas: 524,288 events the reader
    // does not read while the turn runs. (The step repeats: a script may hold at most 1 MiB.)
    const step = { text: "y".repeat(TEXT_CHARS / 8), chunkSize: 8, toolCalls: [{ name: "list_dir", arguments: {} }] };
    const model = scripted([step], true);
    const { session } = await t.client.createSession({ config: { model, limits: { maxToolRounds: 7 } } });
    const reader = new AgentdClient(t.server.address);
    const before = heldBytes();

    const call = reader.streamGenerate({ sessionId: session!.id, prompt: "long" });
    call.pause();
    await waitFor(async () => ((await t.client.getSession({ sessionId: session!.id })).session!.turnActive ? undefined : true), 15_000);
    const held = heldBytes() - before;

    // The history keeps the text once (4 MiB of one-byte characters); what waits for the reader
    // is merged deltas of about the same size (11 MiB held in all when measured). Written one by one
    // into grpc-js, ignoring its full buffer, the same turn held 190 MiB.
    expect(held).toBeLessThan(24 * MiB);

    let received = 0;
    let last = 0;
    let terminal = "";
    call.on("data", (message: StreamGenerateResponse) => {
      const event = message.event!;
      expect(event.sequence).toBeGreaterThan(last);
      last = event.sequence;
      if (event.payload?.$case === "textDelta") received += event.payload.textDelta.text.length;
      if (event.payload?.$case === "turnCompleted") terminal = `completed after ${event.payload.turnCompleted.result!.toolRounds} tool rounds`;
    });
    call.resume();
    await new Promise((resolve, reject) => call.on("end", resolve).on("error", reject));
    expect(terminal).toBe("completed after 7 tool rounds");
    expect(received).toBe(TEXT_CHARS);
    reader.close();
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
