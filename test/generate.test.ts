import { status } from "@grpc/grpc-js";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { Role, SessionState, StopReason } from "../src/gen/agentd/v1/runtime.js";
import {
  cases,
  collect,
  grpcError,
  removeTempDirs,
  scripted,
  startTestServer,
  waitFor,
  type ScriptStep,
  type TestServer,
} from "./helpers/harness.js";

let t: TestServer;

beforeEach(async () => {
  t = await startTestServer();
});
afterEach(() => t.stop());
afterAll(removeTempDirs);

async function sessionWith(steps: ScriptStep[], limits?: { maxToolRounds?: number }) {
  const { session } = await t.client.createSession({ config: { model: scripted(steps), limits } });
  return session!;
}

describe("StreamGenerate", () => {
  it("streams text deltas, a tool round trip and the final result with increasing sequence numbers", async () => {
    const session = await sessionWith([
      { text: "Let me look.", chunkSize: 4, toolCalls: [{ id: "call_1", name: "read_file", arguments: { path: "notes.txt" } }] },
      { text: "The note says: remember the milk", chunkSize: 10, usage: { inputTokens: 30, outputTokens: 8 } },
    ]);
    // The server makes a session's own workspace when a tool first needs it; the test puts a file there first.
    await mkdir(session.workspace, { recursive: true });
    await writeFile(path.join(session.workspace, "notes.txt"), "remember the milk");

    const events = await collect(t.client.streamGenerate({ sessionId: session.id, prompt: "What does my note say?" }));

    expect(cases(events)).toEqual([
      "turnStarted",
      "textDelta",
      "textDelta",
      "textDelta",
      "usage",
      "toolCall",
      "toolResult",
      "textDelta",
      "textDelta",
      "textDelta",
      "textDelta",
      "usage",
      "turnCompleted",
    ]);
    const sequences = events.map((e) => e.sequence);
    for (let i = 1; i < sequences.length; i++) expect(sequences[i]).toBeGreaterThan(sequences[i - 1]!);
    expect(events.every((e) => e.sessionId === session.id && e.turnId === events[0]!.turnId && e.time instanceof Date)).toBe(true);

    const deltas = events.flatMap((e) => (e.payload?.$case === "textDelta" ? [e.payload.textDelta.text] : []));
    expect(deltas.slice(0, 3).join("")).toBe("Let me look.");
    const toolResult = events.find((e) => e.payload?.$case === "toolResult")!.payload;
    expect(toolResult).toEqual({
      $case: "toolResult",
      toolResult: { callId: "call_1", name: "read_file", output: expect.stringContaining("remember the milk"), isError: false },
    });
    const completed = events.at(-1)!.payload;
    if (completed?.$case !== "turnCompleted") throw new Error("no result");
    expect(completed.turnCompleted.result).toMatchObject({
      text: "The note says: remember the milk",
      stopReason: StopReason.STOP_REASON_END_TURN,
      toolRounds: 1,
    });
    const lastUsage = events.at(-2)!.payload;
    if (lastUsage?.$case !== "usage") throw new Error("no usage");
    expect(lastUsage.usage.step).toEqual({ inputTokens: 30, outputTokens: 8, totalTokens: 38, costUsd: 0 });
    expect(lastUsage.usage.turn!.totalTokens).toBe(completed.turnCompleted.result!.usage!.totalTokens);

    // The history holds the whole exchange, and the session is ready for the next turn.
    const { messages } = await t.client.getMessages({ sessionId: session.id });
    expect(messages.map((m) => m.role)).toEqual([Role.ROLE_USER, Role.ROLE_ASSISTANT, Role.ROLE_TOOL, Role.ROLE_ASSISTANT]);
    expect(messages[1]!.toolCalls[0]!.argumentsJson).toBe('{"path":"notes.txt"}');
    const { session: after } = await t.client.getSession({ sessionId: session.id });
    expect(after!.state).toBe(SessionState.SESSION_STATE_IDLE);
    expect(after!.lastSequence).toBe(events.at(-1)!.sequence);
    expect(after!.usage!.totalTokens).toBe(lastUsage.usage.session!.totalTokens);
  });

  it("continues the sequence across turns and feeds tool errors back to the model", async () => {
    const session = await sessionWith([
      { toolCalls: [{ name: "write_file", arguments: { path: "../escape.txt", content: "x" } }] },
      { text: "I cannot write there." },
      { text: "second turn" },
    ]);
    const first = await collect(t.client.streamGenerate({ sessionId: session.id, prompt: "write outside" }));
    const result = first.find((e) => e.payload?.$case === "toolResult")!.payload;
    if (result?.$case !== "toolResult") throw new Error("no tool result");
    expect(result.toolResult.isError).toBe(true);
    expect(result.toolResult.output).toContain("outside the workspace");

    const second = await collect(t.client.streamGenerate({ sessionId: session.id, prompt: "again" }));
    expect(second[0]!.sequence).toBe(first.at(-1)!.sequence + 1);
    expect(second[0]!.turnId).not.toBe(first[0]!.turnId);
  });

  it("stops after max_tool_rounds and answers the calls it did not run", async () => {
    const loop = { toolCalls: [{ name: "list_dir", arguments: {} }] };
    const session = await sessionWith([loop, loop, loop, loop], { maxToolRounds: 2 });
    const events = await collect(t.client.streamGenerate({ sessionId: session.id, prompt: "loop forever" }));
    expect(events.filter((e) => e.payload?.$case === "toolCall")).toHaveLength(2);
    const done = events.at(-1)!.payload;
    if (done?.$case !== "turnCompleted") throw new Error("turn did not complete");
    expect(done.turnCompleted.result!.stopReason).toBe(StopReason.STOP_REASON_MAX_TOOL_ROUNDS);
    const { messages } = await t.client.getMessages({ sessionId: session.id });
    expect(messages.at(-1)!.toolResult!.output).toContain("limit of 2 tool rounds");
  });

  it("reports a model failure as an error event and keeps the session usable", async () => {
    const session = await sessionWith([{ text: "partial ", error: { code: "UNAVAILABLE", message: "model overloaded" } }, { text: "fine now" }]);
    const events = await collect(t.client.streamGenerate({ sessionId: session.id, prompt: "hi" }));
    expect(events.at(-1)!.payload).toEqual({ $case: "error", error: { code: "UNAVAILABLE", message: "model overloaded" } });
    const reply = await t.client.generate({ sessionId: session.id, prompt: "retry" });
    expect(reply.result!.text).toBe("fine now");
    const { messages } = await t.client.getMessages({ sessionId: session.id });
    expect(messages.map((m) => m.text)).toEqual(["hi", "partial ", "retry", "fine now"]);
  });
});

