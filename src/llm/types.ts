import type { TurnContext } from "../agent/turn-context.js";

/**
 * The model-facing side of the runtime. Every provider turns a conversation into a stream of chunks;
 * the agent loop never sees a provider's wire format.
 */

export interface LlmToolCall {
  id: string;
  name: string;
  /** The arguments as a JSON object text, exactly as the model produced them. */
  argumentsJson: string;
}

export type LlmMessage =
  | { role: "user"; text: string }
  | { role: "assistant"; text: string; toolCalls: LlmToolCall[] }
  | { role: "tool"; callId: string; name: string; output: string; isError: boolean };

export interface LlmToolDefinition {
  name: string;
  description: string;
  /** JSON schema of the arguments object. */
  inputSchema: Record<string, unknown>;
}

export interface LlmRequest {
  systemPrompt: string;
  /** Read-only: the session keeps this list between calls and extends it. */
  messages: readonly LlmMessage[];
  tools: LlmToolDefinition[];
  temperature?: number;
  maxOutputTokens?: number;
}

export interface LlmUsage {
  inputTokens: number;
  outputTokens: number;
}

export type LlmStopReason = "end_turn" | "tool_use" | "max_tokens";

/** What a provider streams back. Exactly one `done` chunk ends a successful stream. */
export type LlmChunk =
  | { type: "text"; delta: string }
  | { type: "tool_call"; call: LlmToolCall }
  | { type: "usage"; usage: LlmUsage }
  | { type: "done"; stopReason: LlmStopReason };

export interface LlmClient {
  readonly provider: string;
  /**
   * Streams one model response. Aborting `context.signal` must stop the underlying request (HTTP connection
   * closed, timers cleared) and make the iterator throw an AbortError promptly. Failures are
   * AgentdErrors whose kind is what the client should see: `unavailable` (network, 5xx),
   * `unauthenticated`, `invalid_argument`, ...
   */
  stream(request: LlmRequest, context: TurnContext): AsyncIterable<LlmChunk>;
}

/**
 * Where a stateful model keeps its position between calls, owned by the session so it survives
 * restarts and reconfiguration (the scripted model's step count).
 */
export interface ModelProgress {
  /** Calls answered so far. */
  steps(): number;
  /** Counts one more call and returns the new count. */
  advance(): number;
}

/** Resolved model settings for one call; the API key is never stored anywhere. */
export interface ModelSettings {
  provider: string;
  model: string;
  baseUrl: string;
  apiKeyEnv: string;
  temperature?: number;
  maxOutputTokens?: number;
  scriptPath: string;
  scriptJson: string;
  /** The model's context window in tokens, when the session says it; otherwise a table of known models decides. */
  contextWindow?: number;
}

