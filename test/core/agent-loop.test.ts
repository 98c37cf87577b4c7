import { lastValueFrom, toArray } from "rxjs";
import { describe, expect, it } from "vitest";
import { TurnAbortedError } from "../../src/agent/cancellation.js";
import { MAX_ANSWER_BYTES, runTurn, type TurnHost } from "../../src/agent/loop.js";
import type { TurnEvent } from "../../src/events/types.js";
import { parseScript, ScriptedClient } from "../../src/llm/scripted.js";
import type { LlmClient, LlmMessage } from "../../src/llm/types.js";
import { PauseGate } from "../../src/session/pause-gate.js";
import type { Message } from "../../src/session/types.js";
import { ToolExecutor } from "../../src/tools/executor.js";
import { ToolRegistry } from "../../src/tools/registry.js";
import type { Tool } from "../../src/tools/types.js";
import { turnContext } from "../helpers/turn-context.js";

/** A host that keeps the conversation in an array: the loop without a session or a server. */
class FakeHost implements TurnHost {
  readonly messages: Array<Omit<Message, "id" | "createdAt" | "turnId">> = [];
  readonly gate = new PauseGate();
  usage = { inputTokens: 0, outputTokens: 0 };
  private readonly ids = new Set<string>();

  history(): LlmMessage[] {
    return this.messages.map((m): LlmMessage => {
      if (m.toolResult) return { role: "tool", ...m.toolResult };
      return m.role === "assistant" ? { role: "assistant", text: m.text, toolCalls: m.toolCalls } : { role: "user", text: m.text };
    });
  }
  appendMessage(message: Omit<Message, "id" | "createdAt" | "turnId">): void {
    this.messages.push(message);
  }
  spent = 0;
  addUsage(step: { inputTokens: number; outputTokens: number; costUsd?: number }) {
    this.usage = { inputTokens: this.usage.inputTokens + step.inputTokens, outputTokens: this.usage.outputTokens + step.outputTokens };
    this.spent += step.costUsd ?? 0;
    return { ...this.usage };
  }
  spentUsd(): number {
    return this.spent;
  }
  waitIfPaused(signal: AbortSignal): Promise<void> {
    return this.gate.wait(signal);
  }
  claimCallId(proposed: string): string {
    let id = proposed;
    for (let n = 2; this.ids.has(id); n++) id = `${proposed}_${n}`;
    this.ids.add(id);
    return id;
  }
}

const echo: Tool = {
  name: "echo",
  description: "Echoes its text.",
  readOnly: true,
  inputSchema: { type: "object", properties: { text: { type: "string" } }, required: ["text"] },
  execute: async (args) => `echo: ${String(args.text)}`,
};

function turn(steps: object[], options: { host?: FakeHost; signal?: AbortSignal; maxToolRounds?: number; tools?: Tool[] } = {}) {
  const host = options.host ?? new FakeHost();
  const registry = new ToolRegistry(options.tools ?? [echo]);
  const executor = new ToolExecutor(registry);
  const events = runTurn({
    prompt: "go",
    systemPrompt: "sp",
    limits: { maxToolRounds: options.maxToolRounds ?? 5, toolTimeoutMs: 0 },
    llm: new ScriptedClient(parseScript(JSON.stringify({ steps }), "test")),
    tools: {
      definitions: () => registry.definitions(),
      execute: (call, context) => executor.execute(call, { ...context, workspace: "/nonexistent", timeoutMs: 0 }),
    },
    host,
    context: turnContext(options.signal),
  });
  return { host, events: lastValueFrom(events.pipe(toArray())) };
}

const types = (events: TurnEvent[]) => events.map((e) => e.type);

