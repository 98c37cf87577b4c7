import { readFileSync } from "node:fs";
import path from "node:path";
import type { ModelSettings } from "../llm/types.js";
import { LOG_FORMATS, type LogFormatSetting } from "../logging.js";
import { parseMcpServers } from "../mcp/config.js";
import { checkDatabaseUrl } from "../store/postgres/database-url.js";
import { BUDGET_PERIODS, type BudgetPeriod } from "../costs/budget-period.js";
import { checkOwner } from "../runtime/input-limits.js";
import { DEFAULT_CONFIRMATION, DEFAULT_PERMISSIONS, type ConfirmationSettings, type PermissionRules } from "../policy/types.js";

export const STORE_KINDS = ["file", "memory", "postgres"] as const;
export type StoreKind = (typeof STORE_KINDS)[number];

/** Everything the server can be configured with. Embedded defaults make `agentd serve` work bare. */
export interface RuntimeConfig {
  host: string;
  port: number;
  /** Sessions are stored under <dataDir>/sessions, default workspaces under <dataDir>/workspaces. */
  dataDir: string;
  logLevel: string;
  /** "auto": readable lines when stdout is a terminal, JSON lines otherwise. */
  logFormat: LogFormatSetting;
  /**
   * "file" persists sessions under dataDir; "memory" keeps everything in the process; "postgres"
   * keeps them in the database at database.url, which several nodes may share.
   */
  store: StoreKind;
  /**
   * Prices in US dollars per million tokens by "provider/model" (e.g. "openai/gpt-4o-mini"), over
   * the list prices agentd ships; a model with neither costs 0.
   */
  prices: Record<string, { inputPerMillion: number; outputPerMillion: number }>;
  /**
   * What each owner may spend in US dollars per period, over all their sessions (destroyed ones
   * included); a turn stops before a model call once it is spent. 0: no budget.
   */
  budgets: {
    /** "day" or "month" (UTC calendar; the budget renews at the next one), or "total". */
    period: BudgetPeriod;
    /** Every owner's budget, unless `owners` names them. */
    perOwnerUsd: number;
    /** Budgets of named owners (0 lifts perOwnerUsd for one). */
    owners: Record<string, number>;
  };
  /** The web console (a page and its JSON + SSE API) on an HTTP port of its own; off by default. */
  console: {
    enabled: boolean;
    /** Loopback by default; the same authentication as the gRPC port applies. */
    host: string;
    /** 0 picks a free port. */
    port: number;
    /** On a cluster, how the other nodes' consoles reach this one; "" means host:port as bound (a wildcard host becomes this machine's name). */
    advertiseAddress: string;
    /** Event streams (live turns, event logs) open at once; more are refused with 429 until some close. */
    maxStreams: number;
  };
  /** OpenTelemetry traces: a span per RPC, turn, model call and tool call, sent over OTLP/HTTP; off by default. */
  tracing: {
    enabled: boolean;
    /** Where spans go, e.g. http://collector:4318/v1/traces. */
    otlpEndpoint: string;
    serviceName: string;
    /** Also record prompts and model outputs in the spans (off: they may hold anything a user typed). */
    recordContent: boolean;
  };
  /** Prometheus metrics on an HTTP port of their own (GET /metrics); off by default. */
  metrics: {
    enabled: boolean;
    /** Loopback by default: the figures name models, tools and methods. */
    host: string;
    /** 0 picks a free port. */
    port: number;
  };
  /** Several nodes on one database (store "postgres"); see README "Running several nodes". */
  cluster: {
    enabled: boolean;
    /** How the other nodes reach this one; "" means host:port as bound (a wildcard host becomes this machine's name). */
    advertiseAddress: string;
    /** A session tree's lease lasts this long without a heartbeat: how long a dead node's sessions wait for another. */
    leaseMs: number;
    /** On SIGTERM, how long running turns may go on (idle trees are handed over at once) before they are cancelled. */
    drainTimeoutMs: number;
  };
  /** The PostgreSQL store's database. */
  database: {
    /** postgres://user:password@host:5432/name; the password is never logged. */
    url: string;
    /** Connections this node keeps open. */
    poolSize: number;
  };
  limits: {
    /** Live sessions in the whole server, children included. */
    maxSessions: number;
    /** Live sessions of one owner, children included. */
    maxSessionsPerOwner: number;
    /** Turns of one owner running at once. */
    maxConcurrentTurnsPerOwner: number;
  };
  /** Who may call. With none of tokensFile, jwt or tls.clientCaFile set, every caller is an anonymous admin. */
  auth: {
    /** JSON file of bearer tokens, stored as SHA-256 hashes, each naming an owner and a role. */
    tokensFile: string;
    /** JWT bearer tokens, verified against a JWKS URL or a public key file. */
    jwt: JwtSettings | null;
    /** Owners that are admins when they come through JWT or a client certificate. */
    adminOwners: string[];
  };
  /** TLS for the gRPC port; with clientCaFile, clients must present a certificate it signed (mTLS). */
  tls: { certFile: string; keyFile: string; clientCaFile: string };
  /** Allows a non-loopback address without authentication. */
  insecure: boolean;
  /** What a client may name that reaches the file system. */
  sandbox: {
    /** Workspaces must lie inside one of these (after resolving symlinks); [] means <dataDir>/workspaces. */
    allowedWorkspaceRoots: string[];
    /** script_path must name a file inside this folder; "" means <dataDir>/scripts. */
    scriptsDir: string;
  };
  /** What model endpoints and key variables a client may choose. */
  models: {
    /** Besides the providers' official endpoints and the server's default model's. */
    allowedBaseUrls: string[];
    /** Environment variables a session may name in api_key_env. */
    allowedApiKeyEnvs: string[];
    /**
     * Which endpoint may be sent which server key. Each provider's key goes to its official endpoint,
     * the default model's to its endpoint; other pairs only when listed here.
     */
    keyedEndpoints: Array<{ baseUrl: string; apiKeyEnv: string }>;
  };
  grpc: {
    /** Largest message the server accepts and sends. */
    maxMessageBytes: number;
    /** Streams one connection may have open at once. */
    maxConcurrentStreams: number;
    /** Server keepalive pings, and the shortest ping interval a client may use before it is cut off. */
    keepaliveTimeMs: number;
    keepaliveTimeoutMs: number;
    minClientPingIntervalMs: number;
    /**
     * What may wait for one reader of an event stream that stops reading, in messages and in
     * characters of text, before the stream is ended with RESOURCE_EXHAUSTED (the reader resubscribes).
     */
    maxPendingEvents: number;
    maxPendingEventChars: number;
    /** Subscribe and WatchTurn streams one owner may have open at once, and all owners together. */
    maxSubscriptionsPerOwner: number;
    maxSubscriptions: number;
  };
  /** One JSON line per mutating RPC. */
  audit: {
    enabled: boolean;
    /** "" means <dataDir>/audit.log. */
    file: string;
    /** The file is rotated at this size; this many rotated files are kept. */
    maxBytes: number;
    maxFiles: number;
  };
  /** What a session gets when neither its request nor its parent says otherwise. */
  sessionDefaults: {
    model: ModelSettings | null;
    systemPrompt: string;
    maxToolRounds: number;
    toolTimeoutMs: number;
    /** Which tool calls run, ask or are refused; see README "Permissions". */
    permissions: PermissionRules;
    confirmation: ConfirmationSettings;
  };
  /** Skills (Agent Skills folders holding a SKILL.md) every session sees, and where sessions may load more from. */
  skills: {
    /** Every subfolder holding a SKILL.md is a global skill; "" means <dataDir>/skills. */
    dir: string;
    /** Besides a session's workspace and `dir`, folders LoadSkill may read a skill from. */
    allowedRoots: string[];
  };
  /** Subagent definitions (Markdown files with front matter) every session sees. */
  agents: {
    /** Every *.md file is a global definition; "" means <dataDir>/agents. */
    dir: string;
    /** Besides a session's workspace and `dir`, folders LoadAgent may read a definition from. */
    allowedRoots: string[];
  };
  /** Global MCP servers, in the shape editors use: {"name": {"command", "args", "env", "cwd"} | {"url", "headers", "type"}}. */
  mcpServers: Record<string, unknown>;
  mcp: {
    /**
     * Commands a client may run as a stdio MCP server with AddMcpServer; none by default. An entry is
     * a program (any arguments then), or a program and the arguments the command must start with.
     */
    allowedCommands: string[];
    /**
     * URL prefixes a client's HTTP server may have on a loopback, private or link-local address
     * (public addresses need no entry); none by default.
     */
    allowedPrivateUrls: string[];
    /** MCP servers one session may add. */
    maxServersPerSession: number;
    /** A server that fails is tried again after this delay, doubling up to backoffMaxMs. */
    backoffBaseMs: number;
    backoffMaxMs: number;
    /** How long starting and initializing a server may take. */
    connectTimeoutMs: number;
    /** The longest one tool call may take, even in a session whose tool_timeout_ms is 0 (none). */
    callTimeoutMs: number;
  };
  /** The task tool: subagents as child sessions. */
  subagents: {
    /** How deep below a top-level session a subagent may be (1: only the top level delegates). */
    maxDepth: number;
    /** Task calls one turn may make. */
    maxTasksPerTurn: number;
    /** Keep a subagent's session (for GetMessages) after its task; by default it is destroyed, so tasks do not use up the owner's sessions. */
    keepSessions: boolean;
  };
  persistence: {
    /** Mutations within this window are coalesced into one write. */
    debounceMs: number;
    /** A failed write is retried after this delay, doubling up to retryMaxMs. */
    retryBaseMs: number;
    retryMaxMs: number;
    /** Each session's event log keeps its newest events within both bounds (for clients that re-attach). */
    maxEventsPerSession: number;
    maxEventBytesPerSession: number;
    /**
     * The newest events of each session are also kept in memory, for clients that re-attach; this
     * bounds that memory for all sessions together (the sessions idle longest give theirs up first).
     */
    recentEventsMemoryBytes: number;
    /** How often the file store moves its write-ahead log into the sessions' own files. */
    checkpointIntervalMs: number;
  };
}

