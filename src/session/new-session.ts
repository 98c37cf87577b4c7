import type { RuntimeConfig } from "../config/config.js";
import type { SessionRecord } from "../store/record.js";
import type { SessionConfig } from "./types.js";
import { sharedConfig } from "./config-merge.js";

/**
 * What a session gets when neither its request nor a parent says otherwise: the server's defaults,
 * made into a config once per settings object and shared (frozen).
 */
export function defaultSessionConfig(defaults: RuntimeConfig["sessionDefaults"]): SessionConfig {
  let config = fromDefaults.get(defaults);
  if (!config) {
    config = sharedConfig({
      model: defaults.model,
      systemPrompt: defaults.systemPrompt,
      limits: { maxToolRounds: defaults.maxToolRounds, toolTimeoutMs: defaults.toolTimeoutMs },
      permissions: structuredClone(defaults.permissions),
      confirmation: { ...defaults.confirmation },
      tools: null,
    });
    fromDefaults.set(defaults, config);
  }
  return config;
}

const fromDefaults = new WeakMap<RuntimeConfig["sessionDefaults"], SessionConfig>();

export interface NewSession {
  id: string;
  owner: string;
  parentId: string | null;
  config: SessionConfig;
  workspace: string;
  ephemeral: boolean;
  labels: Record<string, string>;
  /** The subagent definition the session runs, for children the task tool creates. */
  agent?: string;
}

/** The record of a session that has just been created: idle, empty, sequence 0. */
export function newSessionRecord(fields: NewSession, now = new Date().toISOString()): SessionRecord {
  return {
    version: 1,
    ...fields,
    labels: { ...fields.labels },
    state: "idle",
    createdAt: now,
    updatedAt: now,
    usage: { inputTokens: 0, outputTokens: 0 },
    lastSequence: 0,
    messages: [],
    scriptSteps: 0,
  };
}
