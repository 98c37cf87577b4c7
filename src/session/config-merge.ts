import type { SessionConfig, SessionConfigPatch } from "./types.js";
import { definedOnly } from "../util/defined.js";
import { DEFAULT_CONFIRMATION, DEFAULT_PERMISSIONS, type PermissionRules } from "../policy/types.js";

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
    permissions: clonePermissions(patch.permissions ?? base.permissions),
    confirmation: { ...base.confirmation, ...definedOnly(patch.confirmation ?? {}) },
    tools: patch.tools !== undefined ? copyOrNull(patch.tools) : copyOrNull(base.tools),
    ...(base.context || patch.context ? { context: { ...base.context, ...definedOnly(patch.context ?? {}) } } : {}),
  };
}

const copyOrNull = (list: string[] | null): string[] | null => (list === null ? null : [...list]);

function clonePermissions(rules: PermissionRules): PermissionRules {
  return { deny: [...rules.deny], ask: [...rules.ask], allow: [...rules.allow], defaultDecision: rules.defaultDecision };
}

/** A stored config from before policies (or tool selections) existed gets the built-in ones. */
export function withPolicyDefaults(config: Partial<SessionConfig> & Pick<SessionConfig, "model" | "systemPrompt" | "limits">): SessionConfig {
  return {
    ...config,
    permissions: clonePermissions(config.permissions ?? DEFAULT_PERMISSIONS),
    confirmation: { ...DEFAULT_CONFIRMATION, ...(config.confirmation ?? {}) },
    tools: copyOrNull(config.tools ?? null),
  };
}
