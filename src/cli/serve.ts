import path from "node:path";
import { parseArgs } from "node:util";
import { readConfigFile, resolveConfig, type ConfigOverrides, type RuntimeConfig, type StoreKind } from "../config/config.js";
import { createLogger, LOG_FORMATS, resolveLogFormat, type LogFormatSetting } from "../logging.js";
import { startServer } from "../server/server.js";
import { describeStore } from "../store/open.js";
import { modelOptions, modelFromOptions } from "./model-options.js";
import { definedOnly } from "../util/defined.js";

const HELP = `agentd serve: start the server

  --host H                  listen address (default 127.0.0.1)
  --port P                  port (default 50051; 0 picks a free one)
  --data-dir DIR            sessions and default workspaces (default ./.agentd)
  --store file|memory|postgres
                            where sessions are kept (default file)
  --database-url URL        the postgres store's database, postgres://user:password@host:5432/db
                            (or AGENTD_DATABASE_URL, which keeps the password out of the process list)
  --otlp-endpoint URL       send OpenTelemetry traces there (OTLP/HTTP, e.g. http://127.0.0.1:4318/v1/traces)
  --console-port P          serve the web console at http://127.0.0.1:P/ (see README "Web console")
  --metrics-port P          serve Prometheus metrics at http://127.0.0.1:P/metrics (see README "Metrics")
  --cluster                 one of several nodes on the postgres store's database (see README
                            "Running several nodes"); --advertise-address HOST:PORT is how the
                            others reach this one, --lease-ms N how long a dead node's sessions wait
  --log-level L             pino level: trace, debug, info, warn, error (default info)
  --log-format F            auto, json or pretty (default auto: pretty on a terminal, JSON otherwise)
  --config FILE             JSON file with any of the settings (see README); flags win over it
  --max-sessions N          live sessions in the server
  --max-sessions-per-owner N
  --provider, --model, --base-url, --script, --api-key-env, --context-window
                            default model for sessions created without one (its endpoint, key
                            variable and script file are allowed for every session)

Security (see README "Running it for a team"):
  --tokens-file FILE        bearer tokens (see "agentd token create")
  --tls-cert FILE --tls-key FILE
                            serve TLS; --tls-client-ca FILE requires client certificates (mTLS)
  --insecure                allow a non-loopback --host without authentication
  --workspace-root DIR      where client-named workspaces may lie (repeatable; default <data dir>/workspaces)
  --scripts-dir DIR         where script_path files may lie (default <data dir>/scripts)
  --allow-base-url URL      a model endpoint sessions may use besides the official ones (repeatable)

Skills, subagents and MCP (see README "Skills, MCP servers and subagents"):
  --skills-dir DIR          global skills, one folder with a SKILL.md each (default <data dir>/skills)
  --agents-dir DIR          global subagent definitions, *.md files (default <data dir>/agents)
  --mcp-allow-command CMD   a command clients may run as a stdio MCP server (repeatable)
  Global MCP servers go in the config file's "mcpServers", in the shape editors use.`;

