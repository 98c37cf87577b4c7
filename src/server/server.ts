import { Server, ServerCredentials } from "@grpc/grpc-js";
import { HealthImplementation } from "grpc-health-check";
import path from "node:path";
import type { RuntimeConfig } from "../config/config.js";
import { errorMessage } from "../errors.js";
import { AgentRuntimeService } from "../gen/agentd/v1/runtime.js";
import type { LlmClientFactory } from "../llm/factory.js";
import type { Logger } from "../logging.js";
import { Runtime } from "../runtime/runtime.js";
import { FileSessionStore } from "../store/file-store.js";
import { MemoryStore } from "../store/memory-store.js";
import type { SessionStore } from "../store/types.js";
import { ToolRegistry } from "../tools/registry.js";
import type { Tool } from "../tools/types.js";
import { createReflectionService } from "./reflection.js";
import { createAgentRuntimeService } from "./service.js";

const SERVICE_NAME = "agentd.v1.AgentRuntime";
const SHUTDOWN_GRACE_MS = 5_000;

export interface ServerOptions {
  config: RuntimeConfig;
  logger: Logger;
  /** Replaces the store chosen by config.store (tests use failing or shared stores). */
  store?: SessionStore;
  /** Tools registered next to the built-in ones. */
  extraTools?: Tool[];
  llmFactory?: LlmClientFactory;
}

export interface RunningServer {
  /** The bound port (useful with port 0). */
  port: number;
  address: string;
  runtime: Runtime;
  /** Graceful stop: refuse new calls, cancel running turns, flush the store. */
  close(): Promise<void>;
}

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const { config, logger } = options;
  const store = options.store ?? (config.store === "memory" ? new MemoryStore() : new FileSessionStore(config.dataDir));
  const tools = ToolRegistry.withBuiltins();
  for (const tool of options.extraTools ?? []) tools.register(tool);
  const runtime = await Runtime.open({ config, store, tools, logger, llm: options.llmFactory });

  const server = new Server();
  server.addService(AgentRuntimeService, createAgentRuntimeService(runtime, logger));
  const health = new HealthImplementation({ "": "SERVING", [SERVICE_NAME]: "SERVING" });
  health.addToServer(server);
  createReflectionService().addToServer(server);

  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${config.host}:${config.port}`, ServerCredentials.createInsecure(), (error, bound) => {
      if (error) reject(new Error(`cannot listen on ${config.host}:${config.port}: ${errorMessage(error)}`));
      else resolve(bound);
    });
  });
  const address = `${config.host}:${port}`;
  logger.info({ address, dataDir: path.resolve(config.dataDir), store: config.store }, "agentd listening");

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      health.setStatus("", "NOT_SERVING");
      health.setStatus(SERVICE_NAME, "NOT_SERVING");
      await runtime.stopTurns();
      await new Promise<void>((resolve) => {
        // Calls still open after the grace period (a client that never reads) are cut off.
        const force = setTimeout(() => server.forceShutdown(), SHUTDOWN_GRACE_MS);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      const pendingWrites = await runtime.close();
      logger.info({ pendingWrites }, "agentd stopped");
    })());

  return { port, address, runtime, close };
}