export const DEFAULT_CONFIG: RuntimeConfig = {
  host: "127.0.0.1",
  port: 50051,
  dataDir: ".agentd",
  logLevel: "info",
  logFormat: "auto",
  store: "file",
  database: { url: "", poolSize: 8 },
  cluster: { enabled: false, advertiseAddress: "", leaseMs: 10_000, drainTimeoutMs: 30_000 },
  metrics: { enabled: false, host: "127.0.0.1", port: 9464 },
  prices: {},
  budgets: { period: "month", perOwnerUsd: 0, owners: {} },
  console: { enabled: false, host: "127.0.0.1", port: 8484, advertiseAddress: "", maxStreams: 256 },
  tracing: { enabled: false, otlpEndpoint: "http://127.0.0.1:4318/v1/traces", serviceName: "agentd", recordContent: false },
  limits: { maxSessions: 10_000, maxSessionsPerOwner: 1_000, maxConcurrentTurnsPerOwner: 64 },
  auth: { tokensFile: "", jwt: null, adminOwners: [] },
  tls: { certFile: "", keyFile: "", clientCaFile: "" },
  insecure: false,
  sandbox: { allowedWorkspaceRoots: [], scriptsDir: "" },
  models: { allowedBaseUrls: [], allowedApiKeyEnvs: ["OPENAI_API_KEY", "ANTHROPIC_API_KEY"], keyedEndpoints: [] },
  grpc: {
    maxMessageBytes: 4 * 1024 * 1024,
    maxConcurrentStreams: 100,
    keepaliveTimeMs: 2 * 60 * 60 * 1000,
    keepaliveTimeoutMs: 20_000,
    minClientPingIntervalMs: 10_000,
    maxPendingEvents: 1_000,
    maxPendingEventChars: 512 * 1024,
    maxSubscriptionsPerOwner: 64,
    maxSubscriptions: 4_096,
  },
  audit: { enabled: true, file: "", maxBytes: 10 * 1024 * 1024, maxFiles: 5 },
  sessionDefaults: {
    model: null,
    systemPrompt: "You are a helpful assistant. Use the tools you are given when they help.",
    maxToolRounds: 50,
    toolTimeoutMs: 120_000,
    permissions: DEFAULT_PERMISSIONS,
    confirmation: DEFAULT_CONFIRMATION,
  },
  skills: { dir: "", allowedRoots: [] },
  agents: { dir: "", allowedRoots: [] },
  mcpServers: {},
  mcp: { allowedCommands: [], allowedPrivateUrls: [], maxServersPerSession: 8, backoffBaseMs: 500, backoffMaxMs: 30_000, connectTimeoutMs: 30_000, callTimeoutMs: 600_000 },
  subagents: { maxDepth: 2, maxTasksPerTurn: 16, keepSessions: false },
  persistence: {
    debounceMs: 25,
    retryBaseMs: 500,
    retryMaxMs: 30_000,
    maxEventsPerSession: 10_000,
    maxEventBytesPerSession: 16 * 1024 * 1024,
    recentEventsMemoryBytes: 256 * 1024 * 1024,
    checkpointIntervalMs: 2_000,
  },
};