describe("the agent loop, without a server", () => {
  it("runs a tool round and answers, with usage per step and a result", async () => {
    const { host, events } = turn([
      { text: "Let me echo.", toolCalls: [{ id: "c1", name: "echo", arguments: { text: "hi" } }], usage: { inputTokens: 10, outputTokens: 3 } },
      { text: "Done.", usage: { inputTokens: 20, outputTokens: 2 } },
    ]);
    const list = await events;
    expect(types(list)).toEqual(["turn_started", "text_delta", "text_delta", "usage", "tool_call", "tool_result", "text_delta", "usage", "turn_completed"]);
    expect(list.find((e) => e.type === "tool_result")).toEqual({
      type: "tool_result",
      result: { callId: "c1", name: "echo", output: "echo: hi", isError: false },
    });
    expect(list.at(-1)).toEqual({
      type: "turn_completed",
      result: { turnId: "test-turn", text: "Done.", stopReason: "end_turn", usage: { inputTokens: 30, outputTokens: 5 }, toolRounds: 1 },
    });
    expect(host.messages.map((m) => m.role)).toEqual(["user", "assistant", "tool", "assistant"]);
    expect(host.usage).toEqual({ inputTokens: 30, outputTokens: 5 });
  });

  it("stops at the tool round limit and answers the calls it did not run", async () => {
    const step = { toolCalls: [{ name: "echo", arguments: { text: "again" } }] };
    const { host, events } = turn([step, step, step], { maxToolRounds: 2 });
    const last = (await events).at(-1)!;
    expect(last.type === "turn_completed" && last.result.stopReason).toBe("max_tool_rounds");
    const results = host.messages.flatMap((m) => (m.toolResult ? [m.toolResult] : []));
    expect(results).toHaveLength(3);
    expect(results[2]).toMatchObject({ isError: true, output: "not run: the turn reached its limit of 2 tool rounds" });
    // Generated ids are unique within the turn's host.
    expect(new Set(results.map((r) => r.callId)).size).toBe(3);
  });

  it("reports a model failure as turn_failed with its kind, keeping the text already streamed", async () => {
    const { host, events } = turn([{ text: "partial", error: { code: "UNAVAILABLE", message: "down" } }]);
    expect((await events).at(-1)).toEqual({ type: "turn_failed", error: { kind: "unavailable", message: "down" } });
    expect(host.messages.at(-1)).toMatchObject({ role: "assistant", text: "partial" });
  });

  it("stops a model whose answer passes the limit, keeping what it said up to there", async () => {
    const host = new FakeHost();
    const flood: LlmClient = {
      provider: "flood",
      async *stream() {
        for (;;) yield { type: "text", delta: "x".repeat(64 * 1024) };
      },
    };
    const registry = new ToolRegistry([]);
    const events = await lastValueFrom(
      runTurn({
        prompt: "go",
        systemPrompt: "",
        limits: { maxToolRounds: 1, toolTimeoutMs: 0 },
        llm: flood,
        tools: { definitions: () => [], execute: (call, context) => new ToolExecutor(registry).execute(call, { ...context, workspace: "/", timeoutMs: 0 }) },
        host,
        context: turnContext(),
      }).pipe(toArray()),
    );
    const last = events.at(-1)!;
    expect(last.type === "turn_failed" && last.error.kind).toBe("resource_exhausted");
    expect(host.messages.at(-1)!.text.length).toBe(MAX_ANSWER_BYTES);
  });

  it("reports a bug as an internal failure without its message", async () => {
    const { events } = turn([{ text: "x" }], {
      host: Object.assign(new FakeHost(), {
        addUsage: () => {
          throw new TypeError("secret internals");
        },
      }),
    });
    const last = (await events).at(-1)!;
    expect(last).toEqual({ type: "turn_failed", error: { kind: "internal", message: "the turn failed with an internal error; see the server log" } });
  });

  it("cancelled while paused between steps: turn_cancelled with the reason, and a valid history", async () => {
    const host = new FakeHost();
    const controller = new AbortController();
    host.gate.pause();
    const { events } = turn([{ text: "never" }], { host, signal: controller.signal });
    await new Promise((resolve) => setTimeout(resolve, 10));
    controller.abort(new TurnAbortedError("deadline_exceeded"));
    expect((await events).map((e) => e.type)).toEqual(["turn_started", "turn_cancelled"]);
    expect((await events).at(-1)).toEqual({ type: "turn_cancelled", reason: "deadline_exceeded" });
    expect(host.messages).toHaveLength(1);
  });
});
