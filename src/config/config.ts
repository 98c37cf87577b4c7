import { readFileSync } from "node:fs";
import path from "node:path";
import type { ModelSettings } from "../llm/types.js";
import { LOG_FORMATS, type LogFormatSetting } from "../logging.js";

/** Everything the server can be configured with. Embedded defaults make `agentd serve` work bare. */
export interface RuntimeConfig {
  host: string;
  port: number;
  /** Sessions are stored under <dataDir>/sessions, default workspaces under <dataDir>/workspaces. */
  dataDir: string;
  logLevel: string;
  /** "auto": readable lines when stdout is a terminal, JSON lines otherwise. */
  logFormat: LogFormatSetting;
  /** "file" persists sessions under dataDir; "memory" keeps everything in the process. */
  store: "file" | "memory";
  limits: {
    /** Live sessions in the whole server, children included. */
    maxSessions: number;
    /** Live sessions of one owner, children included. */
    maxSessionsPerOwner: number;
  };
  /** What a session gets when neither its request nor its parent says otherwise. */
  sessionDefaults: {
    model: ModelSettings | null;
    systemPrompt: string;
    maxToolRounds: number;
    toolTimeoutMs: number;
  };
  persistence: {
    /** Mutations within this window are coalesced into one write. */
    debounceMs: number;
    /** A failed write is retried after this delay, doubling up to retryMaxMs. */
    retryBaseMs: number;
    retryMaxMs: number;
  };
}

export const DEFAULT_CONFIG: RuntimeConfig = {
  host: "127.0.0.1",
  port: 50051,
  dataDir: ".agentd",
  logLevel: "info",
  logFormat: "auto",
  store: "file",
  limits: { maxSessions: 10_000, maxSessionsPerOwner: 1_000 },
  sessionDefaults: {
    model: null,
    systemPrompt: "You are a helpful assistant. Use the tools you are given when they help.",
    maxToolRounds: 50,
    toolTimeoutMs: 120_000,
  },
  persistence: { debounceMs: 25, retryBaseMs: 500, retryMaxMs: 30_000 },
};

/** RuntimeConfig partial two levels deep, as read from a config file or built from flags. */
export type ConfigOverrides = {
  [K in keyof RuntimeConfig]?: RuntimeConfig[K] extends object ? Partial<RuntimeConfig[K]> : RuntimeConfig[K];
};

/** Applies overrides, later ones winning, one level deep (the shape of RuntimeConfig). */
export function resolveConfig(...layers: ConfigOverrides[]): RuntimeConfig {
  const config: RuntimeConfig = structuredClone(DEFAULT_CONFIG);
  const target = config as unknown as Record<string, unknown>;
  for (const layer of layers) {
    for (const [key, value] of Object.entries(layer)) {
      if (value === undefined) continue;
      if (!(key in DEFAULT_CONFIG)) throw new Error(`unknown configuration key "${key}"`);
      const current = target[key];
      target[key] =
        value !== null && typeof value === "object" && current !== null && typeof current === "object"
          ? { ...current, ...value }
          : value;
    }
  }
  validateConfig(config);
  return config;
}

export function readConfigFile(file: string): ConfigOverrides {
  const text = readFileSync(file, "utf8");
  try {
    return JSON.parse(text) as ConfigOverrides;
  } catch (error) {
    throw new Error(`config file ${path.resolve(file)} is not valid JSON: ${(error as Error).message}`);
  }
}

function validateConfig(config: RuntimeConfig): void {
  const positive = (name: string, value: number) => {
    if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer, got ${value}`);
  };
  if (!Number.isInteger(config.port) || config.port < 0 || config.port > 65535) {
    throw new Error(`port must be between 0 and 65535, got ${config.port}`);
  }
  if (config.store !== "file" && config.store !== "memory") {
    throw new Error(`store must be "file" or "memory", got "${String(config.store)}"`);
  }
  if (!LOG_FORMATS.includes(config.logFormat)) {
    throw new Error(`logFormat must be "auto", "json" or "pretty", got "${String(config.logFormat)}"`);
  }
  positive("limits.maxSessions", config.limits.maxSessions);
  positive("limits.maxSessionsPerOwner", config.limits.maxSessionsPerOwner);
  positive("sessionDefaults.maxToolRounds", config.sessionDefaults.maxToolRounds);
  if (config.sessionDefaults.toolTimeoutMs < 0) throw new Error("sessionDefaults.toolTimeoutMs must be >= 0");
}
