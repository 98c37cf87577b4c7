import { AgentdError } from "../../src/errors.js";
import { turnContext } from "../helpers/turn-context.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isAbortError } from "../../src/errors.js";
import { AnthropicClient } from "../../src/llm/anthropic.js";
import { type LlmChunk, type LlmRequest } from "../../src/llm/types.js";
import { collect, FakeServer, hangUp, sendJson, sendSse, startSse, within } from "./fake-server.js";

const KEY = "sk-ant-test-secret-0123456789";

const event = (type: string, data: Record<string, unknown>) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;

const messageStart = (inputTokens: number) =>
  event("message_start", {
    message: {
      id: "msg_01",
      type: "message",
      role: "assistant",
      model: "claude-test",
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: { input_tokens: inputTokens, cache_creation_input_tokens: 0, cache_read_input_tokens: 5, output_tokens: 1 },
    },
  });
const textStart = (index: number) => event("content_block_start", { index, content_block: { type: "text", text: "" } });
const textDelta = (index: number, text: string) => event("content_block_delta", { index, delta: { type: "text_delta", text } });
const blockStop = (index: number) => event("content_block_stop", { index });
const toolStart = (index: number, id: string, name: string) =>
  event("content_block_start", { index, content_block: { type: "tool_use", id, name, input: {} } });
const jsonDelta = (index: number, partial: string) =>
  event("content_block_delta", { index, delta: { type: "input_json_delta", partial_json: partial } });
const messageDelta = (stopReason: string, outputTokens: number) =>
  event("message_delta", { delta: { stop_reason: stopReason, stop_sequence: null }, usage: { output_tokens: outputTokens } });
const messageStop = event("message_stop", {});
const ping = event("ping", {});

const request: LlmRequest = {
  systemPrompt: "You are terse.",
  messages: [
    { role: "user", text: "read a.txt and b.txt" },
    {
      role: "assistant",
      text: "Reading both.",
      toolCalls: [
        { id: "toolu_1", name: "read_file", argumentsJson: '{"path":"a.txt"}' },
        { id: "toolu_2", name: "read_file", argumentsJson: '{"path":"b.txt"}' },
      ],
    },
    { role: "tool", callId: "toolu_1", name: "read_file", output: "A", isError: false },
    { role: "tool", callId: "toolu_2", name: "read_file", output: "no such file", isError: true },
  ],
  tools: [
    {
      name: "read_file",
      description: "Reads a file",
      inputSchema: { type: "object", properties: { path: { type: "string" } }, required: ["path"] },
    },
  ],
};

