import { turnContext } from "../helpers/turn-context.js";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ToolExecutor, truncate } from "../../src/tools/executor.js";
import { ToolRegistry } from "../../src/tools/registry.js";
import type { Tool, ToolContext } from "../../src/tools/types.js";

function tool(name: string, execute: Tool["execute"], inputSchema?: Record<string, unknown>): Tool {
  return { name, description: name, readOnly: true, inputSchema: inputSchema ?? { type: "object", properties: {} }, execute };
}

const echo = tool("echo", async (args) => String(args.text), {
  type: "object",
  properties: { text: { type: "string" } },
  required: ["text"],
  additionalProperties: false,
});

function context(signal: AbortSignal = new AbortController().signal, timeoutMs = 0) {
  return { ...turnContext(signal), workspace: "/tmp/ws", timeoutMs };
}

function executor(...tools: Tool[]) {
  return new ToolExecutor(new ToolRegistry([echo, ...tools]), { maxOutputBytes: 50 });
}

afterEach(() => {
  vi.useRealTimers();
});

describe("ToolExecutor", () => {
  it("runs a tool with parsed arguments and the session context", async () => {
    let seen: ToolContext | undefined;
    const spy = tool("spy", async (_args, ctx) => {
      seen = ctx;
      return "done";
    });
    const exec = executor(spy);
    expect(await exec.execute({ name: "echo", argumentsJson: '{"text":"hi"}' }, context())).toEqual({ output: "hi", isError: false });
    expect(await exec.execute({ name: "spy", argumentsJson: "" }, context())).toEqual({ output: "done", isError: false });
    expect(seen?.sessionId).toBe("test-session");
    expect(seen?.turnId).toBe("test-turn");
    expect(seen?.workspace).toBe("/tmp/ws");
    expect(seen?.signal.aborted).toBe(false);
  });

  it("reports an unknown tool with the available ones", async () => {
    const result = await executor(tool("abc", async () => "")).execute({ name: "nope", argumentsJson: "{}" }, context());
    expect(result).toEqual({ isError: true, output: 'unknown tool "nope"; available tools: abc, echo' });
  });

  it("reports arguments that are not JSON", async () => {
    const result = await executor().execute({ name: "echo", argumentsJson: "{text:" }, context());
    expect(result.isError).toBe(true);
    expect(result.output).toMatch(/^arguments for echo are not valid JSON: /);
  });

  it.each([
    ["[1]", "an array"],
    ["null", "null"],
    ['"x"', "a string"],
    ["3", "a number"],
  ])("reports arguments %s that are not an object", async (json, kind) => {
    const result = await executor().execute({ name: "echo", argumentsJson: json }, context());
    expect(result).toEqual({ isError: true, output: `arguments for echo must be a JSON object, got ${kind}` });
  });

  it("reports schema violations readably", async () => {
    const exec = executor();
    expect(await exec.execute({ name: "echo", argumentsJson: '{"text":5}' }, context())).toEqual({
      isError: true,
      output: "invalid arguments for echo: /text must be string",
    });
    const missing = await exec.execute({ name: "echo", argumentsJson: "{}" }, context());
    expect(missing.output).toBe("invalid arguments for echo: arguments must have required property 'text'");
  });

  it("turns a throwing tool into an error result", async () => {
    const exec = executor(
      tool("boom", async () => {
        throw new Error("disk on fire");
      }),
      tool("syncboom", () => {
        throw new Error("sync failure");
      }),
    );
    expect(await exec.execute({ name: "boom", argumentsJson: "{}" }, context())).toEqual({ isError: true, output: "disk on fire" });
    expect(await exec.execute({ name: "syncboom", argumentsJson: "{}" }, context())).toEqual({ isError: true, output: "sync failure" });
  });

  it("truncates long output with a note", async () => {
    const result = await executor().execute({ name: "echo", argumentsJson: JSON.stringify({ text: "a".repeat(80) }) }, context());
    expect(result).toEqual({ isError: false, output: `${"a".repeat(50)}\n[output truncated: 30 of 80 bytes omitted]` });
  });

  it("never cuts inside a UTF-8 character", () => {
    // "é" is 2 bytes: a cut at byte 3 would split the second one.
    expect(truncate("éééé", 3)).toBe("é\n[output truncated: 6 of 8 bytes omitted]");
    expect(truncate("short", 10)).toBe("short");
  });

  it("times out a tool that waits on its signal", async () => {
    let sawAbort = false;
    const slow = tool("slow", (_args, ctx) =>
      new Promise<string>((_resolve, reject) => {
        ctx.signal.addEventListener("abort", () => {
          sawAbort = true;
          reject(ctx.signal.reason);
        });
      }),
    );
    const result = await executor(slow).execute({ name: "slow", argumentsJson: "{}" }, context(undefined, 20));
    expect(result).toEqual({ isError: true, output: 'tool "slow" timed out after 20 ms' });
    expect(sawAbort).toBe(true);
  });

  it("times out a tool that ignores its signal", async () => {
    let signal: AbortSignal | undefined;
    const stuck = tool("stuck", (_args, ctx) => {
      signal = ctx.signal;
      return new Promise<string>(() => {});
    });
    const result = await executor(stuck).execute({ name: "stuck", argumentsJson: "{}" }, context(undefined, 20));
    expect(result).toEqual({ isError: true, output: 'tool "stuck" timed out after 20 ms' });
    expect(signal?.aborted).toBe(true);
  });

  it("clears its timer and abort listener when the tool finishes", async () => {
    vi.useFakeTimers();
    const turn = new AbortController();
    const result = await executor().execute({ name: "echo", argumentsJson: '{"text":"x"}' }, context(turn.signal, 60_000));
    expect(result.isError).toBe(false);
    expect(vi.getTimerCount()).toBe(0);
    // A later cancel of the turn must not reach the finished call.
    expect(() => turn.abort()).not.toThrow();
  });

  it("rejects promptly with an AbortError when the turn is cancelled, even if the tool ignores its signal", async () => {
    let signal: AbortSignal | undefined;
    const stuck = tool("stuck", (_args, ctx) => {
      signal = ctx.signal;
      return new Promise<string>(() => {});
    });
    const turn = new AbortController();
    const started = Date.now();
    setTimeout(() => turn.abort(), 10);
    const error = await executor(stuck)
      .execute({ name: "stuck", argumentsJson: "{}" }, context(turn.signal, 10_000))
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).name).toBe("AbortError");
    expect(Date.now() - started).toBeLessThan(500);
    expect(signal?.aborted).toBe(true);
  });

  it("rejects with an AbortError, not an error result, when a tool rejects on the turn's abort", async () => {
    const polite = tool("polite", (_args, ctx) =>
      new Promise<string>((_resolve, reject) => {
        ctx.signal.addEventListener("abort", () => reject(new Error("stopped")));
      }),
    );
    const turn = new AbortController();
    setTimeout(() => turn.abort(), 5);
    await expect(executor(polite).execute({ name: "polite", argumentsJson: "{}" }, context(turn.signal))).rejects.toHaveProperty(
      "name",
      "AbortError",
    );
  });

  it("does not run a tool when the turn is already cancelled", async () => {
    const run = vi.fn(async () => "ran");
    const turn = new AbortController();
    turn.abort();
    await expect(executor(tool("t", run)).execute({ name: "t", argumentsJson: "{}" }, context(turn.signal))).rejects.toHaveProperty(
      "name",
      "AbortError",
    );
    expect(run).not.toHaveBeenCalled();
  });
});
