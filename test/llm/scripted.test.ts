import { turnContext } from "../helpers/turn-context.js";
import { afterEach, describe, expect, it, vi } from "vitest";
import { AgentdError, isAbortError } from "../../src/errors.js";
import { parseScript, ScriptedClient } from "../../src/llm/scripted.js";
import { type LlmChunk, type LlmRequest } from "../../src/llm/types.js";
import { collect } from "./fake-server.js";

const request = (text: string, systemPrompt = ""): LlmRequest => ({
  systemPrompt,
  messages: [{ role: "user", text }],
  tools: [],
});
const client = (script: object) => new ScriptedClient(parseScript(JSON.stringify(script), "test.json"));
const run = (c: ScriptedClient, req = request("hi"), signal = new AbortController().signal) => collect(c.stream(req, turnContext(signal)));
const texts = (chunks: LlmChunk[]) => chunks.flatMap((c) => (c.type === "text" ? [c.delta] : []));

describe("ScriptedClient", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("plays one step per call, in order, chunking text", async () => {
    const c = client({ steps: [{ text: "Hello there, world", chunkSize: 5 }, { text: "second" }] });
    const first = await run(c);
    expect(texts(first)).toEqual(["Hello", " ther", "e, wo", "rld"]);
    expect(first.at(-1)).toEqual({ type: "done", stopReason: "end_turn" });
    // Default chunk size 8.
    expect(texts(await run(c))).toEqual(["second"]);
  });

  it("replaces {{last_user_message}} with the last user message", async () => {
    const c = client({ steps: [{ text: "You said: {{last_user_message}}!", chunkSize: 100 }] });
    const req: LlmRequest = {
      systemPrompt: "",
      messages: [
        { role: "user", text: "first" },
        { role: "assistant", text: "ok", toolCalls: [] },
        { role: "user", text: "second" },
      ],
      tools: [],
    };
    expect(texts(await run(c, req))).toEqual(["You said: second!"]);
  });

  it("emits tool calls, generating missing ids, with tool_use as the default stop reason", async () => {
    const c = client({
      steps: [
        {
          text: "Reading.",
          toolCalls: [
            { id: "call_1", name: "read_file", arguments: { path: "a.txt" } },
            { name: "list_dir", arguments: {} },
          ],
        },
      ],
    });
    const chunks = await run(c);
    const calls = chunks.flatMap((chunk) => (chunk.type === "tool_call" ? [chunk.call] : []));
    expect(calls[0]).toEqual({ id: "call_1", name: "read_file", argumentsJson: '{"path":"a.txt"}' });
    expect(calls[1]!.name).toBe("list_dir");
    expect(calls[1]!.argumentsJson).toBe("{}");
    expect(calls[1]!.id).toMatch(/\S/);
    expect(chunks.map((chunk) => chunk.type)).toEqual(["text", "tool_call", "tool_call", "usage", "done"]);
    expect(chunks.at(-1)).toEqual({ type: "done", stopReason: "tool_use" });
  });

  it("estimates usage as ceil(chars / 4) unless the step gives it, and honours stopReason", async () => {
    const c = client({
      steps: [{ text: "12345" }, { text: "x", usage: { inputTokens: 10, outputTokens: 5 }, stopReason: "max_tokens" }],
    });
    // Input: "system" (6) + "hello" (5) = 11 chars -> 3 tokens; output: 5 chars -> 2 tokens.
    const first = await run(c, request("hello", "system"));
    expect(first.find((chunk) => chunk.type === "usage")).toEqual({ type: "usage", usage: { inputTokens: 3, outputTokens: 2 } });
    const second = await run(c);
    expect(second.slice(-2)).toEqual([
      { type: "usage", usage: { inputTokens: 10, outputTokens: 5 } },
      { type: "done", stopReason: "max_tokens" },
    ]);
  });

  it("starts over when repeat is true", async () => {
    const c = client({ steps: [{ text: "a" }, { text: "b" }], repeat: true });
    const seen: string[] = [];
    for (let i = 0; i < 5; i++) seen.push(...texts(await run(c)));
    expect(seen).toEqual(["a", "b", "a", "b", "a"]);
  });

  it("fails with FAILED_PRECONDITION past the end of a non-repeating script", async () => {
    const c = client({ steps: [{ text: "a" }, { text: "b" }] });
    await run(c);
    await run(c);
    const error = await run(c).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AgentdError);
    expect((error as AgentdError).kind).toBe("failed_precondition");
    expect((error as AgentdError).message).toBe("scripted model: the script has no step 3 (it has 2 steps)");
  });

  it("an error step streams its text, then throws its AgentdError", async () => {
    const c = client({ steps: [{ text: "partial", error: { code: "UNAVAILABLE", message: "model overloaded" } }, { text: "ok" }] });
    const seen: LlmChunk[] = [];
    const error = await (async () => {
      for await (const chunk of c.stream(request("hi"), turnContext())) seen.push(chunk);
    })().catch((e: unknown) => e);
    expect(seen).toEqual([{ type: "text", delta: "partial" }]);
    expect(error).toBeInstanceOf(AgentdError);
    expect(error).toMatchObject({ kind: "unavailable", message: "model overloaded" });
    // The next turn continues with the next step.
    expect(texts(await run(c))).toEqual(["ok"]);
  });

  it("waits delayMs before each chunk", async () => {
    vi.useFakeTimers();
    const c = client({ steps: [{ text: "abcd", chunkSize: 2, delayMs: 100 }] });
    const seen: string[] = [];
    const done = (async () => {
      for await (const chunk of c.stream(request("hi"), turnContext())) if (chunk.type === "text") seen.push(chunk.delta);
    })();
    await vi.advanceTimersByTimeAsync(99);
    expect(seen).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(seen).toEqual(["ab"]);
    await vi.advanceTimersByTimeAsync(100);
    await done;
    expect(seen).toEqual(["ab", "cd"]);
  });

  it("aborting during a delay rejects promptly with an AbortError and clears the timer", async () => {
    vi.useFakeTimers();
    const c = client({ steps: [{ text: "never", delayMs: 60_000 }] });
    const controller = new AbortController();
    const pending = collect(c.stream(request("hi"), turnContext(controller.signal))).catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(10);
    expect(vi.getTimerCount()).toBe(1);
    controller.abort();
    const error = await pending;
    expect(isAbortError(error)).toBe(true);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("aborting during a real delay rejects within milliseconds", async () => {
    const c = client({ steps: [{ toolCalls: [{ name: "x", arguments: {} }], delayMs: 5_000 }] });
    const controller = new AbortController();
    const started = Date.now();
    const pending = collect(c.stream(request("hi"), turnContext(controller.signal))).catch((e: unknown) => e);
    setTimeout(() => controller.abort(), 20);
    expect(isAbortError(await pending)).toBe(true);
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it("an already aborted signal throws before streaming", async () => {
    const controller = new AbortController();
    controller.abort();
    const error = await run(client({ steps: [{ text: "x" }] }), request("hi"), controller.signal).catch((e: unknown) => e);
    expect(isAbortError(error)).toBe(true);
  });
});

describe("parseScript", () => {
  const problem = (script: unknown) => {
    try {
      parseScript(typeof script === "string" ? script : JSON.stringify(script), "s.json");
    } catch (error) {
      expect(error).toBeInstanceOf(AgentdError);
      expect((error as AgentdError).kind).toBe("invalid_argument");
      return (error as Error).message;
    }
    throw new Error("expected parseScript to throw");
  };

  it("accepts a full script and applies defaults", () => {
    const script = parseScript(
      JSON.stringify({
        steps: [
          {
            text: "t",
            chunkSize: 2,
            delayMs: 0,
            toolCalls: [{ id: "c", name: "n", arguments: { a: 1 } }],
            usage: { inputTokens: 1, outputTokens: 2 },
            stopReason: "tool_use",
          },
          { error: { code: "UNAVAILABLE", message: "m" } },
        ],
      }),
      "s.json",
    );
    expect(script.repeat).toBe(false);
    expect(script.steps).toHaveLength(2);
  });

  it("names the bad field", () => {
    // The parser's own message would quote the text; only the position is given.
    expect(problem("{not json")).toBe("scripted model: script s.json is not valid JSON (at position 1)");
    expect(problem([])).toBe("scripted model: script s.json is invalid: the script must be an object");
    expect(problem({ steps: [] })).toContain("steps must be a non-empty array");
    expect(problem({ steps: [{}], repeat: "yes" })).toContain("repeat must be true or false");
    expect(problem({ steps: [{}], loop: true })).toContain("loop is not a known field");
    expect(problem({ steps: [{ text: 1 }] })).toContain("steps[0].text must be a string");
    expect(problem({ steps: [{}, { texts: "x" }] })).toContain("steps[1].texts is not a known field");
    expect(problem({ steps: [{ chunkSize: 0 }] })).toContain("steps[0].chunkSize must be an integer >= 1");
    expect(problem({ steps: [{ delayMs: -1 }] })).toContain("steps[0].delayMs must be an integer >= 0");
    expect(problem({ steps: [{}, {}, { toolCalls: [{ name: "" }] }] })).toBe(
      "scripted model: script s.json is invalid: steps[2].toolCalls[0].name must be a non-empty string",
    );
    expect(problem({ steps: [{ toolCalls: [{ name: "n", arguments: [] }] }] })).toContain("steps[0].toolCalls[0].arguments must be an object");
    expect(problem({ steps: [{ toolCalls: {} }] })).toContain("steps[0].toolCalls must be an array");
    expect(problem({ steps: [{ usage: { inputTokens: 1 } }] })).toContain("steps[0].usage.outputTokens must be an integer from 0 to 1000000000000");
    expect(problem({ steps: [{ stopReason: "stop" }] })).toContain("steps[0].stopReason must be one of");
    expect(problem({ steps: [{ error: { code: "BROKEN", message: "m" } }] })).toContain("steps[0].error.code must be a gRPC status name");
    expect(problem({ steps: [{ error: { code: "INTERNAL" } }] })).toContain("steps[0].error.message must be a non-empty string");
    expect(problem({ steps: [{ toolCalls: [{ name: "n" }], error: { code: "INTERNAL", message: "m" } }] })).toContain(
      "steps[0] cannot have both toolCalls and error",
    );
  });
});