describe("AnthropicClient", () => {
  const server = new FakeServer();
  beforeAll(() => server.start());
  afterAll(() => server.stop());

  const client = (maxRetries = 0, maxOutputTokens?: number) =>
    new AnthropicClient({ apiKey: KEY, model: "claude-test", baseUrl: server.url, maxRetries, maxOutputTokens });

  it("streams text, a tool call split across deltas, usage and the stop reason", async () => {
    server.handler = (_req, res) =>
      sendSse(res, [
        messageStart(20),
        textStart(0),
        ping,
        textDelta(0, "Let me "),
        textDelta(0, "look."),
        blockStop(0),
        toolStart(1, "toolu_abc", "read_file"),
        jsonDelta(1, ""),
        jsonDelta(1, '{"pa'),
        jsonDelta(1, 'th": "c.txt"}'),
        blockStop(1),
        toolStart(2, "toolu_def", "list_dir"),
        blockStop(2),
        messageDelta("tool_use", 30),
        messageStop,
      ]);
    const chunks = await collect(client().stream(request, turnContext()));
    expect(chunks).toEqual<LlmChunk[]>([
      { type: "text", delta: "Let me " },
      { type: "text", delta: "look." },
      { type: "tool_call", call: { id: "toolu_abc", name: "read_file", argumentsJson: '{"path": "c.txt"}' } },
      // A tool without arguments streams no JSON at all: its start block's input stands.
      { type: "tool_call", call: { id: "toolu_def", name: "list_dir", argumentsJson: "{}" } },
      // Cached prompt tokens count as input.
      { type: "usage", usage: { inputTokens: 25, outputTokens: 30 } },
      { type: "done", stopReason: "tool_use" },
    ]);

    const sent = server.requests.at(-1)!;
    expect(sent.url).toBe("/v1/messages");
    expect(sent.headers.authorization).toBe(`Bearer ${KEY}`);
    expect(sent.body).toMatchObject({ model: "claude-test", stream: true, max_tokens: 4096, system: "You are terse." });
    // The API version this SDK speaks rejects sampling parameters.
    expect(sent.body).not.toHaveProperty("temperature");
    expect(sent.body.messages).toEqual([
      { role: "user", content: [{ type: "text", text: "read a.txt and b.txt" }] },
      {
        role: "assistant",
        content: [
          { type: "text", text: "Reading both." },
          { type: "tool_use", id: "toolu_1", name: "read_file", input: { path: "a.txt" } },
          { type: "tool_use", id: "toolu_2", name: "read_file", input: { path: "b.txt" } },
        ],
      },
      // Both results of the round in one user message.
      {
        role: "user",
        content: [
          { type: "tool_result", tool_use_id: "toolu_1", content: "A" },
          { type: "tool_result", tool_use_id: "toolu_2", content: "no such file", is_error: true },
        ],
      },
    ]);
    expect(sent.body.tools).toEqual([
      {
        name: "read_file",
        description: "Reads a file",
        input_schema: { type: "object", properties: { path: { type: "string" } }, required: ["path"] },
      },
    ]);
  });

  it("omits an empty system prompt and empty tools, honours maxOutputTokens and maps stop reasons", async () => {
    server.handler = (_req, res) =>
      sendSse(res, [messageStart(3), textStart(0), textDelta(0, "cut"), blockStop(0), messageDelta("max_tokens", 7), messageStop]);
    const chunks = await collect(
      client(0, 100).stream({ systemPrompt: "", messages: [{ role: "user", text: "hi" }], tools: [] }, turnContext()),
    );
    expect(chunks).toEqual<LlmChunk[]>([
      { type: "text", delta: "cut" },
      { type: "usage", usage: { inputTokens: 8, outputTokens: 7 } },
      { type: "done", stopReason: "max_tokens" },
    ]);
    const body = server.requests.at(-1)!.body;
    expect(body).toMatchObject({ max_tokens: 100, messages: [{ role: "user", content: [{ type: "text", text: "hi" }] }] });
    expect(body).not.toHaveProperty("system");
    expect(body).not.toHaveProperty("tools");

    server.handler = (_req, res) =>
      sendSse(res, [messageStart(3), textStart(0), textDelta(0, "ok"), blockStop(0), messageDelta("end_turn", 2), messageStop]);
    const last = (await collect(client().stream(request, turnContext()))).at(-1);
    expect(last).toEqual({ type: "done", stopReason: "end_turn" });
  });

  it("puts a user prompt that follows tool results in the same user message, after them", async () => {
    server.handler = (_req, res) => sendSse(res, [messageStart(1), messageDelta("end_turn", 1), messageStop]);
    const messages: LlmRequest["messages"] = [
      ...request.messages,
      // After a cancelled turn, the next prompt directly follows the tool results.
      { role: "user", text: "go on" },
    ];
    await collect(client().stream({ ...request, messages }, turnContext()));
    const sent = server.requests.at(-1)!.body.messages as { role: string; content: { type: string }[] }[];
    expect(sent.map((m) => m.role)).toEqual(["user", "assistant", "user"]);
    expect(sent[2]!.content.map((block) => block.type)).toEqual(["tool_result", "tool_result", "text"]);
  });

  it("aborting mid-stream closes the connection and throws an AbortError promptly", async () => {
    let serverSawHangUp: Promise<boolean> | undefined;
    server.handler = (_req, res) => {
      serverSawHangUp = hangUp(res);
      startSse(res);
      res.write(messageStart(3) + textStart(0) + textDelta(0, "first"));
    };
    const controller = new AbortController();
    const iterator = client().stream(request, turnContext(controller.signal))[Symbol.asyncIterator]();
    expect(await iterator.next()).toEqual({ done: false, value: { type: "text", delta: "first" } });
    const started = Date.now();
    const pending = iterator.next();
    controller.abort();
    const error = await within(pending.then(() => undefined, (e: unknown) => e), 1000, "the abort");
    expect(isAbortError(error, controller.signal)).toBe(true);
    expect((error as Error).name).toBe("AbortError");
    expect(Date.now() - started).toBeLessThan(1000);
    expect(await within(serverSawHangUp!, 1000, "the server seeing the hang-up")).toBe(true);
  });

  it("maps HTTP 500 to UNAVAILABLE", async () => {
    server.handler = (_req, res) => sendJson(res, 500, { type: "error", error: { type: "api_error", message: "boom" } });
    const error = await collect(client(0).stream(request, turnContext())).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AgentdError);
    expect((error as AgentdError).kind).toBe("unavailable");
    expect((error as AgentdError).message).toContain("HTTP 500: boom");
  });

  it("maps 401 to UNAUTHENTICATED without leaking the key", async () => {
    server.handler = (_req, res) =>
      sendJson(res, 401, { type: "error", error: { type: "authentication_error", message: `invalid x-api-key ${KEY}` } });
    const error = await collect(client().stream(request, turnContext())).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AgentdError);
    expect((error as AgentdError).kind).toBe("unauthenticated");
    expect((error as AgentdError).message).toContain("ANTHROPIC_API_KEY");
    expect((error as AgentdError).message).not.toContain(KEY);
  });

  it("maps an error event inside the stream by its type", async () => {
    server.handler = (_req, res) =>
      sendSse(res, [
        messageStart(3),
        textStart(0),
        textDelta(0, "partial"),
        event("error", { error: { type: "overloaded_error", message: "Overloaded" } }),
      ]);
    const seen: LlmChunk[] = [];
    const error = await (async () => {
      for await (const chunk of client().stream(request, turnContext())) seen.push(chunk);
    })().catch((e: unknown) => e);
    expect(seen).toEqual([{ type: "text", delta: "partial" }]);
    expect((error as AgentdError).kind).toBe("unavailable");
    expect((error as AgentdError).message).toContain("overloaded_error: Overloaded");
  });

  it.each([
    [403, "permission_denied"],
    [400, "invalid_argument"],
    [429, "resource_exhausted"],
    [529, "unavailable"],
  ])("maps HTTP %i to %s", async (status, code) => {
    server.handler = (_req, res) => sendJson(res, status, { type: "error", error: { type: "x", message: "nope" } });
    const error = await collect(client(0).stream(request, turnContext())).catch((e: unknown) => e);
    expect((error as AgentdError).kind).toBe(code);
  });
});