export async function runServe(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      host: { type: "string" },
      port: { type: "string" },
      "data-dir": { type: "string" },
      store: { type: "string" },
      "database-url": { type: "string" },
      cluster: { type: "boolean" },
      "metrics-port": { type: "string" },
      "console-port": { type: "string" },
      "otlp-endpoint": { type: "string" },
      "advertise-address": { type: "string" },
      "lease-ms": { type: "string" },
      "log-level": { type: "string" },
      "log-format": { type: "string" },
      config: { type: "string" },
      "max-sessions": { type: "string" },
      "max-sessions-per-owner": { type: "string" },
      "tokens-file": { type: "string" },
      "tls-cert": { type: "string" },
      "tls-key": { type: "string" },
      "tls-client-ca": { type: "string" },
      insecure: { type: "boolean" },
      "workspace-root": { type: "string", multiple: true },
      "scripts-dir": { type: "string" },
      "allow-base-url": { type: "string", multiple: true },
      "skills-dir": { type: "string" },
      "agents-dir": { type: "string" },
      "mcp-allow-command": { type: "string", multiple: true },
      help: { type: "boolean", short: "h" },
      ...modelOptions,
    },
    strict: true,
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const fromFlags: ConfigOverrides = {
    host: values.host,
    port: toInt(values.port, "--port"),
    dataDir: values["data-dir"],
    store: values.store as StoreKind | undefined,
    database: definedOnly({ url: values["database-url"] }),
    console: values["console-port"] === undefined ? undefined : { enabled: true, port: toInt(values["console-port"], "--console-port") },
    tracing: values["otlp-endpoint"] === undefined ? undefined : { enabled: true, otlpEndpoint: values["otlp-endpoint"] },
    metrics: values["metrics-port"] === undefined ? undefined : { enabled: true, port: toInt(values["metrics-port"], "--metrics-port") },
    cluster: definedOnly({ enabled: values.cluster, advertiseAddress: values["advertise-address"], leaseMs: toInt(values["lease-ms"], "--lease-ms") }),
    logLevel: values["log-level"],
    logFormat: logFormatFlag(values["log-format"]),
    limits: definedOnly({
      maxSessions: toInt(values["max-sessions"], "--max-sessions"),
      maxSessionsPerOwner: toInt(values["max-sessions-per-owner"], "--max-sessions-per-owner"),
    }),
    insecure: values.insecure,
    auth: definedOnly({ tokensFile: values["tokens-file"] }),
    tls: definedOnly({ certFile: values["tls-cert"], keyFile: values["tls-key"], clientCaFile: values["tls-client-ca"] }),
    sandbox: definedOnly({ allowedWorkspaceRoots: values["workspace-root"], scriptsDir: values["scripts-dir"] }),
    models: definedOnly({ allowedBaseUrls: values["allow-base-url"] }),
    skills: definedOnly({ dir: values["skills-dir"] }),
    agents: definedOnly({ dir: values["agents-dir"] }),
    mcp: definedOnly({ allowedCommands: values["mcp-allow-command"] }),
  };
  const model = modelFromOptions(values);
  if (model) fromFlags.sessionDefaults = { model };
  const fromEnvironment: ConfigOverrides = { database: definedOnly({ url: process.env.AGENTD_DATABASE_URL || undefined }) };
  const config = resolveConfig(values.config ? readConfigFile(values.config) : {}, fromEnvironment, fromFlags);
  if ((values["lease-ms"] !== undefined || values["advertise-address"] !== undefined) && !config.cluster.enabled) {
    throw new Error("--lease-ms and --advertise-address are settings of a cluster node: add --cluster");
  }
  const format = resolveLogFormat(config.logFormat);
  const logger = createLogger(config.logLevel, undefined, format);
  // Listening for signals before anything is printed: a signal with no listener kills the process
  // at once, so a supervisor that stops the server as soon as it announces itself gets a clean stop.
  const starting = startServer({ config, logger });
  const stop = (signal: string) => {
    logger.info({ signal }, "shutting down");
    starting
      .then((server) => server.close())
      .then(
        () => process.exit(0),
        (error: unknown) => {
          logger.error({ err: error }, "shutdown failed");
          process.exit(1);
        },
      );
  };
  process.once("SIGINT", () => stop("SIGINT"));
  process.once("SIGTERM", () => stop("SIGTERM"));
  const server = await starting;
  if (format === "pretty") process.stdout.write(`${banner(server.address, config)}\n`);
  return new Promise<number>(() => {});
}

/** The line a person at a terminal reads once the server is up. */
export function banner(address: string, config: Pick<RuntimeConfig, "dataDir" | "store" | "database">): string {
  const where = config.store === "postgres" ? `sessions in ${describeStore(config)}` : `data in ${path.resolve(config.dataDir)} (${config.store} store)`;
  return `agentd listening on ${address} · ${where} · Ctrl-C to stop`;
}

function logFormatFlag(value: string | undefined): LogFormatSetting | undefined {
  if (value === undefined) return undefined;
  if (!(LOG_FORMATS as readonly string[]).includes(value)) throw new Error(`--log-format must be auto, json or pretty, got "${value}"`);
  return value as LogFormatSetting;
}

function toInt(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const parsed = Number(value);
  if (!Number.isInteger(parsed)) throw new Error(`${flag} must be an integer, got "${value}"`);
  return parsed;
}