export interface JwtSettings {
  /** Keys are fetched (and cached) from here; or use publicKeyFile. */
  jwksUrl: string;
  /** A PEM public key (RSA, EC or Ed25519). */
  publicKeyFile: string;
  issuer: string;
  audience: string;
  /** The claim that names the owner; default "sub". */
  ownerClaim: string;
  /** A claim whose value "admin" makes the caller an admin; "" for none. */
  roleClaim: string;
}

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
  if (config.auth.jwt) config.auth.jwt = { ...JWT_DEFAULTS, ...config.auth.jwt };
  // The operator's default script is trusted wherever it is: fixed now, against the directory the server runs in.
  const model = config.sessionDefaults.model;
  if (model?.scriptPath) config.sessionDefaults.model = { ...model, scriptPath: path.resolve(model.scriptPath) };
  validateConfig(config);
  return config;
}

/** A budget that is off by a typo would not stop anyone: every key is checked. */
function validateBudgets(budgets: RuntimeConfig["budgets"]): void {
  const isObject = (value: unknown) => typeof value === "object" && value !== null && !Array.isArray(value);
  if (!isObject(budgets)) throw new Error('budgets must be an object: {"period", "perOwnerUsd", "owners"}');
  const unknown = Object.keys(budgets).filter((key) => !["period", "perOwnerUsd", "owners"].includes(key));
  if (unknown.length > 0) throw new Error(`budgets has unknown key(s) ${unknown.map((k) => JSON.stringify(k)).join(", ")}; the keys are "period", "perOwnerUsd" and "owners"`);
  if (!BUDGET_PERIODS.includes(budgets.period)) throw new Error(`budgets.period must be "day", "month" or "total", got ${JSON.stringify(budgets.period)}`);
  const usd = (n: unknown) => typeof n === "number" && Number.isFinite(n) && n >= 0;
  if (!usd(budgets.perOwnerUsd)) throw new Error(`budgets.perOwnerUsd must be a non-negative number of US dollars, got ${JSON.stringify(budgets.perOwnerUsd)}`);
  if (!isObject(budgets.owners)) throw new Error('budgets.owners must be an object of owner names to US dollars, e.g. {"alice": 20}');
  for (const [owner, value] of Object.entries(budgets.owners)) {
    try {
      if (owner === "") throw new Error("an owner name must not be empty");
      checkOwner(owner);
    } catch (error) {
      throw new Error(`budgets.owners has a key that is no owner name (${(error as Error).message})`);
    }
    if (!usd(value)) throw new Error(`budgets.owners[${JSON.stringify(owner)}] must be a non-negative number of US dollars, got ${JSON.stringify(value)}`);
  }
}

