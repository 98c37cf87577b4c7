import type { TurnContext } from "../agent/turn-context.js";
import { errorMessage } from "../errors.js";
import type { Tool, ToolContext, ToolOutput, ToolReturn } from "./types.js";

/** The tools a call may name: a registry, or a session's view of one. */
export interface ToolLookup {
  get(name: string): Tool | undefined;
  /** Readable problems with the arguments; empty when valid. */
  validate(name: string, args: unknown): string[];
  list(): Tool[];
}

export interface ToolCallRequest {
  name: string;
  /** The arguments as the model produced them: a JSON object text. */
  argumentsJson: string;
}

/** The turn's context (aborting its signal cancels the call: execute rejects with an AbortError), plus where and how long. */
export interface ToolExecutionContext extends TurnContext {
  workspace: string;
  /** Per-call time limit; 0 or less means none. */
  timeoutMs: number;
}

export interface ToolExecutorOptions {
  /** Longer outputs are cut to this many UTF-8 bytes (plus a note), to protect the context window. */
  maxOutputBytes?: number;
}

const DEFAULT_MAX_OUTPUT_BYTES = 100_000;

const failure = (output: string): ToolOutput => ({ output, isError: true });

/**
 * Runs the tool calls a model makes. Every problem the model can act on (unknown tool, bad
 * arguments, tool failure, timeout) becomes an is_error result it reads; only a cancelled turn
 * surfaces as a rejection, an AbortError, so the agent loop can tell the two apart.
 */
export class ToolExecutor {
  private readonly maxOutputBytes: number;

  constructor(
    private readonly registry: ToolLookup,
    options: ToolExecutorOptions = {},
  ) {
    this.maxOutputBytes = options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES;
  }

  async execute(call: ToolCallRequest, context: ToolExecutionContext): Promise<ToolOutput> {
    if (context.signal.aborted) throw cancelled(call.name, context.signal);
    const tool = this.registry.get(call.name);
    if (!tool) return failure(this.unknownTool(call.name));

    const parsed = parseToolArguments(call.name, call.argumentsJson);
    if (typeof parsed === "string") return failure(parsed);
    const problems = this.registry.validate(call.name, parsed);
    if (problems.length > 0) return failure(`invalid arguments for ${call.name}: ${problems.join("; ")}`);

    const timeoutMs = tool.timeoutMs ?? context.timeoutMs;
    const result = await this.run(call.name, { ...context, timeoutMs }, (toolContext) => tool.execute(parsed, toolContext));
    return { ...result, output: truncate(result.output, this.maxOutputBytes) };
  }

  private unknownTool(name: string): string {
    const names = this.registry.list().map((tool) => tool.name);
    const available = names.length > 0 ? `available tools: ${names.join(", ")}` : "no tools are available";
    return `unknown tool "${name}"; ${available}`;
  }

  /**
   * Races the tool against the turn's abort and the timeout, so a tool that ignores its signal
   * cannot hold the turn. The tool still sees both through the signal it is given.
   */
  private async run(
    name: string,
    context: ToolExecutionContext,
    start: (context: ToolContext) => Promise<string | ToolReturn>,
  ): Promise<ToolOutput> {
    const { signal, timeoutMs } = context;
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;

    // Settle the race before aborting the tool's signal, so a tool that rejects on abort cannot win it.
    const interrupted = new Promise<ToolOutput>((resolve, reject) => {
      onAbort = () => {
        reject(cancelled(name, signal));
        controller.abort(signal.reason);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      if (timeoutMs > 0) {
        timer = setTimeout(() => {
          const message = `tool "${name}" timed out after ${timeoutMs} ms`;
          resolve(failure(message));
          controller.abort(new DOMException(message, "TimeoutError"));
        }, timeoutMs);
      }
    });

    // The async wrapper turns a synchronous throw into a rejection like any other failure.
    const { sessionId, turnId, logger, workspace } = context;
    const completed = (async () => start({ sessionId, turnId, logger, workspace, signal: controller.signal }))().then(
      (returned): ToolOutput =>
        typeof returned === "string"
          ? { output: returned, isError: false }
          : { output: String(returned.output), isError: returned.isError === true, ...(returned.usage ? { usage: returned.usage } : {}) },
      (error: unknown): ToolOutput => failure(errorMessage(error) || `tool "${name}" failed`),
    );

    try {
      return await Promise.race([completed, interrupted]);
    } finally {
      clearTimeout(timer);
      if (onAbort) signal.removeEventListener("abort", onAbort);
    }
  }
}

/** Strict: the parsed arguments object, or the message telling the model what is wrong with them. */
function parseToolArguments(name: string, json: string): Record<string, unknown> | string {
  // Some models send an empty string for a tool without parameters.
  if (json.trim() === "") return {};
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (error) {
    return `arguments for ${name} are not valid JSON: ${errorMessage(error)}`;
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    const kind = value === null ? "null" : Array.isArray(value) ? "an array" : `a ${typeof value}`;
    return `arguments for ${name} must be a JSON object, got ${kind}`;
  }
  return value as Record<string, unknown>;
}

function cancelled(name: string, signal: AbortSignal): Error {
  const error = new Error(`tool "${name}" was cancelled`, { cause: signal.reason });
  error.name = "AbortError";
  return error;
}

/** Cuts `text` to at most `maxBytes` UTF-8 bytes, never inside a character, and says how much went. */
export function truncate(text: string, maxBytes: number): string {
  const bytes = Buffer.from(text, "utf8");
  if (bytes.length <= maxBytes) return text;
  let cut = Math.max(0, maxBytes);
  // Back up over continuation bytes (10xxxxxx) to the start of the character being split.
  while (cut > 0 && (bytes[cut] & 0xc0) === 0x80) cut--;
  const omitted = bytes.length - cut;
  return `${bytes.subarray(0, cut).toString("utf8")}\n[output truncated: ${omitted} of ${bytes.length} bytes omitted]`;
}
