import { abortError } from "./abort.js";
import { AgentdError, type ErrorKind } from "../errors.js";
import { type LlmChunk, type LlmStopReason, type LlmToolCall, type LlmUsage } from "./types.js";

/** What an HTTP provider client is built with. The key lives only in the SDK client instance. */
export interface ProviderClientOptions {
  apiKey: string;
  model: string;
  /** Empty or absent: the provider's public endpoint. */
  baseUrl?: string;
  /** Retries of the SDK for connection errors, 408/409/429 and 5xx. Default 2. */
  maxRetries?: number;
  /** Used when the request does not set them. */
  temperature?: number;
  maxOutputTokens?: number;
  /** Where the key came from, for error messages, such as "OPENAI_API_KEY". */
  apiKeyEnv?: string;
}

/** A provider failure reduced to what the error mapping needs, independent of the SDK. */
export interface ProviderFailure {
  kind: "http" | "stream" | "connection" | "timeout" | "other";
  /** HTTP status, for kind "http". */
  status?: number;
  /** Error type reported by the server (such as "overloaded_error"), when any. */
  type?: string;
  /** The server's or the transport's own explanation. */
  detail: string;
}

export interface ProviderContext {
  provider: string;
  model: string;
  baseUrl: string;
  apiKey: string;
  apiKeyEnv: string;
}

type ErrorClass<T extends Error = Error> = abstract new (...args: never[]) => T;

/** The error classes of one provider SDK; both official SDKs share this hierarchy. */
export interface SdkErrors {
  UserAbort: ErrorClass;
  /** Checked before Connection: a timeout is a connection error too. */
  Timeout: ErrorClass;
  Connection: ErrorClass;
  Api: ErrorClass<Error & { status: number | undefined }>;
  /** The server's own explanation and error type carried by an Api error. */
  describeApiError(error: Error & { status: number | undefined }): { detail: string; type?: string };
}

/** Any error of a provider call as what the agent loop expects: an AbortError, or an AgentdError. */
export function toProviderError(error: unknown, signal: AbortSignal, ctx: ProviderContext, sdk: SdkErrors): Error {
  if (signal.aborted || error instanceof sdk.UserAbort) return abortError(signal);
  return providerError(ctx, failureOf(error, sdk), error);
}

function failureOf(error: unknown, sdk: SdkErrors): ProviderFailure {
  if (error instanceof sdk.Timeout) return { kind: "timeout", detail: error.message };
  if (error instanceof sdk.Connection) return { kind: "connection", detail: rootCauseMessage(error) };
  if (error instanceof sdk.Api) {
    const { detail, type } = sdk.describeApiError(error);
    return error.status === undefined ? { kind: "stream", type, detail } : { kind: "http", status: error.status, detail };
  }
  return { kind: "other", detail: rootCauseMessage(error) };
}

/**
 * The chunks that end every provider stream: the SDKs end the iteration quietly when aborted, but the
 * contract is to throw; then the complete tool calls, the usage, and `done`.
 */
export function* endOfStream(
  signal: AbortSignal,
  toolCalls: LlmToolCall[],
  usage: LlmUsage | undefined,
  stopReason: LlmStopReason,
): Generator<LlmChunk> {
  if (signal.aborted) throw abortError(signal);
  for (const call of toolCalls) yield { type: "tool_call", call };
  if (usage) yield { type: "usage", usage };
  yield { type: "done", stopReason: toolCalls.length > 0 ? "tool_use" : stopReason };
}

/**
 * Turns a failure into an AgentdError whose kind is what the client sees and whose message says what
 * to do about it. The API key is scrubbed from the message, whatever the server echoed.
 */
export function providerError(ctx: ProviderContext, failure: ProviderFailure, cause?: unknown): AgentdError {
  const { kind, message } = describe(ctx, failure);
  return new AgentdError(kind, redact(message, ctx.apiKey), { cause });
}

type Described = { kind: ErrorKind; message: string };

const MAX_DETAIL_CHARS = 1000;

