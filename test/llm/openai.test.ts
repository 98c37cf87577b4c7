import { AgentdError } from "../../src/errors.js";
import { turnContext } from "../helpers/turn-context.js";
import { getEventListeners } from "node:events";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isAbortError } from "../../src/errors.js";
import { OpenAiClient } from "../../src/llm/openai.js";
import { type LlmChunk, type LlmRequest } from "../../src/llm/types.js";
import { collect, FakeServer, hangUp, sendJson, sendSse, startSse, within } from "./fake-server.js";

const KEY = "sk-test-secret-0123456789";

const chunk = (delta: Record<string, unknown>, finish: string | null = null) =>
  `data: ${JSON.stringify({
    id: "chatcmpl-1",
    object: "chat.completion.chunk",
    created: 1_700_000_000,
    model: "gpt-test",
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
  })}\n\n`;
const usageChunk = (prompt: number, completion: number) =>
  `data: ${JSON.stringify({
    id: "chatcmpl-1",
    object: "chat.completion.chunk",
    created: 1_700_000_000,
    model: "gpt-test",
    choices: [],
    usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion },
  })}\n\n`;
const DONE = "data: [DONE]\n\n";

const request: LlmRequest = {
  systemPrompt: "You are terse.",
  messages: [
    { role: "user", text: "read a.txt and b.txt" },
    {
      role: "assistant",
      text: "",
      toolCalls: [
        { id: "call_1", name: "read_file", argumentsJson: '{"path":"a.txt"}' },
        { id: "call_2", name: "read_file", argumentsJson: '{"path":"b.txt"}' },
      ],
    },
    { role: "tool", callId: "call_1", name: "read_file", output: "A", isError: false },
    { role: "tool", callId: "call_2", name: "read_file", output: "no such file", isError: true },
  ],
  tools: [
    {
      name: "read_file",
      description: "Reads a file",
      inputSchema: { type: "object", properties: { path: { type: "string" } }, required: ["path"] },
    },
  ],
  temperature: 0.2,
  maxOutputTokens: 256,
};

