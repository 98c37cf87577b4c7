import type { TurnContext } from "../agent/turn-context.js";
import type Anthropic from "@anthropic-ai/sdk";
import type { APIError } from "@anthropic-ai/sdk";
import { childSignal } from "./abort.js";
import {
  endOfStream,
  argumentsObjectOrEmpty,
  toProviderError,
  type ProviderClientOptions,
  type ProviderContext,
  type SdkErrors,
} from "./provider.js";
import type { LlmChunk, LlmClient, LlmMessage, LlmRequest, LlmStopReason, LlmToolCall, LlmUsage } from "./types.js";

type MessageParam = Anthropic.MessageParam;
type ContentBlockParam = Anthropic.ContentBlockParam;
type CreateParams = Anthropic.MessageCreateParamsStreaming;

export const ANTHROPIC_DEFAULT_BASE_URL = "https://api.anthropic.com";
/** The Messages API requires max_tokens; this is used when neither the request nor the settings set it. */
export const ANTHROPIC_DEFAULT_MAX_TOKENS = 4096;

/** The SDK, loaded when a client first calls the model: a server that never does starts without it. */
let loading: Promise<typeof import("@anthropic-ai/sdk")> | null = null;
const sdkModule = () => (loading ??= import("@anthropic-ai/sdk"));

/** Claude through the Messages API, streamed. */
export class AnthropicClient implements LlmClient {
  readonly provider = "anthropic";
  private sdk: Promise<Anthropic> | null = null;
  private readonly context: ProviderContext;

  constructor(private readonly options: ProviderClientOptions) {
    const baseUrl = options.baseUrl || ANTHROPIC_DEFAULT_BASE_URL;
    this.context = {
      provider: this.provider,
      model: options.model,
      baseUrl,
      apiKey: options.apiKey,
      apiKeyEnv: options.apiKeyEnv || "ANTHROPIC_API_KEY",
    };
  }

  private client(): Promise<Anthropic> {
    const { apiKey, maxRetries } = this.options;
    // An explicit key and base URL keep ANTHROPIC_AUTH_TOKEN / ANTHROPIC_BASE_URL from taking effect.
    return (this.sdk ??= sdkModule().then((sdk) => new sdk.default({ apiKey, baseURL: this.context.baseUrl, maxRetries: maxRetries ?? 2 })));
  }

  async *stream(request: LlmRequest, { signal }: TurnContext): AsyncIterable<LlmChunk> {
    // Tool inputs stream as JSON fragments per content block index.
    const toolBlocks = new Map<number, { id: string; name: string; json: string; initial: unknown }>();
    const usage: LlmUsage = { inputTokens: 0, outputTokens: 0 };
    let sawUsage = false;
    let stopReason: string | null = null;
    const child = childSignal(signal);
    try {
      const sdk = await this.client();
      const stream = await sdk.messages.create(this.params(request), { signal: child.signal });
      for await (const event of stream) {
        switch (event.type) {
          case "message_start": {
            const u = event.message.usage;
            // Cached prompt tokens are still prompt tokens; report the whole input.
            usage.inputTokens = u.input_tokens + (u.cache_creation_input_tokens ?? 0) + (u.cache_read_input_tokens ?? 0);
            usage.outputTokens = u.output_tokens;
            sawUsage = true;
            break;
          }
          case "content_block_start": {
            const block = event.content_block;
            if (block.type === "text" && block.text) yield { type: "text", delta: block.text };
            if (block.type === "tool_use") {
              toolBlocks.set(event.index, { id: block.id, name: block.name, json: "", initial: block.input });
            }
            break;
          }
          case "content_block_delta": {
            const delta = event.delta;
            if (delta.type === "text_delta" && delta.text) yield { type: "text", delta: delta.text };
            if (delta.type === "input_json_delta") {
              const block = toolBlocks.get(event.index);
              if (block) block.json += delta.partial_json;
            }
            break;
          }
          case "message_delta":
            // Usage in message_delta is cumulative for the whole message.
            usage.outputTokens = event.usage.output_tokens;
            if (typeof event.usage.input_tokens === "number") {
              usage.inputTokens =
                event.usage.input_tokens +
                (event.usage.cache_creation_input_tokens ?? 0) +
                (event.usage.cache_read_input_tokens ?? 0);
            }
            sawUsage = true;
            if (event.delta.stop_reason) stopReason = event.delta.stop_reason;
            break;
          default:
            break;
        }
      }
    } catch (error) {
      throw toProviderError(error, signal, this.context, errorsOf(await sdkModule()));
    } finally {
      child.release();
    }
    const toolCalls: LlmToolCall[] = [...toolBlocks.entries()]
      .sort(([a], [b]) => a - b)
      .map(([, block]) => ({ id: block.id, name: block.name, argumentsJson: block.json || JSON.stringify(block.initial ?? {}) }));
    yield* endOfStream(signal, toolCalls, sawUsage ? usage : undefined, stopReasonOf(stopReason));
  }

