import { status } from "@grpc/grpc-js";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { SessionState } from "../src/gen/agentd/v1/runtime.js";
import type { Tool } from "../src/tools/types.js";
import { cases, collect, grpcError, removeTempDirs, scripted, startTestServer, waitFor, type TestServer } from "./helpers/harness.js";

/** A tool that waits until it is aborted, recording what it saw. */
function slowTool() {
  const seen = { started: 0, aborted: 0 };
  const tool: Tool = {
    name: "slow_job",
    description: "Waits a long time.",
    readOnly: true,
    inputSchema: { type: "object", properties: {} },
    execute: (_args, context) =>
      new Promise<string>((resolve, reject) => {
        seen.started++;
        const timer = setTimeout(() => resolve("finished"), 30_000);
        context.signal.addEventListener("abort", () => {
          seen.aborted++;
          clearTimeout(timer);
          reject(context.signal.reason);
        });
      }),
  };
  return { tool, seen };
}

let t: TestServer;
let slow: ReturnType<typeof slowTool>;

beforeEach(async () => {
  slow = slowTool();
  t = await startTestServer({ extraTools: [slow.tool] });
});
afterEach(() => t.stop());
afterAll(removeTempDirs);

async function turnActive(sessionId: string) {
  return waitFor(async () => ((await t.client.getSession({ sessionId })).session!.turnActive ? true : undefined));
}

describe("cancellation", () => {
  it("Cancel stops a model that is still streaming and the stream ends with a cancelled event", async () => {
    const { session } = await t.client.createSession({
      config: { model: scripted([{ text: "a very slow answer", chunkSize: 2, delayMs: 200 }, { text: "after" }]) },
    });
    const call = t.client.streamGenerate({ sessionId: session!.id, prompt: "talk slowly" });
    const events = collect(call);
    await turnActive(session!.id);
    const started = Date.now();
    const reply = await t.client.cancel({ sessionId: session!.id });
    expect(reply.cancelled).toBe(true);

    const all = await events;
    expect(Date.now() - started).toBeLessThan(1000);
    expect(all.at(-1)!.payload).toEqual({ $case: "cancelled", cancelled: { reason: "cancel_rpc" } });
    expect(all.at(-1)!.turnId).toBe(reply.turnId);
    // Far fewer deltas than the script holds: the model stopped streaming.
    expect(cases(all).filter((c) => c === "textDelta").length).toBeLessThan(9);

    const { session: after } = await t.client.getSession({ sessionId: session!.id });
    expect(after!.state).toBe(SessionState.SESSION_STATE_IDLE);
    expect((await t.client.cancel({ sessionId: session!.id })).cancelled).toBe(false);
    expect((await t.client.generate({ sessionId: session!.id, prompt: "again" })).result!.text).toBe("after");
  });

  it("Cancel reaches a running tool through its AbortSignal and the history stays well-formed", async () => {
    const { session } = await t.client.createSession({
      config: { model: scripted([{ toolCalls: [{ id: "c1", name: "slow_job", arguments: {} }] }]) },
    });
    const events = collect(t.client.streamGenerate({ sessionId: session!.id, prompt: "run the job" }));
    await waitFor(() => (slow.seen.started === 1 ? true : undefined));
    await t.client.cancel({ sessionId: session!.id });
    const all = await events;
    expect(cases(all).slice(-2)).toEqual(["toolCall", "cancelled"]);
    expect(slow.seen.aborted).toBe(1);
    const { messages } = await t.client.getMessages({ sessionId: session!.id });
    expect(messages.at(-1)!.toolResult).toMatchObject({ callId: "c1", isError: true, output: expect.stringContaining("cancelled") });
  });

  it("a unary Generate whose turn is cancelled fails with CANCELLED", async () => {
    const { session } = await t.client.createSession({
      config: { model: scripted([{ toolCalls: [{ name: "slow_job", arguments: {} }] }]) },
    });
    const reply = grpcError(t.client.generate({ sessionId: session!.id, prompt: "run" }));
    await waitFor(() => (slow.seen.started === 1 ? true : undefined));
    await t.client.cancel({ sessionId: session!.id });
    const error = await reply;
    expect(error.code).toBe(status.CANCELLED);
    expect(error.details).toContain("cancel_rpc");
  });

  it("a client that cancels its StreamGenerate call cancels the turn", async () => {
    const { session } = await t.client.createSession({
      config: { model: scripted([{ toolCalls: [{ name: "slow_job", arguments: {} }] }]) },
    });
    const call = t.client.streamGenerate({ sessionId: session!.id, prompt: "run" });
    const events = collect(call).catch((error: { code: number }) => error.code);
    await waitFor(() => (slow.seen.started === 1 ? true : undefined));
    call.cancel();
    expect(await events).toBe(status.CANCELLED);
    await waitFor(() => (slow.seen.aborted === 1 ? true : undefined));
    await waitFor(async () => ((await t.client.getSession({ sessionId: session!.id })).session!.turnActive ? undefined : true));
  });

  it("destroying a session cancels its running turn", async () => {
    const { session } = await t.client.createSession({
      config: { model: scripted([{ toolCalls: [{ name: "slow_job", arguments: {} }] }]) },
    });
    const events = collect(t.client.streamGenerate({ sessionId: session!.id, prompt: "run" }));
    await waitFor(() => (slow.seen.started === 1 ? true : undefined));
    await t.client.destroySession({ sessionId: session!.id });
    const all = await events;
    expect(all.at(-1)!.payload).toEqual({ $case: "cancelled", cancelled: { reason: "session_destroyed" } });
    expect(slow.seen.aborted).toBe(1);
  });

  it("cancelling a paused turn ends it without waiting for Resume", async () => {
    const { session } = await t.client.createSession({
      config: { model: scripted([{ text: "x", delayMs: 100, toolCalls: [{ name: "slow_job", arguments: {} }] }]) },
    });
    const events = collect(t.client.streamGenerate({ sessionId: session!.id, prompt: "run" }));
    await turnActive(session!.id);
    await t.client.pause({ sessionId: session!.id });
    // The model step finishes; the turn then waits at the pause gate before running the tool.
    await waitFor(async () => ((await t.client.getSession({ sessionId: session!.id })).session!.messageCount === 2 ? true : undefined));
    await t.client.cancel({ sessionId: session!.id });
    expect(cases(await events).at(-1)).toBe("cancelled");
    expect(slow.seen.started).toBe(0);
    const { session: after } = await t.client.getSession({ sessionId: session!.id });
    expect(after!.state).toBe(SessionState.SESSION_STATE_PAUSED);
    expect(after!.turnActive).toBe(false);
  });
});

