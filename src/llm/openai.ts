import type { TurnContext } from "../agent/turn-context.js";
import type OpenAI from "openai";
import type { APIError } from "openai";
import { childSignal } from "./abort.js";
import {
  endOfStream,
  messageField,
  toProviderError,
  type ProviderClientOptions,
  type ProviderContext,
  type SdkErrors,
} from "./provider.js";
import type { LlmChunk, LlmClient, LlmMessage, LlmRequest, LlmStopReason, LlmToolCall, LlmUsage } from "./types.js";

type ChatMessage = OpenAI.Chat.Completions.ChatCompletionMessageParam;
type ChatTool = OpenAI.Chat.Completions.ChatCompletionTool;
type ChatChunk = OpenAI.Chat.Completions.ChatCompletionChunk;
type ChatParams = OpenAI.Chat.Completions.ChatCompletionCreateParamsStreaming;

export const OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1";

/** The SDK, loaded when a client first calls the model: a server that never does starts without it. */
let loading: Promise<typeof import("openai")> | null = null;
const sdkModule = () => (loading ??= import("openai"));

/** Chat completions over any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, ...). */
export class OpenAiClient implements LlmClient {
  readonly provider = "openai";
  private sdk: Promise<OpenAI> | null = null;
  private readonly context: ProviderContext;

  constructor(private readonly options: ProviderClientOptions) {
    const baseUrl = options.baseUrl || OPENAI_DEFAULT_BASE_URL;
    this.context = {
      provider: this.provider,
      model: options.model,
      baseUrl,
      apiKey: options.apiKey,
      apiKeyEnv: options.apiKeyEnv || "OPENAI_API_KEY",
    };
  }

  private client(): Promise<OpenAI> {
    const { apiKey, maxRetries } = this.options;
    // Explicit values so that OPENAI_BASE_URL / OPENAI_ADMIN_KEY in the environment cannot redirect us.
    return (this.sdk ??= sdkModule().then((sdk) => new sdk.default({ apiKey, adminAPIKey: null, baseURL: this.context.baseUrl, maxRetries: maxRetries ?? 2 })));
  }

  async *stream(request: LlmRequest, { signal }: TurnContext): AsyncIterable<LlmChunk> {
    const calls = new ToolCallAccumulator();
    let usage: LlmUsage | undefined;
    let finishReason: string | null = null;
    const child = childSignal(signal);
    try {
      const sdk = await this.client();
      const stream = await sdk.chat.completions.create(this.params(request), { signal: child.signal });
      for await (const chunk of stream) {
        // Some servers (vLLM with continuous usage stats) repeat a cumulative usage on every chunk.
        if (chunk.usage) usage = { inputTokens: chunk.usage.prompt_tokens, outputTokens: chunk.usage.completion_tokens };
        for (const choice of chunk.choices) {
          if (choice.delta.content) yield { type: "text", delta: choice.delta.content };
          for (const delta of choice.delta.tool_calls ?? []) calls.add(delta);
          if (choice.finish_reason) finishReason = choice.finish_reason;
        }
      }
    } catch (error) {
      throw toProviderError(error, signal, this.context, errorsOf(await sdkModule()));
    } finally {
      child.release();
    }
    yield* endOfStream(signal, calls.complete(), usage, stopReasonOf(finishReason));
  }

  private params(request: LlmRequest): ChatParams {
    const maxTokens = request.maxOutputTokens ?? this.options.maxOutputTokens;
    const temperature = request.temperature ?? this.options.temperature;
    const params: ChatParams = {
      model: this.options.model,
      messages: toMessages(request),
      stream: true,
      stream_options: { include_usage: true },
    };
    if (request.tools.length > 0) params.tools = request.tools.map(toTool);
    if (temperature !== undefined) params.temperature = temperature;
    if (maxTokens !== undefined) {
      // OpenAI's newer models only accept max_completion_tokens; compatible servers reliably know max_tokens.
      if (this.context.baseUrl === OPENAI_DEFAULT_BASE_URL) params.max_completion_tokens = maxTokens;
      else params.max_tokens = maxTokens;
    }
    return params;
  }
}

const errorsOf = (sdk: typeof import("openai")): SdkErrors => ({
  UserAbort: sdk.APIUserAbortError,
  Timeout: sdk.APIConnectionTimeoutError,
  Connection: sdk.APIConnectionError,
  Api: sdk.APIError,
  describeApiError: (error) => {
    const api = error as APIError;
    return { detail: messageField(api.error) ?? api.message, type: typeof api.type === "string" ? api.type : undefined };
  },
});

export function toMessages(request: LlmRequest): ChatMessage[] {
  const messages: ChatMessage[] = [];
  if (request.systemPrompt !== "") messages.push({ role: "system", content: request.systemPrompt });
  for (const message of request.messages) messages.push(toMessage(message));
  return messages;
}

function toMessage(message: LlmMessage): ChatMessage {
  switch (message.role) {
    case "user":
      return { role: "user", content: message.text };
    case "assistant":
      if (message.toolCalls.length === 0) return { role: "assistant", content: message.text };
      return {
        role: "assistant",
        // An assistant message that only calls tools carries no content at all.
        content: message.text === "" ? null : message.text,
        tool_calls: message.toolCalls.map((call) => ({
          id: call.id,
          type: "function",
          function: { name: call.name, arguments: call.argumentsJson || "{}" },
        })),
      };
    case "tool":
      return { role: "tool", tool_call_id: message.callId, content: message.output };
  }
}

function toTool(tool: LlmRequest["tools"][number]): ChatTool {
  return {
    type: "function",
    function: { name: tool.name, description: tool.description, parameters: tool.inputSchema },
  };
}

function stopReasonOf(finishReason: string | null): LlmStopReason {
  if (finishReason === "tool_calls") return "tool_use";
  if (finishReason === "length") return "max_tokens";
  return "end_turn";
}

type ToolCallDelta = NonNullable<ChatChunk["choices"][number]["delta"]["tool_calls"]>[number];

/** Tool calls arrive in pieces keyed by index: the id and name first, the arguments in fragments. */
class ToolCallAccumulator {
  private readonly calls = new Map<number, { id: string; name: string; args: string }>();

  add(delta: ToolCallDelta): void {
    // Some compatible servers omit the index; they send each call whole, so the next slot is right.
    const index = typeof delta.index === "number" ? delta.index : this.calls.size;
    const call = this.calls.get(index) ?? { id: "", name: "", args: "" };
    if (delta.id && call.id === "") call.id = delta.id;
    if (delta.function?.name && call.name === "") call.name = delta.function.name;
    if (delta.function?.arguments) call.args += delta.function.arguments;
    this.calls.set(index, call);
  }

  complete(): LlmToolCall[] {
    return [...this.calls.entries()]
      .sort(([a], [b]) => a - b)
      .map(([, call]) => ({ id: call.id, name: call.name, argumentsJson: call.args || "{}" }));
  }
}