describe("unary Generate", () => {
  it("returns the final result", async () => {
    const session = await sessionWith([{ text: "Echo: {{last_user_message}}" }]);
    const reply = await t.client.generate({ sessionId: session.id, prompt: "ping" });
    expect(reply.result!.text).toBe("Echo: ping");
    expect(reply.result!.stopReason).toBe(StopReason.STOP_REASON_END_TURN);
    expect(reply.sequence).toBeGreaterThan(0);
  });

  it("maps a failed turn to the error's status", async () => {
    const session = await sessionWith([{ error: { code: "UNAVAILABLE", message: "model overloaded" } }]);
    const error = await grpcError(t.client.generate({ sessionId: session.id, prompt: "hi" }));
    expect(error.code).toBe(status.UNAVAILABLE);
    expect(error.details).toBe("model overloaded");
  });
});

describe("one turn at a time", () => {
  it("refuses a second turn while one runs, then accepts it", async () => {
    const session = await sessionWith([{ text: "slow answer", delayMs: 100, chunkSize: 100 }, { text: "next" }]);
    const running = collect(t.client.streamGenerate({ sessionId: session.id, prompt: "first" }));
    await waitFor(async () => ((await t.client.getSession({ sessionId: session.id })).session!.turnActive ? true : undefined));
    const busy = await grpcError(t.client.generate({ sessionId: session.id, prompt: "second" }));
    expect(busy.code).toBe(status.FAILED_PRECONDITION);
    expect(busy.details).toContain("already running");
    const busyStream = await grpcError(collect(t.client.streamGenerate({ sessionId: session.id, prompt: "second" })));
    expect(busyStream.code).toBe(status.FAILED_PRECONDITION);
    expect(cases(await running).at(-1)).toBe("turnCompleted");
    expect((await t.client.generate({ sessionId: session.id, prompt: "second" })).result!.text).toBe("next");
  });
});

