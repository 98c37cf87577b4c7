import { parseArgs } from "node:util";
import { readConfigFile, resolveConfig, type ConfigOverrides } from "../config/config.js";
import { createLogger } from "../logging.js";
import { startServer } from "../server/server.js";
import { modelOptions, modelFromOptions } from "./model-options.js";
import { definedOnly } from "../util/defined.js";

const HELP = `agentd serve: start the server

  --host H                  listen address (default 127.0.0.1)
  --port P                  port (default 50051; 0 picks a free one)
  --data-dir DIR            sessions and default workspaces (default ./.agentd)
  --store file|memory       where sessions are kept (default file)
  --log-level L             pino level: trace, debug, info, warn, error (default info)
  --config FILE             JSON file with any of the settings (see README); flags win over it
  --max-sessions N          live sessions in the server
  --max-sessions-per-owner N
  --provider, --model, --base-url, --script, --api-key-env
                            default model for sessions created without one`;

export async function runServe(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      host: { type: "string" },
      port: { type: "string" },
      "data-dir": { type: "string" },
      store: { type: "string" },
      "log-level": { type: "string" },
      config: { type: "string" },
      "max-sessions": { type: "string" },
      "max-sessions-per-owner": { type: "string" },
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
    store: values.store as "file" | "memory" | undefined,
    logLevel: values["log-level"],
    limits: definedOnly({
      maxSessions: toInt(values["max-sessions"], "--max-sessions"),
      maxSessionsPerOwner: toInt(values["max-sessions-per-owner"], "--max-sessions-per-owner"),
    }),
  };
  const model = modelFromOptions(values);
  if (model) fromFlags.sessionDefaults = { model };
  const config = resolveConfig(values.config ? readConfigFile(values.config) : {}, fromFlags);
  const logger = createLogger(config.logLevel);
  const server = await startServer({ config, logger });

  const stop = (signal: string) => {
    logger.info({ signal }, "shutting down");
    server.close().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.once("SIGINT", () => stop("SIGINT"));
  process.once("SIGTERM", () => stop("SIGTERM"));
  return new Promise<number>(() => {});
}

function toInt(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const parsed = Number(value);
  if (!Number.isInteger(parsed)) throw new Error(`${flag} must be an integer, got "${value}"`);
  return parsed;
}
