import type { TurnContext } from "../agent/turn-context.js";
import { AgentdError, ERROR_KINDS, errorKindFromName, invalidArgument, type ErrorKind } from "../errors.js";
import { sleep, throwIfAborted } from "./abort.js";
import { MAX_TOKEN_COUNT } from "./usage.js";
import type { LlmChunk, LlmClient, LlmMessage, LlmRequest, LlmStopReason, LlmUsage, ModelProgress } from "./types.js";

export interface ScriptToolCall {
  /** Generated when absent: "scripted_call_<step>_<n>", from the session's step count. */
  id?: string;
  name: string;
  arguments: Record<string, unknown>;
}

export interface ScriptStep {
  /**
   * May contain {{last_user_message}}, {{system_prompt}}, {{tools}}, {{last_tool_result}},
   * {{message_count}} and {{history}}.
   */
  text?: string;
  /** Characters per text delta, default 8. */
  chunkSize?: number;
  /** Wait before each text chunk and before the tool calls. */
  delayMs?: number;
  toolCalls?: ScriptToolCall[];
  /** Default: an estimate of ceil(characters / 4) for the request and for the output. */
  usage?: LlmUsage;
  stopReason?: LlmStopReason;
  /**
   * The step streams its text, then fails with this. A message containing "context_length_exceeded"
   * is a context overflow, which the session answers by compacting and calling once more.
   */
  error?: { kind: ErrorKind; message: string };
}

export interface Script {
  steps: ScriptStep[];
  /** Start over after the last step instead of failing. */
  repeat: boolean;
  /** Scripts for subagents: a child session running the definition of that name plays these steps instead. */
  agents?: Record<string, Script>;
}

const DEFAULT_CHUNK_SIZE = 8;
/**
 * What a step's text may quote of the request it answers, so a test sees what the model was sent:
 * the last user message, the system prompt, the offered tools' names, the last tool result, how many
 * messages it was sent and all of them, one a line ("user: ...", "assistant: ...", "tool name: ...").
 */
const PLACEHOLDERS = {
  "{{last_user_message}}": lastUserMessage,
  "{{system_prompt}}": (request: LlmRequest) => request.systemPrompt,
  "{{tools}}": (request: LlmRequest) => request.tools.map((tool) => tool.name).join(", "),
  "{{last_tool_result}}": lastToolResult,
  "{{message_count}}": (request: LlmRequest) => String(request.messages.length),
  "{{history}}": (request: LlmRequest) => request.messages.map(historyLine).join("\n"),
} as const;

/** A step count kept by the client itself, for a script used outside a session. */
export function memoryProgress(): ModelProgress {
  let steps = 0;
  return { steps: () => steps, advance: () => ++steps };
}

/**
 * A fake model replaying a script, one step per stream() call. Its position is the session's
 * (`progress`), so successive turns, a restart and a reconfiguration that keeps the model all
 * continue the script where it was.
 */
export class ScriptedClient implements LlmClient {
  readonly provider = "scripted";

  constructor(
    private readonly script: Script,
    private readonly progress: ModelProgress = memoryProgress(),
  ) {}

  async *stream(request: LlmRequest, { signal }: TurnContext): AsyncIterable<LlmChunk> {
    throwIfAborted(signal);
    const { step, number } = this.nextStep();
    const text = expandText(step.text ?? "", request);
    const chunkSize = step.chunkSize ?? DEFAULT_CHUNK_SIZE;
    const delayMs = step.delayMs ?? 0;
    // Array.from splits by code point so that a chunk never cuts a surrogate pair in half.
    const characters = Array.from(text);
    for (let start = 0, n = 0; start < characters.length; start += chunkSize, n++) {
      // Without a delay, let the event loop breathe now and then so other calls are served meanwhile
      // (not before the first chunk: the turn's first event has left when the turn started).
      if (delayMs === 0 && n > 0 && n % YIELD_EVERY === 0) await new Promise((resolve) => setImmediate(resolve));
      await pause(delayMs, signal);
      yield { type: "text", delta: characters.slice(start, start + chunkSize).join("") };
    }
    if (step.error) throw new AgentdError(step.error.kind, step.error.message);
    const calls = (step.toolCalls ?? []).map((call, i) => ({
      id: call.id ?? `scripted_call_${number}_${i + 1}`,
      name: call.name,
      argumentsJson: JSON.stringify(call.arguments),
    }));
    if (calls.length > 0) await pause(delayMs, signal);
    for (const call of calls) yield { type: "tool_call", call };
    const outputChars = text.length + calls.reduce((sum, call) => sum + call.name.length + call.argumentsJson.length, 0);
    yield {
      type: "usage",
      usage: step.usage ?? { inputTokens: estimateTokens(requestChars(request)), outputTokens: estimateTokens(outputChars) },
    };
    yield { type: "done", stopReason: step.stopReason ?? (calls.length > 0 ? "tool_use" : "end_turn") };
  }