  private params(request: LlmRequest): CreateParams {
    // No temperature: the API version this SDK sends (2026-10-21) rejects sampling parameters with a 400.
    const params: CreateParams = {
      model: this.options.model,
      max_tokens: request.maxOutputTokens ?? this.options.maxOutputTokens ?? ANTHROPIC_DEFAULT_MAX_TOKENS,
      messages: toMessages(request.messages),
      stream: true,
    };
    if (request.systemPrompt !== "") params.system = request.systemPrompt;
    if (request.tools.length > 0) {
      params.tools = request.tools.map((tool) => ({
        name: tool.name,
        description: tool.description,
        input_schema: { ...tool.inputSchema, type: "object" },
      }));
    }
    return params;
  }
}

const errorsOf = (sdk: typeof import("@anthropic-ai/sdk")): SdkErrors => ({
  UserAbort: sdk.APIUserAbortError,
  Timeout: sdk.APIConnectionTimeoutError,
  Connection: sdk.APIConnectionError,
  Api: sdk.APIError,
  describeApiError: (error) => {
    const api = error as APIError;
    return { detail: api.apiMessage ?? api.message, type: api.type ?? undefined };
  },
});

/**
 * Maps the conversation to alternating user/assistant messages. Consecutive messages of one role
 * are merged: the API wants all results of one round of tool calls in a single user message.
 */
export function toMessages(messages: readonly LlmMessage[]): MessageParam[] {
  const result: { role: "user" | "assistant"; content: ContentBlockParam[] }[] = [];
  for (const message of messages) {
    const { role, blocks } = toBlocks(message);
    // The API rejects empty text blocks and messages with no content.
    if (blocks.length === 0) continue;
    const last = result.at(-1);
    if (last && last.role === role) last.content.push(...blocks);
    else result.push({ role, content: blocks });
  }
  return result;
}

function toBlocks(message: LlmMessage): { role: "user" | "assistant"; blocks: ContentBlockParam[] } {
  switch (message.role) {
    case "user":
      return { role: "user", blocks: message.text === "" ? [] : [{ type: "text", text: message.text }] };
    case "assistant": {
      const blocks: ContentBlockParam[] = message.text === "" ? [] : [{ type: "text", text: message.text }];
      for (const call of message.toolCalls) {
        blocks.push({ type: "tool_use", id: call.id, name: call.name, input: argumentsObjectOrEmpty(call.argumentsJson) });
      }
      return { role: "assistant", blocks };
    }
    case "tool":
      return {
        role: "user",
        blocks: [
          {
            type: "tool_result",
            tool_use_id: message.callId,
            ...(message.output !== "" && { content: message.output }),
            ...(message.isError && { is_error: true }),
          },
        ],
      };
  }
}

function stopReasonOf(stopReason: string | null): LlmStopReason {
  if (stopReason === "tool_use") return "tool_use";
  if (stopReason === "max_tokens" || stopReason === "model_context_window_exceeded") return "max_tokens";
  return "end_turn";
}