describe("cancellation reaches a real HTTP model request", () => {
  let http: Server;
  let requestClosed: Promise<void>;

  beforeEach(async () => {
    let markClosed: () => void = () => {};
    requestClosed = new Promise((resolve) => (markClosed = resolve));
    // An OpenAI-compatible endpoint that streams one chunk and then hangs until the client goes away.
    http = createServer((req: IncomingMessage, res) => {
      req.resume();
      res.writeHead(200, { "content-type": "text/event-stream" });
      const chunk = { id: "1", object: "chat.completion.chunk", created: 0, model: "m", choices: [{ index: 0, delta: { role: "assistant", content: "Hel" }, finish_reason: null }] };
      res.write(`data: ${JSON.stringify(chunk)}\n\n`);
      res.on("close", () => markClosed());
    });
    await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
    // The server sends model requests only to endpoints its operator allowed.
    await t.stop();
    const allowedBaseUrls = [`http://127.0.0.1:${(http.address() as AddressInfo).port}/v1`];
    t = await startTestServer({ extraTools: [slow.tool], config: { models: { allowedBaseUrls, allowedApiKeyEnvs: [] } } });
  });
  afterEach(async () => {
    http.closeAllConnections();
    await new Promise((resolve) => http.close(resolve));
  });

  it("Cancel closes the provider's HTTP connection", async () => {
    const port = (http.address() as AddressInfo).port;
    const { session } = await t.client.createSession({
      config: { model: { provider: "openai", model: "local-model", baseUrl: `http://127.0.0.1:${port}/v1` } },
    });
    const call = t.client.streamGenerate({ sessionId: session!.id, prompt: "hello" });
    const events = collect(call);
    // Wait for the first delta: the request is in flight.
    await waitFor(async () => ((await t.client.getSession({ sessionId: session!.id })).session!.lastSequence >= 2 ? true : undefined));
    await t.client.cancel({ sessionId: session!.id });
    await requestClosed;
    const all = await events;
    expect(cases(all)).toEqual(["turnStarted", "textDelta", "cancelled"]);
    const { messages } = await t.client.getMessages({ sessionId: session!.id });
    expect(messages.map((m) => m.text)).toEqual(["hello", "Hel"]);
  });

  it("a client cancelling its call closes the provider's HTTP connection", async () => {
    const port = (http.address() as AddressInfo).port;
    const { session } = await t.client.createSession({
      config: { model: { provider: "openai", model: "local-model", baseUrl: `http://127.0.0.1:${port}/v1` } },
    });
    const call = t.client.streamGenerate({ sessionId: session!.id, prompt: "hello" });
    const outcome = collect(call).catch((error: { code: number }) => error.code);
    await waitFor(async () => ((await t.client.getSession({ sessionId: session!.id })).session!.lastSequence >= 2 ? true : undefined));
    call.cancel();
    await requestClosed;
    expect(await outcome).toBe(status.CANCELLED);
    await waitFor(async () => ((await t.client.getSession({ sessionId: session!.id })).session!.turnActive ? undefined : true));
  });
});
