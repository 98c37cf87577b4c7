import { describe, expect, it } from "vitest";
import { renderMessage, summarize, SUMMARY_SYSTEM_PROMPT, summaryRequest } from "../../src/context/summary.js";
import { AgentdError } from "../../src/errors.js";
import { isContextOverflow } from "../../src/llm/overflow.js";
import { ScriptedClient } from "../../src/llm/scripted.js";
import { turnContext } from "../helpers/turn-context.js";
import { assistant, exchange, result, summary, user } from "./messages.js";

describe("the summariser's prompt", () => {
  it("asks for the user's goals, decisions, file names and open tasks, with their specifics", () => {
    for (const asked of ["goals", "Decisions", "file path", "Open tasks", "next step", "never drop a name, a path or a number"]) {
      expect(SUMMARY_SYSTEM_PROMPT).toContain(asked);
    }
  });

  it("gives the older part as a transcript with the client's instructions, and no tools", () => {
    const head = [user("please fix src/app.ts", "t1"), assistant("Looking.", "t1", ["c1"]), result("c1", "t1", "export const x = 1;")];
    const request = summaryRequest(head, { instructions: "keep the API names", maxChars: 100_000 });
    expect(request.systemPrompt).toBe(SUMMARY_SYSTEM_PROMPT);
    expect(request.tools).toEqual([]);
    expect(request.messages).toHaveLength(1);
    const text = (request.messages[0] as { text: string }).text;
    expect(text).toContain("keep the API names");
    expect(text).toContain("[user]\nplease fix src/app.ts");
    expect(text).toContain('[assistant called read_file {"path":"a.txt"}]');
    expect(text).toContain("[tool result: read_file]\nexport const x = 1;");
  });

  it("stays within its size by leaving out the oldest messages, never an earlier summary", () => {
    const head = [summary("EARLIER"), ...["t1", "t2", "t3", "t4"].flatMap(exchange)];
    const request = summaryRequest(head, { instructions: "", maxChars: 120 });
    const text = (request.messages[0] as { text: string }).text;
    expect(text).toContain("[earlier summary]\nEARLIER");
    expect(text).toContain("older messages left out");
    expect(text).toContain("t4 answer");
    expect(text).not.toContain("t1 prompt");
  });

  it("cuts long tool outputs in the middle", () => {
    const rendered = renderMessage(result("c", "t", `${"a".repeat(5000)}${"b".repeat(5000)}`));
    expect(rendered.length).toBeLessThan(4_200);
    expect(rendered).toContain("characters left out");
  });
});

describe("summarising", () => {
  it("returns the model's text, and fails on an empty answer or the model's error", async () => {
    const request = summaryRequest(exchange("t1"), { instructions: "", maxChars: 10_000 });
    const ok = new ScriptedClient({ steps: [{ text: "  the summary  ", usage: { inputTokens: 7, outputTokens: 3 } }], repeat: false });
    expect(await summarize(ok, request, turnContext())).toEqual({ summary: "the summary", usage: { inputTokens: 7, outputTokens: 3 } });
    const empty = new ScriptedClient({ steps: [{ text: "   " }], repeat: false });
    await expect(summarize(empty, request, turnContext())).rejects.toThrow("empty summary");
    const failing = new ScriptedClient({ steps: [{ error: { kind: "unavailable", message: "down" } }], repeat: false });
    await expect(summarize(failing, request, turnContext())).rejects.toThrow("down");
  });
});

describe("context overflow errors", () => {
  const error = (kind: "invalid_argument" | "resource_exhausted" | "unavailable", message: string) => new AgentdError(kind, message);
  it("are recognised in the providers' words", () => {
    expect(isContextOverflow(error("invalid_argument", "openai rejected the request (HTTP 400: This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens.)"))).toBe(true);
    expect(isContextOverflow(error("invalid_argument", "anthropic rejected the request (HTTP 400: prompt is too long: 210000 tokens > 200000 maximum)"))).toBe(true);
    expect(isContextOverflow(error("invalid_argument", "context_length_exceeded: scripted"))).toBe(true);
    expect(isContextOverflow(error("invalid_argument", "x rejected the request (HTTP 413: Payload Too Large)"))).toBe(true);
    expect(isContextOverflow(error("invalid_argument", "the input exceeds the context window of this model"))).toBe(true);
  });

  it("are not other failures", () => {
    expect(isContextOverflow(error("resource_exhausted", "openai is rate limiting or out of quota (HTTP 429: Rate limit reached for tokens per min)"))).toBe(false);
    expect(isContextOverflow(error("unavailable", "maximum context length is 10 (but the server is down)"))).toBe(false);
    expect(isContextOverflow(error("invalid_argument", "unknown model"))).toBe(false);
    expect(isContextOverflow(new Error("maximum context length"))).toBe(false);
  });
});
