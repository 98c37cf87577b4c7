import type { LlmToolDefinition, ModelSettings } from "../llm/types.js";
import type { Message } from "../session/types.js";

/**
 * Counting tokens. OpenAI's models are counted with their own BPE encodings (js-tiktoken, loaded
 * on first use: about half a second and 100 MB for o200k_base, shared by every session). Every
 * other model gets a documented estimate: one token per 4 characters. Either way a message adds
 * MESSAGE_OVERHEAD tokens for its framing (role, separators), as providers do.
 */
export interface TokenCounter {
  /** "o200k_base", "cl100k_base" or "estimate". */
  readonly method: string;
  count(text: string): number;
}

export const MESSAGE_OVERHEAD = 4;
const CHARS_PER_TOKEN = 4;

export const ESTIMATE: TokenCounter = { method: "estimate", count: (text) => Math.ceil(text.length / CHARS_PER_TOKEN) };

/**
 * Past this many characters a text is counted from a sample: its first SAMPLE_CHARS characters are
 * encoded and the ratio applied to the rest, so a megabyte of tool output never blocks the server
 * for the seconds a full encoding takes.
 */
const SAMPLE_CHARS = 32 * 1024;

type Encoding = "o200k_base" | "cl100k_base";

/** The encoding of an OpenAI model, by name; null for models it is not known for. */
export function encodingFor(model: Pick<ModelSettings, "provider" | "model"> | null): Encoding | null {
  if (!model || model.provider !== "openai") return null;
  const name = model.model.trim().toLowerCase();
  if (/^(gpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|o1|o3|o4|chatgpt-4o|gpt-oss)/.test(name)) return "o200k_base";
  if (/^(gpt-4|gpt-3\.5|gpt-35)/.test(name)) return "cl100k_base";
  return null;
}

const loaded = new Map<Encoding, Promise<TokenCounter>>();

/** The counter for a session's model: its tokenizer when it has a known one, else the estimate. */
export async function tokenCounterFor(model: Pick<ModelSettings, "provider" | "model"> | null): Promise<TokenCounter> {
  const encoding = encodingFor(model);
  if (encoding === null) return ESTIMATE;
  let counter = loaded.get(encoding);
  if (!counter) {
    counter = loadEncoding(encoding).catch(() => ESTIMATE);
    loaded.set(encoding, counter);
  }
  return counter;
}

async function loadEncoding(encoding: Encoding): Promise<TokenCounter> {
  const { Tiktoken } = await import("js-tiktoken/lite");
  const ranks = encoding === "o200k_base" ? (await import("js-tiktoken/ranks/o200k_base")).default : (await import("js-tiktoken/ranks/cl100k_base")).default;
  const tiktoken = new Tiktoken(ranks);
  // Special tokens in a text are counted as the ordinary text they are for the provider.
  const exact = (text: string) => tiktoken.encode(text, [], []).length;
  return {
    method: encoding,
    count: (text) => {
      if (text.length <= SAMPLE_CHARS) return exact(text);
      const sample = exact(text.slice(0, SAMPLE_CHARS));
      return Math.ceil((sample * text.length) / SAMPLE_CHARS);
    },
  };
}

/** A message's tokens: its text, tool calls and tool result, and the framing. */
export function messageTokens(message: Message, counter: TokenCounter): number {
  let tokens = MESSAGE_OVERHEAD + (message.text === "" ? 0 : counter.count(message.text));
  for (const call of message.toolCalls) tokens += counter.count(call.name) + counter.count(call.argumentsJson) + MESSAGE_OVERHEAD;
  if (message.toolResult) tokens += counter.count(message.toolResult.output) + counter.count(message.toolResult.name);
  return tokens;
}

/** What the system prompt and the tool definitions take in every call. */
export function environmentTokens(environment: { systemPrompt: string; tools: readonly LlmToolDefinition[] }, counter: TokenCounter): number {
  const tools = environment.tools.length === 0 ? 0 : countedText(JSON.stringify(environment.tools), counter);
  return countedText(environment.systemPrompt, counter) + tools;
}

/** Per counter, each message's tokens: messages never change once appended, so none is counted twice. */
const messageCounts = new WeakMap<TokenCounter, WeakMap<Message, number>>();

/**
 * messageTokens, remembered per message: GetContextUsage after a clear, a rewind or a compaction
 * recounts the whole context, and without this would tokenise all of it again each time. Only for
 * messages that never change (a transcript's, and the preamble SessionContext keeps).
 */
export function cachedMessageTokens(message: Message, counter: TokenCounter): number {
  let counts = messageCounts.get(counter);
  if (!counts) messageCounts.set(counter, (counts = new WeakMap()));
  let tokens = counts.get(message);
  if (tokens === undefined) counts.set(message, (tokens = messageTokens(message, counter)));
  return tokens;
}

/** System prompts and tool lists are few and shared by many sessions: the latest ones' counts are kept. */
const TEXTS_KEPT = 32;
const textCounts = new WeakMap<TokenCounter, Map<string, number>>();

function countedText(text: string, counter: TokenCounter): number {
  let counts = textCounts.get(counter);
  if (!counts) textCounts.set(counter, (counts = new Map()));
  let tokens = counts.get(text);
  if (tokens === undefined) {
    tokens = counter.count(text);
    if (counts.size >= TEXTS_KEPT) counts.delete(counts.keys().next().value!);
  } else {
    counts.delete(text);
  }
  counts.set(text, tokens);
  return tokens;
}
