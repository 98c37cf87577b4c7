import type { ModelSettings } from "./types.js";

/** What a model charges, in US dollars per million tokens. */
export interface Price {
  inputPerMillion: number;
  outputPerMillion: number;
}

/**
 * List prices of well-known models (USD per million tokens, as their providers publish them), by
 * "provider/model". A model not listed has no price (its cost shows as 0) until the operator gives
 * one in the configuration's `prices`, which also overrides these.
 */
export const DEFAULT_PRICES: Readonly<Record<string, Price>> = Object.freeze({
  "openai/gpt-4o": { inputPerMillion: 2.5, outputPerMillion: 10 },
  // The first gpt-4o snapshot kept its launch price.
  "openai/gpt-4o-2024-05-13": { inputPerMillion: 5, outputPerMillion: 15 },
  "openai/gpt-4o-mini": { inputPerMillion: 0.15, outputPerMillion: 0.6 },
  "openai/gpt-4.1": { inputPerMillion: 2, outputPerMillion: 8 },
  "openai/gpt-4.1-mini": { inputPerMillion: 0.4, outputPerMillion: 1.6 },
  "openai/gpt-4.1-nano": { inputPerMillion: 0.1, outputPerMillion: 0.4 },
  "openai/gpt-5": { inputPerMillion: 1.25, outputPerMillion: 10 },
  "openai/gpt-5-mini": { inputPerMillion: 0.25, outputPerMillion: 2 },
  "openai/gpt-5-nano": { inputPerMillion: 0.05, outputPerMillion: 0.4 },
  "openai/o1": { inputPerMillion: 15, outputPerMillion: 60 },
  "openai/o3": { inputPerMillion: 2, outputPerMillion: 8 },
  "openai/o4-mini": { inputPerMillion: 1.1, outputPerMillion: 4.4 },
  "anthropic/claude-opus-4-1": { inputPerMillion: 15, outputPerMillion: 75 },
  "anthropic/claude-opus-4-0": { inputPerMillion: 15, outputPerMillion: 75 },
  "anthropic/claude-sonnet-4-5": { inputPerMillion: 3, outputPerMillion: 15 },
  "anthropic/claude-sonnet-4-0": { inputPerMillion: 3, outputPerMillion: 15 },
  "anthropic/claude-3-7-sonnet-latest": { inputPerMillion: 3, outputPerMillion: 15 },
  "anthropic/claude-haiku-4-5": { inputPerMillion: 1, outputPerMillion: 5 },
  "anthropic/claude-3-5-haiku-latest": { inputPerMillion: 0.8, outputPerMillion: 4 },
});

/** A dated snapshot or alias ("gpt-4o-2024-11-20", "claude-sonnet-4-5-20250929", "...-latest") names its model's price. */
const SNAPSHOT_SUFFIX = /-(\d{4}-\d{2}-\d{2}|\d{8}|latest)$/;

const undated = (key: string) => key.replace(SNAPSHOT_SUFFIX, "");

/** The list prices by undated name: a model's own entry, else its alias's ("claude-3-7-sonnet-latest"); a snapshot's own price names no other. */
const DEFAULT_PRICES_UNDATED: ReadonlyMap<string, Price> = (() => {
  const byName = new Map<string, Price>();
  for (const [key, price] of Object.entries(DEFAULT_PRICES)) if (undated(key) === key) byName.set(key, price);
  for (const [key, price] of Object.entries(DEFAULT_PRICES)) if (key.endsWith("-latest") && !byName.has(undated(key))) byName.set(undated(key), price);
  return byName;
})();

/**
 * The price of a session's model: the operator's, else the list price, else none; a snapshot
 * without a price of its own ("gpt-4o-2024-11-20") has its model's ("gpt-4o").
 */
export function priceOf(model: ModelSettings | null, overrides: Readonly<Record<string, Price>>): Price | null {
  if (!model) return null;
  const key = `${model.provider}/${model.model}`;
  const general = undated(key);
  const own = (table: Readonly<Record<string, Price>>, name: string) => (Object.hasOwn(table, name) ? table[name] : undefined);
  return own(overrides, key) ?? own(DEFAULT_PRICES, key) ?? own(overrides, general) ?? DEFAULT_PRICES_UNDATED.get(general) ?? null;
}

/** What `tokens` cost at `price` (0 without one). */
export function costOf(tokens: { inputTokens: number; outputTokens: number }, price: Price | null): number {
  if (!price) return 0;
  return (tokens.inputTokens * price.inputPerMillion + tokens.outputTokens * price.outputPerMillion) / 1_000_000;
}