describe("OpenAiClient", () => {
  const server = new FakeServer();
  beforeAll(() => server.start());
  afterAll(() => server.stop());

  const client = (maxRetries = 0) =>
    new OpenAiClient({ apiKey: KEY, model: "gpt-test", baseUrl: `${server.url}/v1`, maxRetries });

  it("streams text, a tool call split across deltas, usage and the stop reason", async () => {
    server.handler = (_req, res) =>
      sendSse(res, [
        chunk({ role: "assistant", content: "" }),
        chunk({ content: "Let me " }),
        chunk({ content: "look." }),
        chunk({ tool_calls: [{ index: 0, id: "call_abc", type: "function", function: { name: "read_file", arguments: "" } }] }),
        chunk({ tool_calls: [{ index: 0, function: { arguments: '{"pa' } }] }),
        chunk({ tool_calls: [{ index: 0, function: { arguments: 'th": "c.txt"}' } }] }),
        chunk({ tool_calls: [{ index: 1, id: "call_def", type: "function", function: { name: "list_dir", arguments: "{}" } }] }),
        chunk({}, "tool_calls"),
        usageChunk(42, 17),
        DONE,
      ]);
    const chunks = await collect(client().stream(request, turnContext()));
    expect(chunks).toEqual<LlmChunk[]>([
      { type: "text", delta: "Let me " },
      { type: "text", delta: "look." },
      { type: "tool_call", call: { id: "call_abc", name: "read_file", argumentsJson: '{"path": "c.txt"}' } },
      { type: "tool_call", call: { id: "call_def", name: "list_dir", argumentsJson: "{}" } },
      { type: "usage", usage: { inputTokens: 42, outputTokens: 17 } },
      { type: "done", stopReason: "tool_use" },
    ]);

    const sent = server.requests.at(-1)!;
    expect(sent.method).toBe("POST");
    expect(sent.url).toBe("/v1/chat/completions");
    expect(sent.headers.authorization).toBe(`Bearer ${KEY}`);
    expect(sent.body).toMatchObject({
      model: "gpt-test",
      stream: true,
      stream_options: { include_usage: true },
      temperature: 0.2,
      // A custom base URL gets the widely supported max_tokens.
      max_tokens: 256,
    });
    expect(sent.body.messages).toEqual([
      { role: "system", content: "You are terse." },
      { role: "user", content: "read a.txt and b.txt" },
      {
        role: "assistant",
        content: null,
        tool_calls: [
          { id: "call_1", type: "function", function: { name: "read_file", arguments: '{"path":"a.txt"}' } },
          { id: "call_2", type: "function", function: { name: "read_file", arguments: '{"path":"b.txt"}' } },
        ],
      },
      { role: "tool", tool_call_id: "call_1", content: "A" },
      { role: "tool", tool_call_id: "call_2", content: "no such file" },
    ]);
    expect(sent.body.tools).toEqual([
      {
        type: "function",
        function: {
          name: "read_file",
          description: "Reads a file",
          parameters: { type: "object", properties: { path: { type: "string" } }, required: ["path"] },
        },
      },
    ]);
  });

  it("omits an empty system prompt and empty tools, and maps finish reasons", async () => {
    server.handler = (_req, res) => sendSse(res, [chunk({ content: "cut" }), chunk({}, "length"), DONE]);
    const chunks = await collect(
      client().stream({ systemPrompt: "", messages: [{ role: "user", text: "hi" }], tools: [] }, turnContext()),
    );
    expect(chunks).toEqual<LlmChunk[]>([
      { type: "text", delta: "cut" },
      { type: "done", stopReason: "max_tokens" },
    ]);
    const body = server.requests.at(-1)!.body;
    expect(body.messages).toEqual([{ role: "user", content: "hi" }]);
    expect(body).not.toHaveProperty("tools");
    expect(body).not.toHaveProperty("temperature");
    expect(body).not.toHaveProperty("max_tokens");

    server.handler = (_req, res) => sendSse(res, [chunk({ content: "ok" }), chunk({}, "stop"), usageChunk(3, 1), DONE]);
    const last = (await collect(client().stream(request, turnContext()))).at(-1);
    expect(last).toEqual({ type: "done", stopReason: "end_turn" });
  });

  it("leaves no abort listeners on the caller's signal, which a turn reuses for every model call", async () => {
    server.handler = (_req, res) => sendSse(res, [chunk({ content: "ok" }), chunk({}, "stop"), DONE]);
    const signal = new AbortController().signal;
    const c = client();
    for (let i = 0; i < 12; i++) await collect(c.stream(request, turnContext(signal)));
    expect(getEventListeners(signal, "abort")).toHaveLength(0);
  });

  it("aborting mid-stream closes the connection and throws an AbortError promptly", async () => {
    let serverSawHangUp: Promise<boolean> | undefined;
    server.handler = (_req, res) => {
      serverSawHangUp = hangUp(res);
      startSse(res);
      res.write(chunk({ content: "first" }));
      // ...and never another byte.
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

  it("aborting before the response starts throws an AbortError", async () => {
    let serverSawHangUp: Promise<boolean> | undefined;
    server.handler = (_req, res) => {
      serverSawHangUp = hangUp(res);
    };
    const controller = new AbortController();
    const pending = collect(client().stream(request, turnContext(controller.signal))).then(
      () => undefined,
      (e: unknown) => e,
    );
    while (serverSawHangUp === undefined) await new Promise((resolve) => setTimeout(resolve, 5));
    controller.abort();
    const error = await within(pending, 1000, "the abort");
    expect(isAbortError(error, controller.signal)).toBe(true);
    expect(await within(serverSawHangUp, 1000, "the server seeing the hang-up")).toBe(true);
  });

  it("maps HTTP 500 to UNAVAILABLE", async () => {
    server.handler = (_req, res) => sendJson(res, 500, { error: { message: "boom", type: "server_error" } });
    const error = await collect(client(0).stream(request, turnContext())).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AgentdError);
    expect((error as AgentdError).kind).toBe("unavailable");
    expect((error as AgentdError).message).toContain("HTTP 500: boom");
  });

  it("maps 401 to UNAUTHENTICATED without leaking the key", async () => {
    server.handler = (_req, res) =>
      sendJson(res, 401, { error: { message: `Incorrect API key provided: ${KEY}.`, type: "invalid_request_error" } });
    const error = await collect(client().stream(request, turnContext())).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AgentdError);
    expect((error as AgentdError).kind).toBe("unauthenticated");
    expect((error as AgentdError).message).toContain("OPENAI_API_KEY");
    expect((error as AgentdError).message).not.toContain(KEY);
    expect((error as AgentdError).message).not.toContain("sk-test");
  });

  it.each([
    [403, "permission_denied"],
    [400, "invalid_argument"],
    [404, "invalid_argument"],
    [422, "invalid_argument"],
    [429, "resource_exhausted"],
    [503, "unavailable"],
  ])("maps HTTP %i to %s", async (status, code) => {
    server.handler = (_req, res) => sendJson(res, status, { error: { message: "nope" } });
    const error = await collect(client(0).stream(request, turnContext())).catch((e: unknown) => e);
    expect((error as AgentdError).kind).toBe(code);
  });

  it("maps a refused connection to UNAVAILABLE", async () => {
    const gone = new FakeServer();
    await gone.start();
    const url = gone.url;
    await gone.stop();
    const dead = new OpenAiClient({ apiKey: KEY, model: "gpt-test", baseUrl: url, maxRetries: 0 });
    const error = await collect(dead.stream(request, turnContext())).catch((e: unknown) => e);
    expect((error as AgentdError).kind).toBe("unavailable");
    expect((error as AgentdError).message).toContain(`cannot reach openai at ${url}`);
  });
});