function describe(ctx: ProviderContext, failure: ProviderFailure): Described {
  const p = ctx.provider;
  // An endpoint's error body can be anything, megabytes included: only its start is repeated.
  const full = failure.detail.trim() || "no details";
  const detail = full.length > MAX_DETAIL_CHARS ? `${full.slice(0, MAX_DETAIL_CHARS)}…` : full;
  switch (failure.kind) {
    case "connection":
      return {
        kind: "unavailable",
        message: `cannot reach ${p} at ${ctx.baseUrl} (${detail}); check the base URL and that the server is running`,
      };
    case "timeout":
      return { kind: "unavailable", message: `${p} at ${ctx.baseUrl} did not answer in time; retry later` };
    case "stream": {
      // An error event inside a 200 stream: only the server's error type says what went wrong.
      const kind = STREAM_ERROR_KINDS[failure.type ?? ""] ?? "unavailable";
      const what = failure.type ? `${failure.type}: ${detail}` : detail;
      return { kind, message: `${p} failed while streaming its answer (${what}); retry later` };
    }
    case "other":
      return { kind: "unavailable", message: `the connection to ${p} failed while streaming (${detail}); retry later` };
    case "http":
      return describeStatus(ctx, failure.status ?? 0, detail);
  }
}

function describeStatus(ctx: ProviderContext, status: number, detail: string): Described {
  const p = ctx.provider;
  const http = `HTTP ${status}: ${detail}`;
  if (status === 401) {
    return {
      kind: "unauthenticated",
      message: `${p} rejected the API key (${http}); check ${ctx.apiKeyEnv} in the server's environment or the api_key passed with the request`,
    };
  }
  if (status === 403) {
    return {
      kind: "permission_denied",
      message: `${p} refused access (${http}); check that the API key's account may use model "${ctx.model}"`,
    };
  }
  if (status === 404) {
    return {
      kind: "invalid_argument",
      message: `${p} does not know this model or endpoint (${http}); check the model name "${ctx.model}" and the base URL ${ctx.baseUrl}`,
    };
  }
  if (status === 429 || status === 402) {
    return {
      kind: "resource_exhausted",
      message: `${p} is rate limiting or out of quota (${http}); retry later or check the account's limits and billing`,
    };
  }
  if (status >= 500 || status === 408 || status === 409) {
    return { kind: "unavailable", message: `${p} is unavailable (${http}); retry later` };
  }
  // 400, 413, 422 and the rest of 4xx: something in what we sent.
  return {
    kind: "invalid_argument",
    message: `${p} rejected the request (${http}); check the model settings (model "${ctx.model}"), the tool definitions and the conversation's size`,
  };
}

/** Server error types (Anthropic's names; OpenAI's in-stream errors have no stable type). */
const STREAM_ERROR_KINDS: Record<string, ErrorKind> = {
  invalid_request_error: "invalid_argument",
  authentication_error: "unauthenticated",
  permission_error: "permission_denied",
  not_found_error: "invalid_argument",
  rate_limit_error: "resource_exhausted",
  overloaded_error: "unavailable",
  api_error: "unavailable",
};

/** Removes the key itself and anything shaped like a secret key ("sk-..."), even a masked one. */
export function redact(text: string, apiKey: string): string {
  let result = apiKey.length >= 4 ? text.split(apiKey).join("[redacted]") : text;
  result = result.replace(/\bsk-[A-Za-z0-9_*.-]{4,}/g, "[redacted]");
  return result;
}

/** The innermost cause's message, where transport errors keep the useful part ("ECONNREFUSED ..."). */
export function rootCauseMessage(error: unknown): string {
  let current: unknown = error;
  let message = error instanceof Error ? error.message : String(error);
  for (let depth = 0; depth < 5 && current instanceof Error && current.cause !== undefined; depth++) {
    current = current.cause;
    if (current instanceof Error && current.message) message = current.message;
  }
  return message;
}

/** Text of an object's string `message` field, if it has one. */
export function messageField(value: unknown): string | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const message = (value as { message?: unknown }).message;
  return typeof message === "string" ? message : undefined;
}

/**
 * The arguments text as an object, for APIs that take tool inputs as JSON values. Lenient: broken
 * JSON becomes {} (the tool already answered the model with an error for it).
 */
export function argumentsObjectOrEmpty(argumentsJson: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(argumentsJson || "{}");
    if (typeof value === "object" && value !== null && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch {
    // A model may have produced broken JSON; the tool already answered with an error for it.
  }
  return {};
}