  /** The step to play and its number counted over the session's life (1-based, never reused). */
  private nextStep(): { step: ScriptStep; number: number } {
    const { steps, repeat } = this.script;
    const taken = this.progress.steps();
    if (taken >= steps.length && !repeat) {
      const count = `${steps.length} step${steps.length === 1 ? "" : "s"}`;
      throw new AgentdError("failed_precondition", `scripted model: the script has no step ${taken + 1} (it has ${count})`);
    }
    const step = steps[taken % steps.length]!;
    return { step, number: this.progress.advance() };
  }
}

/** Text chunks streamed between two turns of the event loop when a step has no delay. */
const YIELD_EVERY = 256;

/** The most text one step may expand to ({{last_user_message}} can repeat a long prompt). */
const MAX_STEP_TEXT_CHARS = 1024 * 1024;

function expandText(template: string, request: LlmRequest): string {
  let text = template;
  for (const [placeholder, valueOf] of Object.entries(PLACEHOLDERS)) {
    if (!text.includes(placeholder)) continue;
    const value = valueOf(request);
    const parts = text.split(placeholder);
    const chars = text.length + (parts.length - 1) * (value.length - placeholder.length);
    if (chars > MAX_STEP_TEXT_CHARS) {
      throw new AgentdError("resource_exhausted", `scripted model: this step's text would be ${chars} characters; the limit is ${MAX_STEP_TEXT_CHARS}`);
    }
    text = parts.join(value);
  }
  return text;
}

async function pause(ms: number, signal: AbortSignal): Promise<void> {
  if (ms > 0) await sleep(ms, signal);
  else throwIfAborted(signal);
}

function lastUserMessage(request: LlmRequest): string {
  for (let i = request.messages.length - 1; i >= 0; i--) {
    const message = request.messages[i]!;
    if (message.role === "user") return message.text;
  }
  return "";
}

function historyLine(message: LlmMessage): string {
  if (message.role === "tool") return `tool ${message.name}: ${message.output}`;
  if (message.role === "assistant") {
    const calls = message.toolCalls.map((call) => ` [calls ${call.name}]`).join("");
    return `assistant: ${message.text}${calls}`;
  }
  return `user: ${message.text}`;
}

function lastToolResult(request: LlmRequest): string {
  for (let i = request.messages.length - 1; i >= 0; i--) {
    const message = request.messages[i]!;
    if (message.role === "tool") return message.output;
  }
  return "";
}

/**
 * The characters of each history counted so far: a session hands the same list to every call,
 * extended with the new messages, so only those are counted (the estimate stays O(new messages)).
 */
const counted = new WeakMap<readonly LlmMessage[], { upTo: number; chars: number }>();

function requestChars(request: LlmRequest): number {
  const { messages } = request;
  let known = counted.get(messages);
  if (!known || known.upTo > messages.length) counted.set(messages, (known = { upTo: 0, chars: 0 }));
  for (; known.upTo < messages.length; known.upTo++) known.chars += messageChars(messages[known.upTo]!);
  return request.systemPrompt.length + known.chars;
}

function messageChars(message: LlmMessage): number {
  if (message.role === "user") return message.text.length;
  if (message.role === "tool") return message.output.length;
  return message.text.length + message.toolCalls.reduce((sum, call) => sum + call.name.length + call.argumentsJson.length, 0);
}

const estimateTokens = (chars: number) => Math.ceil(chars / 4);

// ---------------------------------------------------------------------------------------------
// Validation. Scripts are written by hand, so every problem names the field it is about.

const STEP_FIELDS = ["text", "chunkSize", "delayMs", "toolCalls", "usage", "stopReason", "error"];
const STOP_REASONS: LlmStopReason[] = ["end_turn", "tool_use", "max_tokens"];
/** Scripts name errors the way clients see them, as status names such as "UNAVAILABLE". */
const STATUS_NAMES = ERROR_KINDS.map((kind) => kind.toUpperCase());

class ScriptProblem extends Error {}

/** Parses and validates a script; throws AgentdError INVALID_ARGUMENT naming the bad field. */
export function parseScript(text: string, origin: string): Script {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    // The parser's message quotes the text; only the position is repeated, so no file leaks through it.
    const position = /position (\d+)/.exec((error as Error).message)?.[1];
    throw invalidArgument(`scripted model: script ${origin} is not valid JSON${position === undefined ? "" : ` (at position ${position})`}`);
  }
  try {
    return toScript(value);
  } catch (error) {
    if (error instanceof ScriptProblem) throw invalidArgument(`scripted model: script ${origin} is invalid: ${error.message}`);
    throw error;
  }
}