describe("pause during a turn", () => {
  it("lets the current step finish, waits, and continues on resume", async () => {
    const session = await sessionWith([
      { text: "step one", delayMs: 150, chunkSize: 100, toolCalls: [{ name: "write_file", arguments: { path: "out.txt", content: "done" } }] },
      { text: "finished" },
    ]);
    const call = t.client.streamGenerate({ sessionId: session.id, prompt: "go" });
    const events = collect(call);
    await waitFor(async () => ((await t.client.getSession({ sessionId: session.id })).session!.turnActive ? true : undefined));
    const paused = await t.client.pause({ sessionId: session.id });
    expect(paused.session!.state).toBe(SessionState.SESSION_STATE_PAUSED);
    expect(paused.session!.turnActive).toBe(true);

    // The model step completes, but the tool does not run while paused.
    await waitFor(async () => ((await t.client.getSession({ sessionId: session.id })).session!.messageCount === 2 ? true : undefined));
    await new Promise((resolve) => setTimeout(resolve, 100));
    await expect(readFile(path.join(session.workspace, "out.txt"), "utf8")).rejects.toThrow();

    const resumed = await t.client.resume({ sessionId: session.id });
    expect(resumed.session!.state).toBe(SessionState.SESSION_STATE_RUNNING);
    const all = await events;
    expect(cases(all).at(-1)).toBe("turnCompleted");
    expect(await readFile(path.join(session.workspace, "out.txt"), "utf8")).toBe("done");
    const states = all.flatMap((e) => (e.payload?.$case === "stateChanged" ? [e.payload.stateChanged.state] : []));
    expect(states).toEqual([SessionState.SESSION_STATE_PAUSED, SessionState.SESSION_STATE_RUNNING]);
  });
});

describe("history and bad input", () => {
  it("pages through the history", async () => {
    const session = await sessionWith([{ text: "a" }, { text: "b" }, { text: "c" }]);
    for (const prompt of ["1", "2", "3"]) await t.client.generate({ sessionId: session.id, prompt });
    const texts: string[] = [];
    let pageToken = "";
    do {
      const page = await t.client.getMessages({ sessionId: session.id, pageSize: 4, pageToken });
      texts.push(...page.messages.map((m) => m.text));
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    expect(texts).toEqual(["1", "a", "2", "b", "3", "c"]);
    const bad = await grpcError(t.client.getMessages({ sessionId: session.id, pageToken: "garbage" }));
    expect(bad.code).toBe(status.INVALID_ARGUMENT);
  });

  it("rejects an empty prompt, an unknown session and a session without a model", async () => {
    const session = await sessionWith([{ text: "x" }]);
    const empty = await grpcError(t.client.generate({ sessionId: session.id, prompt: "  " }));
    expect(empty.code).toBe(status.INVALID_ARGUMENT);
    expect(empty.details).toContain("prompt must not be empty");
    const emptyStream = await grpcError(collect(t.client.streamGenerate({ sessionId: session.id, prompt: "" })));
    expect(emptyStream.code).toBe(status.INVALID_ARGUMENT);

    const unknown = await grpcError(collect(t.client.streamGenerate({ sessionId: "missing", prompt: "hi" })));
    expect(unknown.code).toBe(status.NOT_FOUND);

    const { session: bare } = await t.client.createSession({});
    const noModel = await grpcError(t.client.generate({ sessionId: bare!.id, prompt: "hi" }));
    expect(noModel.code).toBe(status.FAILED_PRECONDITION);
    expect(noModel.details).toContain("has no model");

    // A refused turn leaves no trace in the history.
    expect((await t.client.getSession({ sessionId: session.id })).session!.messageCount).toBe(0);
  });

  it("refuses a provider without an API key before starting the turn", async () => {
    await t.stop();
    t = await startTestServer({ config: {
        models: {
          allowedBaseUrls: [],
          allowedApiKeyEnvs: ["AGENTD_TEST_UNSET_KEY"],
          keyedEndpoints: [{ baseUrl: "https://api.openai.com/v1", apiKeyEnv: "AGENTD_TEST_UNSET_KEY" }],
        },
      } });
    const { session } = await t.client.createSession({
      config: { model: { provider: "openai", model: "gpt-4o-mini", apiKeyEnv: "AGENTD_TEST_UNSET_KEY" } },
    });
    const error = await grpcError(t.client.generate({ sessionId: session!.id, prompt: "hi" }));
    expect(error.code).toBe(status.FAILED_PRECONDITION);
    expect(error.details).toContain("AGENTD_TEST_UNSET_KEY");
  });
});
