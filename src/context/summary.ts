import type { TurnContext } from "../agent/turn-context.js";
import { AgentdError } from "../errors.js";
import type { LlmClient, LlmRequest, LlmUsage } from "../llm/types.js";
import { tokenCount } from "../llm/usage.js";
import type { Message } from "../session/types.js";

/**
 * The summariser's instructions. A summary replaces the older part of the conversation for good (the
 * model never sees that part again), so it must carry everything the work depends on, in specifics:
 * the test in test/context checks that this prompt asks for goals, decisions, file names and open tasks.
 */
export const SUMMARY_SYSTEM_PROMPT = `You are compacting the conversation of an AI agent that works with tools for a user. The agent will continue the work with only your summary and the most recent messages: the older messages you are given will be removed from its context.

Write a summary that keeps everything needed to continue, with the specifics, under these headings:

1. User goals: what the user asked for and wants in the end, including constraints, preferences and corrections, in the user's own words where the wording matters.
2. Decisions: what was decided or agreed, and approaches tried and rejected, with the reasons.
3. Files and artifacts: every file path, directory, command, URL, identifier, function or symbol name that was read, created, changed or discussed, and what was done to each.
4. Findings: tool results that matter (errors and their messages, test outcomes, values found).
5. Open tasks: what is still to do, unanswered questions, and the next step the agent was about to take.

Be concise, but never drop a name, a path or a number that the work may need. Do not invent anything. Write facts, not a narrative; no greeting, no commentary about summarising. If an earlier summary is part of the input, merge it in: nothing it holds may be lost.`;

/** Each message's text in the summariser's input is cut to this many characters (its head and tail kept). */
const MESSAGE_CHARS = 16_000;
const TOOL_OUTPUT_CHARS = 4_000;
/** The longest summary kept; anything longer is cut with a note. */
export const MAX_SUMMARY_CHARS = 64 * 1024;

function clip(text: string, max: number): string {
  if (text.length <= max) return text;
  const half = Math.floor(max / 2);
  return `${text.slice(0, half)}\n[… ${text.length - max} characters left out …]\n${text.slice(-half)}`;
}

/** One message as a line of the transcript the summariser reads. */
export function renderMessage(message: Message): string {
  if (message.kind === "summary") return `[earlier summary]\n${message.text}`;
  if (message.role === "tool" && message.toolResult) {
    const { name, output, isError } = message.toolResult;
    return `[tool result${isError ? " (error)" : ""}: ${name}]\n${clip(output, TOOL_OUTPUT_CHARS)}`;
  }
  if (message.role === "assistant") {
    const calls = message.toolCalls.map((call) => `[assistant called ${call.name} ${clip(call.argumentsJson, TOOL_OUTPUT_CHARS)}]`);
    return [message.text === "" ? "" : `[assistant]\n${clip(message.text, MESSAGE_CHARS)}`, ...calls].filter((part) => part !== "").join("\n");
  }
  return `[user]\n${clip(message.text, MESSAGE_CHARS)}`;
}

/**
 * The summariser's request: the instructions as the system prompt, and the older part of the
 * conversation (with the earlier summary, if any, first) as one user message, kept under
 * `maxChars` by leaving out its oldest messages (never the earlier summary). No tools are offered.
 */
export function summaryRequest(head: readonly Message[], options: { instructions: string; maxChars: number; maxOutputTokens?: number }): LlmRequest {
  const rendered = head.map(renderMessage);
  const keepFirst = head[0]?.kind === "summary" ? 1 : 0;
  let total = rendered.reduce((sum, text) => sum + text.length + 2, 0);
  let omitted = 0;
  while (total > options.maxChars && rendered.length > keepFirst + 1) {
    total -= rendered[keepFirst]!.length + 2;
    rendered.splice(keepFirst, 1);
    omitted++;
  }
  if (omitted > 0) rendered.splice(keepFirst, 0, `[… ${omitted} older messages left out to fit the summariser's input …]`);
  const extra = options.instructions.trim() === "" ? "" : `\n\nThe user adds these instructions for the summary:\n${options.instructions.trim()}`;
  const text = `Summarise this conversation so far, following your instructions.${extra}\n\n<conversation>\n${rendered.join("\n\n")}\n</conversation>`;
  return { systemPrompt: SUMMARY_SYSTEM_PROMPT, messages: [{ role: "user", text }], tools: [], maxOutputTokens: options.maxOutputTokens };
}

/** Asks the model for the summary; throws when it fails or answers nothing. */
export async function summarize(llm: LlmClient, request: LlmRequest, context: TurnContext): Promise<{ summary: string; usage: LlmUsage }> {
  const pieces: string[] = [];
  const usage: LlmUsage = { inputTokens: 0, outputTokens: 0 };
  let chars = 0;
  for await (const chunk of llm.stream(request, context)) {
    if (chunk.type === "text" && chars < MAX_SUMMARY_CHARS) {
      pieces.push(chunk.delta);
      chars += chunk.delta.length;
    } else if (chunk.type === "usage") {
      usage.inputTokens = tokenCount(usage.inputTokens + tokenCount(chunk.usage.inputTokens));
      usage.outputTokens = tokenCount(usage.outputTokens + tokenCount(chunk.usage.outputTokens));
    }
  }
  context.signal.throwIfAborted();
  let summary = pieces.join("").trim();
  if (summary === "") throw new AgentdError("unavailable", "the model answered with an empty summary");
  if (summary.length > MAX_SUMMARY_CHARS) summary = `${summary.slice(0, MAX_SUMMARY_CHARS)}\n[summary cut at ${MAX_SUMMARY_CHARS} characters]`;
  return { summary, usage };
}