function toScript(value: unknown, where = "the script"): Script {
  const root = object(value, where);
  const prefix = where === "the script" ? "" : `${where}.`;
  noUnknownFields(root, where === "the script" ? ["steps", "repeat", "agents"] : ["steps", "repeat"], where);
  if (!Array.isArray(root.steps) || root.steps.length === 0) throw new ScriptProblem(`${prefix}steps must be a non-empty array`);
  if (root.repeat !== undefined && typeof root.repeat !== "boolean") throw new ScriptProblem(`${prefix}repeat must be true or false`);
  const script: Script = { steps: root.steps.map((step, i) => toStep(step, `${prefix}steps[${i}]`)), repeat: root.repeat === true };
  if (root.agents !== undefined) {
    const agents = object(root.agents, "agents");
    script.agents = Object.fromEntries(Object.entries(agents).map(([name, sub]) => [name, toScript(sub, `agents.${name}`)]));
  }
  return script;
}

function toStep(value: unknown, where: string): ScriptStep {
  const raw = object(value, where);
  noUnknownFields(raw, STEP_FIELDS, where);
  const step: ScriptStep = {};
  if (raw.text !== undefined) {
    if (typeof raw.text !== "string") throw new ScriptProblem(`${where}.text must be a string`);
    step.text = raw.text;
  }
  if (raw.chunkSize !== undefined) step.chunkSize = integer(raw.chunkSize, `${where}.chunkSize`, 1);
  if (raw.delayMs !== undefined) step.delayMs = integer(raw.delayMs, `${where}.delayMs`, 0);
  if (raw.toolCalls !== undefined) {
    if (!Array.isArray(raw.toolCalls)) throw new ScriptProblem(`${where}.toolCalls must be an array`);
    step.toolCalls = raw.toolCalls.map((call, i) => toToolCall(call, `${where}.toolCalls[${i}]`));
  }
  if (raw.usage !== undefined) {
    const usage = object(raw.usage, `${where}.usage`);
    noUnknownFields(usage, ["inputTokens", "outputTokens"], `${where}.usage`);
    step.usage = {
      inputTokens: integer(usage.inputTokens, `${where}.usage.inputTokens`, 0, MAX_TOKEN_COUNT),
      outputTokens: integer(usage.outputTokens, `${where}.usage.outputTokens`, 0, MAX_TOKEN_COUNT),
    };
  }
  if (raw.stopReason !== undefined) {
    if (!STOP_REASONS.includes(raw.stopReason as LlmStopReason)) {
      throw new ScriptProblem(`${where}.stopReason must be one of ${STOP_REASONS.map((r) => `"${r}"`).join(", ")}`);
    }
    step.stopReason = raw.stopReason as LlmStopReason;
  }
  if (raw.error !== undefined) {
    const error = object(raw.error, `${where}.error`);
    noUnknownFields(error, ["code", "message"], `${where}.error`);
    const kind = typeof error.code === "string" ? errorKindFromName(error.code) : undefined;
    if (kind === undefined) {
      throw new ScriptProblem(`${where}.error.code must be a gRPC status name such as "UNAVAILABLE" (one of ${STATUS_NAMES.join(", ")})`);
    }
    step.error = { kind, message: nonEmptyString(error.message, `${where}.error.message`) };
    // The error is thrown before tool calls would be emitted, so both together is a mistake.
    if (step.toolCalls?.length) throw new ScriptProblem(`${where} cannot have both toolCalls and error`);
  }
  return step;
}

function toToolCall(value: unknown, where: string): ScriptToolCall {
  const raw = object(value, where);
  noUnknownFields(raw, ["id", "name", "arguments"], where);
  const call: ScriptToolCall = {
    name: nonEmptyString(raw.name, `${where}.name`),
    arguments: raw.arguments === undefined ? {} : object(raw.arguments, `${where}.arguments`),
  };
  if (raw.id !== undefined) call.id = nonEmptyString(raw.id, `${where}.id`);
  return call;
}

function object(value: unknown, where: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new ScriptProblem(`${where} must be an object`);
  return value as Record<string, unknown>;
}

function noUnknownFields(value: Record<string, unknown>, known: string[], where: string): void {
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) {
      const name = where === "the script" ? key : `${where}.${key}`;
      throw new ScriptProblem(`${name} is not a known field (known: ${known.join(", ")})`);
    }
  }
}

function nonEmptyString(value: unknown, where: string): string {
  if (typeof value !== "string" || value.trim() === "") throw new ScriptProblem(`${where} must be a non-empty string`);
  return value;
}

function integer(value: unknown, where: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new ScriptProblem(`${where} must be an integer ${max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`}`);
  }
  return value;
}
