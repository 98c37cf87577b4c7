/**
 * agentd as production starts it (`startServer`, the file store, JSON logs at the configured level
 * written to stdout, which the bench sends nowhere), in a process of its own, on port 0.
 *
 * Run by bench/run.ts:  node --import tsx --expose-gc bench/agentd-server.ts '<config overrides as JSON>'
 * IPC requests: {type: "heap"} answers the heap in use after full collections.
 */
import { resolveConfig, type ConfigOverrides } from "../src/config/config.js";
import { createLogger } from "../src/logging.js";
import { startServer } from "../src/server/server.js";
import { heapUsedAfterGc, serveParent } from "./children.js";

const overrides = JSON.parse(process.argv[2]!) as ConfigOverrides;
const config = resolveConfig(overrides);
const logger = createLogger(config.logLevel, undefined, "json");

serveParent(
  async () => {
    const server = await startServer({ config, logger });
    return { port: server.port, address: server.address };
  },
  (message) => {
    if (message.type === "heap") return heapUsedAfterGc();
    throw new Error(`unknown request ${String(message.type)}`);
  },
);
