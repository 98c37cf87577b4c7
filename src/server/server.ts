import { Server, type ChannelOptions } from "@grpc/grpc-js";
import { HealthImplementation } from "grpc-health-check";
import path from "node:path";
import type { RuntimeConfig } from "../config/config.js";
import { errorMessage } from "../errors.js";
import { AgentRuntimeService } from "../gen/agentd/v1/runtime.js";
import type { LlmClientFactory } from "../llm/factory.js";
import type { Logger } from "../logging.js";
import { Runtime } from "../runtime/runtime.js";
import { describeStore, openStore } from "../store/open.js";
import type { SessionStore } from "../store/types.js";
import { ToolRegistry } from "../tools/registry.js";
import type { Tool } from "../tools/types.js";
import { markingOutOfRangeNumbers, refusingOutOfRangeNumbers } from "./out-of-range-numbers.js";
import { AuditLog } from "./audit.js";
import { Authenticator, checkBindAllowed, plaintextCredentialsWarning } from "./auth/authenticator.js";
import { createServerCredentials } from "./auth/tls.js";
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
  const tools = ToolRegistry.withBuiltins();
  for (const tool of options.extraTools ?? []) tools.register(tool);
  // Everything that can refuse to start is checked before anything is restored or bound.
  const authenticator = await Authenticator.create(config);
  checkBindAllowed(config, authenticator);
  const credentials = createServerCredentials(config.tls);
  const warning = plaintextCredentialsWarning(config);
  if (warning) logger.warn(warning);
  const store = options.store ?? (await openStore(config, logger));
  const runtime = await Runtime.open({ config, store, tools, logger, llm: options.llmFactory }).catch(async (error: unknown) => {
    // A database pool left open would keep the process alive after a failed start.
    if (!options.store) await store.close?.().catch(() => {});
    throw error;
  });
  const audit = AuditLog.open(config, logger);

  const server = new Server(serverOptions(config));
  server.addService(
    markingOutOfRangeNumbers(AgentRuntimeService),
    refusingOutOfRangeNumbers(createAgentRuntimeService({
      runtime,
      logger,
      audit,
      authenticate: (call) => authenticator.authenticate(call),
      maxMessageBytes: config.grpc.maxMessageBytes,
      writerLimits: { maxWaitingMessages: config.grpc.maxPendingEvents, maxWaitingChars: config.grpc.maxPendingEventChars },
      streamLimits: { perCaller: config.grpc.maxSubscriptionsPerOwner, total: config.grpc.maxSubscriptions },
    })),
  );
  const health = new HealthImplementation({ "": "SERVING", [SERVICE_NAME]: "SERVING" });
  health.addToServer(server);
  createReflectionService().addToServer(server);

  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${config.host}:${config.port}`, credentials, (error, bound) => {
      if (error) reject(new Error(`cannot listen on ${config.host}:${config.port}: ${errorMessage(error)}`));
      else resolve(bound);
    });
  });
  const address = `${config.host}:${port}`;
  const auth = authenticator.required ? authenticator.describe() : ["none (every caller is an admin)"];
  const tls = config.tls.certFile === "" ? "off" : config.tls.clientCaFile === "" ? "on" : "mutual";
  logger.info({ address, dataDir: path.resolve(config.dataDir), store: config.store, storedIn: describeStore(config), auth, tls }, "agentd listening");

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
      await audit.close();
      logger.info({ pendingWrites }, "agentd stopped");
    })());

  return { port, address, runtime, close };
}

/** The transport limits an operator sets: message size, streams per connection, keepalive (the bench's raw server uses them too). */
export function serverOptions(config: RuntimeConfig): ChannelOptions {
  const g = config.grpc;
  return {
    "grpc.max_receive_message_length": g.maxMessageBytes,
    "grpc.max_send_message_length": g.maxMessageBytes,
    "grpc.max_concurrent_streams": g.maxConcurrentStreams,
    "grpc.keepalive_time_ms": g.keepaliveTimeMs,
    "grpc.keepalive_timeout_ms": g.keepaliveTimeoutMs,
    // Clients pinging more often than this are sent GOAWAY (grpc-js enforces it since 1.10).
    "grpc.http2.min_ping_interval_without_data_ms": g.minClientPingIntervalMs,
  };
}