const JWT_DEFAULTS: JwtSettings = { jwksUrl: "", publicKeyFile: "", issuer: "", audience: "", ownerClaim: "sub", roleClaim: "" };

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
  if (!STORE_KINDS.includes(config.store)) {
    throw new Error(`store must be "file", "memory" or "postgres", got "${String(config.store)}"`);
  }
  if (config.store === "postgres") checkDatabaseUrl(config.database.url);
  positive("database.poolSize", config.database.poolSize);
  if (config.cluster.enabled && config.store !== "postgres") throw new Error('cluster.enabled needs store "postgres": the nodes share their sessions through the database');
  if (config.cluster.enabled && config.tls.certFile !== "") throw new Error("cluster.enabled with TLS is not supported yet: nodes forward calls to each other in plaintext; run the nodes on a private network without tls");
  if (!Number.isInteger(config.cluster.leaseMs) || config.cluster.leaseMs < 300) throw new Error(`cluster.leaseMs must be an integer of at least 300, got ${config.cluster.leaseMs}`);
  positive("cluster.drainTimeoutMs", config.cluster.drainTimeoutMs);
  for (const [model, price] of Object.entries(config.prices)) {
    const fine = (n: unknown) => typeof n === "number" && Number.isFinite(n) && n >= 0;
    if (!/^[^/]+\/.+$/.test(model) || !fine(price?.inputPerMillion) || !fine(price?.outputPerMillion)) {
      throw new Error(`prices["${model}"] must be keyed "provider/model" and give inputPerMillion and outputPerMillion as non-negative numbers`);
    }
  }
  validateBudgets(config.budgets);
  if (!Number.isInteger(config.console.port) || config.console.port < 0 || config.console.port > 65535) {
    throw new Error(`console.port must be between 0 and 65535, got ${config.console.port}`);
  }
  if (!Number.isInteger(config.metrics.port) || config.metrics.port < 0 || config.metrics.port > 65535) {
    throw new Error(`metrics.port must be between 0 and 65535, got ${config.metrics.port}`);
  }
  const hostPort = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/;
  if (config.cluster.advertiseAddress !== "" && !hostPort.test(config.cluster.advertiseAddress)) {
    throw new Error(`cluster.advertiseAddress must be host:port (how the other nodes reach this one), got "${config.cluster.advertiseAddress}"`);
  }
  if (config.console.advertiseAddress !== "" && !hostPort.test(config.console.advertiseAddress)) {
    throw new Error(`console.advertiseAddress must be host:port (how the other nodes' consoles reach this one), got "${config.console.advertiseAddress}"`);
  }
  if (!LOG_FORMATS.includes(config.logFormat)) {
    throw new Error(`logFormat must be "auto", "json" or "pretty", got "${String(config.logFormat)}"`);
  }
  positive("console.maxStreams", config.console.maxStreams);
  positive("limits.maxSessions", config.limits.maxSessions);
  positive("limits.maxSessionsPerOwner", config.limits.maxSessionsPerOwner);
  positive("limits.maxConcurrentTurnsPerOwner", config.limits.maxConcurrentTurnsPerOwner);
  // The largest session a client can make (bounded inputs) must fit in one reply.
  if (!Number.isInteger(config.grpc.maxMessageBytes) || config.grpc.maxMessageBytes < 4 * 1024 * 1024) {
    throw new Error(`grpc.maxMessageBytes must be at least 4194304 (4 MiB), got ${config.grpc.maxMessageBytes}`);
  }
  positive("grpc.maxConcurrentStreams", config.grpc.maxConcurrentStreams);
  positive("grpc.maxPendingEvents", config.grpc.maxPendingEvents);
  positive("grpc.maxPendingEventChars", config.grpc.maxPendingEventChars);
  positive("grpc.maxSubscriptionsPerOwner", config.grpc.maxSubscriptionsPerOwner);
  positive("grpc.maxSubscriptions", config.grpc.maxSubscriptions);
  positive("persistence.recentEventsMemoryBytes", config.persistence.recentEventsMemoryBytes);
  positive("persistence.maxEventsPerSession", config.persistence.maxEventsPerSession);
  positive("persistence.maxEventBytesPerSession", config.persistence.maxEventBytesPerSession);
  positive("persistence.checkpointIntervalMs", config.persistence.checkpointIntervalMs);
  positive("audit.maxBytes", config.audit.maxBytes);
  positive("audit.maxFiles", config.audit.maxFiles);
  if ((config.tls.certFile === "") !== (config.tls.keyFile === "")) throw new Error("tls.certFile and tls.keyFile go together");
  if (config.tls.clientCaFile !== "" && config.tls.certFile === "") throw new Error("tls.clientCaFile needs tls.certFile and tls.keyFile");
  if (config.auth.jwt) {
    const { jwksUrl, publicKeyFile, issuer, audience } = config.auth.jwt;
    if ((jwksUrl === "") === (publicKeyFile === "")) throw new Error("auth.jwt needs exactly one of jwksUrl or publicKeyFile");
    if (issuer === "" || audience === "") throw new Error("auth.jwt needs issuer and audience");
  }
  positive("sessionDefaults.maxToolRounds", config.sessionDefaults.maxToolRounds);
  positive("mcp.backoffBaseMs", config.mcp.backoffBaseMs);
  positive("mcp.backoffMaxMs", config.mcp.backoffMaxMs);
  positive("mcp.connectTimeoutMs", config.mcp.connectTimeoutMs);
  positive("mcp.maxServersPerSession", config.mcp.maxServersPerSession);
  positive("mcp.callTimeoutMs", config.mcp.callTimeoutMs);
  positive("subagents.maxTasksPerTurn", config.subagents.maxTasksPerTurn);
  if (!Number.isInteger(config.subagents.maxDepth) || config.subagents.maxDepth < 0) {
    throw new Error(`subagents.maxDepth must be an integer >= 0 (0 turns the task tool off), got ${config.subagents.maxDepth}`);
  }
  // Global MCP servers are checked when the config is read, so a typo stops the start with its name.
  parseMcpServers(config.mcpServers, "mcpServers");
  if (config.sessionDefaults.toolTimeoutMs < 0) throw new Error("sessionDefaults.toolTimeoutMs must be >= 0");
}
