import type { ModelSettings } from "../llm/types.js";

/**
 * Context windows of well-known models, in tokens, matched by the longest prefix of the model's
 * name (so dated versions such as "gpt-4o-2024-08-06" match). A session's
 * ModelConfig.context_window wins over this table; a model in neither has no known window, and
 * then nothing is compacted automatically.
 */
const KNOWN_WINDOWS: Array<[provider: string, prefix: string, tokens: number]> = [
  ["openai", "gpt-5", 400_000],
  ["openai", "gpt-4.1", 1_047_576],
  ["openai", "gpt-4.5", 128_000],
  ["openai", "gpt-4o", 128_000],
  ["openai", "chatgpt-4o", 128_000],
  ["openai", "gpt-4-turbo", 128_000],
  ["openai", "gpt-4-1106", 128_000],
  ["openai", "gpt-4-0125", 128_000],
  ["openai", "gpt-4-32k", 32_768],
  ["openai", "gpt-4", 8_192],
  ["openai", "gpt-3.5-turbo", 16_385],
  ["openai", "o1-mini", 128_000],
  ["openai", "o1-preview", 128_000],
  ["openai", "o1", 200_000],
  ["openai", "o3", 200_000],
  ["openai", "o4-mini", 200_000],
  ["anthropic", "claude-", 200_000],
];

export interface ContextWindow {
  /** 0 when unknown. */
  tokens: number;
  source: "config" | "known_model" | "";
}

export function contextWindowOf(model: ModelSettings | null): ContextWindow {
  if (!model) return { tokens: 0, source: "" };
  if (model.contextWindow !== undefined && model.contextWindow > 0) return { tokens: model.contextWindow, source: "config" };
  const name = model.model.trim().toLowerCase();
  let best: [string, string, number] | undefined;
  for (const entry of KNOWN_WINDOWS) {
    if (entry[0] === model.provider && name.startsWith(entry[1]) && (!best || entry[1].length > best[1].length)) best = entry;
  }
  return best ? { tokens: best[2], source: "known_model" } : { tokens: 0, source: "" };
}
