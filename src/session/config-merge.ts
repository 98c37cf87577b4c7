import type { SessionConfig, SessionConfigPatch } from "./types.js";
import { definedOnly } from "../util/defined.js";

/**
 * Applies a request's partial configuration on top of a base: the parent's config for a child, the
 * current config for ConfigureSession, the server defaults for a new session. A model that is set
 * replaces the whole model; limits merge field by field.
 */
export function mergeConfig(base: SessionConfig, patch: SessionConfigPatch): SessionConfig {
  return {
    model: patch.model ? { ...patch.model } : base.model ? { ...base.model } : null,
    systemPrompt: patch.systemPrompt ?? base.systemPrompt,
    limits: { ...base.limits, ...definedOnly(patch.limits ?? {}) },
  };
}
