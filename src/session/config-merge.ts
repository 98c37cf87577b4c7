import type { SessionConfig, SessionConfigPatch } from "./types.js";
import { definedOnly } from "../util/defined.js";
import { DEFAULT_CONFIRMATION, DEFAULT_PERMISSIONS, type PermissionRules } from "../policy/types.js";

/**
 * Applies a request's partial configuration on top of a base: the parent's config for a child, the
 * current config for ConfigureSession, the server defaults for a new session. A model that is set
 * replaces the whole model; limits merge field by field.
 */
export function mergeConfig(base: SessionConfig, patch: SessionConfigPatch): SessionConfig {
  // The result is shared (frozen, never changed in place): so are the parts the patch leaves alone.
  const untouched = (part: object | undefined) => part === undefined || Object.values(part).every((value) => value === undefined);
  if (untouched(patch)) return sharedConfig(base);
  return sharedConfig({
    model: patch.model ? { ...patch.model } : base.model,
    systemPrompt: patch.systemPrompt ?? base.systemPrompt,
    limits: untouched(patch.limits) ? base.limits : { ...base.limits, ...definedOnly(patch.limits ?? {}) },
    permissions: patch.permissions ? clonePermissions(patch.permissions) : base.permissions,
    confirmation: untouched(patch.confirmation) ? base.confirmation : { ...base.confirmation, ...definedOnly(patch.confirmation ?? {}) },
    tools: patch.tools !== undefined ? copyOrNull(patch.tools) : base.tools,
    ...(base.context || patch.context ? { context: untouched(patch.context) && base.context ? base.context : { ...base.context, ...definedOnly(patch.context ?? {}) } } : {}),
  });
}

const copyOrNull = (list: string[] | null): string[] | null => (list === null ? null : [...list]);

function clonePermissions(rules: PermissionRules): PermissionRules {
  return { deny: [...rules.deny], ask: [...rules.ask], allow: [...rules.allow], defaultDecision: rules.defaultDecision };
}

/**
 * A stored config from before policies (or tool selections) existed gets the built-in ones. The
 * result is shared and frozen (see sharedConfig): sessions with equal configs hold one object.
 */
export function withPolicyDefaults(config: Partial<SessionConfig> & Pick<SessionConfig, "model" | "systemPrompt" | "limits">): SessionConfig {
  // A config shared already (a new session's, made from the server's defaults) has them all.
  if (interned.has(config) && config.permissions && config.confirmation && config.tools !== undefined) return config as SessionConfig;
  // Stored configs arrive shared (a store loads equal ones as one object): each is defaulted once.
  let shared = defaulted.get(config);
  if (!shared) {
    shared = sharedConfig({
      ...config,
      permissions: clonePermissions(config.permissions ?? DEFAULT_PERMISSIONS),
      confirmation: { ...DEFAULT_CONFIRMATION, ...(config.confirmation ?? {}) },
      tools: config.tools ?? null,
    });
    defaulted.set(config, shared);
  }
  return shared;
}

/** withPolicyDefaults' result for each stored config object. */
const defaulted = new WeakMap<object, SessionConfig>();

/**
 * A frozen copy of a session's config, shared with every session whose config is equal (the same
 * fields in the same order, equal values): thousands of sessions made with the server's defaults
 * hold one config, and the parts (permissions, limits, the model...) are shared between configs
 * that differ elsewhere. Sessions replace their config, never change it in place.
 */
export function sharedConfig(config: SessionConfig): SessionConfig {
  return intern(config) as SessionConfig;
}

/** Every value intern() has returned: shared already, nothing to look up. */
const interned = new WeakSet<object>();

/** Recently shared values by shape (their keys, or an array's length), most recent first. */
const recent = new Map<string, object[]>();
/** How many shared values of one shape are kept to match, and how many shapes. */
const KEPT_PER_SHAPE = 16;
const KEPT_SHAPES = 512;

/**
 * Hash-consing of plain data: a plain object or array becomes a frozen copy whose members are
 * themselves shared, the same copy as an equal value's when one is recent. Other values (strings,
 * numbers, class instances) are kept as they are.
 */
function intern(value: unknown): unknown {
  if (typeof value !== "object" || value === null || interned.has(value)) return value;
  const isArray = Array.isArray(value);
  if (!isArray && Object.getPrototypeOf(value) !== Object.prototype) return value;
  let shape: string;
  let members: unknown[];
  let keys: string[] | null = null;
  if (isArray) {
    members = value.map(intern);
    shape = `[${members.length}`;
  } else {
    keys = Object.keys(value);
    members = keys.map((key) => intern((value as Record<string, unknown>)[key]));
    shape = JSON.stringify(keys);
  }
  const candidates = recent.get(shape);
  if (candidates) {
    for (let c = 0; c < candidates.length; c++) {
      const candidate = candidates[c]!;
      if (sameMembers(candidate, keys, members)) {
        if (c > 0) {
          candidates.splice(c, 1);
          candidates.unshift(candidate);
        }
        return candidate;
      }
    }
  }
  let copy: object;
  if (isArray) copy = members;
  else {
    const record: Record<string, unknown> = {};
    for (let i = 0; i < keys!.length; i++) record[keys![i]!] = members[i];
    copy = record;
  }
  Object.freeze(copy);
  interned.add(copy);
  if (candidates) {
    candidates.unshift(copy);
    if (candidates.length > KEPT_PER_SHAPE) candidates.pop();
  } else {
    if (recent.size >= KEPT_SHAPES) recent.delete(recent.keys().next().value!);
    recent.set(shape, [copy]);
  }
  return copy;
}

/** Whether a shared value of the same shape holds exactly these members (already shared themselves). */
function sameMembers(candidate: object, keys: string[] | null, members: unknown[]): boolean {
  if (keys === null) {
    const list = candidate as unknown[];
    for (let i = 0; i < members.length; i++) if (!Object.is(list[i], members[i])) return false;
    return true;
  }
  const record = candidate as Record<string, unknown>;
  for (let i = 0; i < keys.length; i++) if (!Object.is(record[keys[i]!], members[i])) return false;
  return true;
}
