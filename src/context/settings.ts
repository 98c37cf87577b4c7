import { invalidArgument } from "../errors.js";
import type { SessionConfig } from "../session/types.js";
import { DEFAULT_CONTEXT_SETTINGS, type ContextSettings } from "./types.js";

/** A session's context settings with the defaults filled in (records from before them have none). */
export function contextSettingsOf(config: Readonly<SessionConfig>): ContextSettings {
  return {
    autoCompact: config.context?.autoCompact ?? DEFAULT_CONTEXT_SETTINGS.autoCompact,
    autoCompactThreshold: config.context?.autoCompactThreshold ?? DEFAULT_CONTEXT_SETTINGS.autoCompactThreshold,
  };
}

/** The largest context window a session may declare: far beyond any model, small enough to stay exact. */
export const MAX_CONTEXT_WINDOW = 100_000_000;

/** Checks what a request sets; each problem names its field. */
export function checkContextSettings(patch: Partial<ContextSettings>): Partial<ContextSettings> {
  const threshold = patch.autoCompactThreshold;
  if (threshold !== undefined && !(threshold > 0 && threshold <= 1)) {
    throw invalidArgument(`config.auto_compact_threshold must be more than 0 and at most 1 (a fraction of the context window), got ${threshold}`);
  }
  return patch;
}

export function checkContextWindow(tokens: number | undefined): number | undefined {
  if (tokens === undefined) return undefined;
  if (!Number.isInteger(tokens) || tokens < 0 || tokens > MAX_CONTEXT_WINDOW) {
    throw invalidArgument(`config.model.context_window must be a whole number of tokens from 0 (unknown) to ${MAX_CONTEXT_WINDOW}, got ${tokens}`);
  }
  return tokens === 0 ? undefined : tokens;
}
