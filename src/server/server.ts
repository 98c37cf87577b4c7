import { Metadata, Server, type ChannelOptions, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { ClusterMembership } from "../cluster/membership.js";
import { PostgresSessionStore } from "../store/postgres/postgres-store.js";
import { ClusterRouter } from "./cluster-router.js";
import { countingCalls } from "./call-metrics.js";
import { tracingCalls } from "./call-tracing.js";
import type { SpanExporter } from "@opentelemetry/sdk-trace-base";
import type { SessionView } from "../session/session.js";
import type { SessionEvent } from "../events/types.js";
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
import { isLoopbackHost } from "../util/loopback.js";

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
  /** With tracing on: where spans go instead of the OTLP endpoint (tests: an in-memory exporter). */
  spanExporter?: SpanExporter;
}

export interface RunningServer {
  /** The bound port (useful with port 0). */
  port: number;
  address: string;
  runtime: Runtime;
  /** host:port of the Prometheus endpoint, when metrics are on. */
  metricsAddress: string | null;
  /** host:port of the web console, when it is on. */
  consoleAddress: string | null;
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
  if (config.console.enabled) {
    // The console acts as any caller can: the same rule as the gRPC port for listening beyond loopback.
    checkBindAllowed({ host: config.console.host, port: config.console.port, insecure: config.insecure }, authenticator);
    const consoleWarning = plaintextCredentialsWarning({ ...config, host: config.console.host, port: config.console.port, tls: { certFile: "", keyFile: "", clientCaFile: "" } });
    if (consoleWarning) logger.warn(`console: ${consoleWarning}`);
  }
  const credentials = createServerCredentials(config.tls);
  const warning = plaintextCredentialsWarning(config);
  if (warning) logger.warn(warning);
  const nodeId = config.cluster.enabled ? `${hostname()}-${process.pid}-${randomBytes(3).toString("hex")}` : "";
  const store = options.store ?? (await openStore(config, logger, nodeId || undefined));
  let cluster: ClusterMembership | undefined;
  if (config.cluster.enabled) {
    if (!(store instanceof PostgresSessionStore)) throw new Error('cluster.enabled needs store "postgres"');
    cluster = new ClusterMembership(store, { nodeId, address: "", leaseMs: config.cluster.leaseMs }, logger.child({ nodeId }));
  }
  // The SDK is loaded only when tracing is on; the core's spans are no-ops otherwise.
  const tracing = config.tracing.enabled ? (await import("../telemetry/tracing.js")).startTracing(config.tracing, options.spanExporter) : null;
  // Metrics follow every session's events from the start (restored ones included).
  let runtimeRef: Runtime | null = null;
  // prom-client is loaded only when metrics are on (it adds to every start otherwise).
  const metrics = config.metrics.enabled
    ? new (await import("../metrics/metrics.js")).AgentdMetrics(
        () => runtimeRef?.stats() ?? { sessionsByState: {}, pendingConfirmations: 0, unpersistedSessions: 0, persistenceLagSeconds: 0, eventMemoryBytes: 0 },
        (sessionId) => runtimeRef?.runsHere(sessionId) ?? true,
      )
    : null;
  const observe = metrics ? (session: SessionView, event: SessionEvent) => metrics.observe(session, event) : undefined;
  const runtime = await Runtime.open({ config, store, tools, logger, llm: options.llmFactory, cluster, observe }).catch(async (error: unknown) => {
    // A database pool left open would keep the process alive after a failed start.
    if (!options.store) await store.close?.().catch(() => {});
    await tracing?.shutdown().catch(() => {});
    throw error;
  });
  runtimeRef = runtime;
  const audit = AuditLog.open(config, logger);

  const server = new Server(serverOptions(config));
  const traced = <I extends object>(implementation: I): I => (tracing ? tracingCalls(implementation, SERVICE_NAME) : implementation);
  const counted = <I extends object>(implementation: I): I => (metrics ? countingCalls(implementation, (method, code) => metrics.grpcCall(method, code)) : implementation);
  const service = createAgentRuntimeService({
    runtime,
    logger,
    audit,
    authenticate: (call) => authenticator.authenticate(call),
    maxMessageBytes: config.grpc.maxMessageBytes,
    writerLimits: { maxWaitingMessages: config.grpc.maxPendingEvents, maxWaitingChars: config.grpc.maxPendingEventChars },
    streamLimits: { perCaller: config.grpc.maxSubscriptionsPerOwner, total: config.grpc.maxSubscriptions },
  });
  // In a cluster, a call on a session goes to the node that runs the session's tree.
  const router = cluster ? new ClusterRouter({ runtime, nodeId, leaseMs: config.cluster.leaseMs, maxMessageBytes: config.grpc.maxMessageBytes, minPingIntervalMs: config.grpc.minClientPingIntervalMs, logger, authenticate: (call) => authenticator.authenticate(call) }) : null;
  server.addService(
    markingOutOfRangeNumbers(router ? ClusterRouter.passingBytesThrough(AgentRuntimeService) : AgentRuntimeService),
    counted(traced(refusingOutOfRangeNumbers(router ? (router.wrap(AgentRuntimeService, service as unknown as UntypedServiceImplementation) as unknown as typeof service) : service))),
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
  // A port that cannot be had (console, metrics) fails the start: what already runs is stopped first.
  const undoStart = async (error: unknown): Promise<never> => {
    server.forceShutdown();
    await runtime.close().catch(() => {});
    await audit.close().catch(() => {});
    await tracing?.shutdown().catch(() => {});
    throw error;
  };
  const consoleEndpoint = config.console.enabled
    ? await (await import("../console/http-api.js")).serveConsole({
        runtime,
        logger,
        audit: (entry) => audit.record(entry),
        host: config.console.host,
        port: config.console.port,
        maxStreams: config.console.maxStreams,
        cluster: cluster ? { consoleOf: (id) => cluster.consoleOf(id), nodeId: cluster.nodeId } : undefined,
        authenticate: (token) => {
          const metadata = new Metadata();
          if (token !== "") metadata.set("authorization", `Bearer ${token}`);
          return authenticator.authenticate({ metadata, getAuthContext: () => null });
        },
      }).catch(undoStart)
    : null;
  const metricsEndpoint = metrics
    ? await (await import("../metrics/http.js")).serveMetrics(metrics, config.metrics.host, config.metrics.port).catch(async (error: unknown) => {
        await consoleEndpoint?.close();
        return undoStart(error);
      })
    : null;
  if (cluster) {
    // A wildcard host becomes this machine's name; an IPv6 address goes in brackets.
    const reachable = (host: string, bound: string) => {
      const name = host === "0.0.0.0" || host === "::" ? hostname() : host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
      return `${name}:${bound.slice(bound.lastIndexOf(":") + 1)}`;
    };
    const grpcAt = config.cluster.advertiseAddress || reachable(config.host, `:${port}`);
    let consoleAt = consoleEndpoint ? config.console.advertiseAddress || reachable(config.console.host, consoleEndpoint.address) : "";
    // A console on loopback is not reachable from nodes on other machines: it is not offered to them.
    if (consoleAt !== "" && config.console.advertiseAddress === "" && isLoopbackHost(config.console.host) && !isLoopbackHost(grpcAt.slice(0, grpcAt.lastIndexOf(":")))) {
      logger.warn("console: it listens on loopback, so the other nodes' consoles cannot send requests for this node's sessions to it; set console.host (and console.advertiseAddress) to an address they reach");
      consoleAt = "";
    }
    await cluster.join(grpcAt, consoleAt);
  }
  const auth = authenticator.required ? authenticator.describe() : ["none (every caller is an admin)"];
  const tls = config.tls.certFile === "" ? "off" : config.tls.clientCaFile === "" ? "on" : "mutual";
  logger.info({ address, dataDir: path.resolve(config.dataDir), store: config.store, storedIn: describeStore(config), auth, tls, ...(cluster ? { nodeId, advertised: cluster.settings.address } : {}), ...(metricsEndpoint ? { metrics: `http://${metricsEndpoint.address}/metrics` } : {}), ...(consoleEndpoint ? { console: `http://${consoleEndpoint.address}/` } : {}) }, "agentd listening");

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      health.setStatus("", "NOT_SERVING");
      health.setStatus(SERVICE_NAME, "NOT_SERVING");
      await consoleEndpoint?.close();
      if (cluster) await drain(cluster, runtime, config.cluster.drainTimeoutMs, logger);
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
      router?.close();
      await metricsEndpoint?.close();
      await tracing?.shutdown();
      await audit.close();
      logger.info({ pendingWrites }, "agentd stopped");
    })());

  return { port, address, runtime, close, metricsAddress: metricsEndpoint?.address ?? null, consoleAddress: consoleEndpoint?.address ?? null };
}

/**
 * A cluster node's graceful stop: it takes no more leases, hands back its idle trees at once (other
 * nodes take them on their next call), and lets running turns finish up to the deadline, handing
 * each tree back as it goes idle. What still runs then is cancelled by the caller.
 */
async function drain(cluster: ClusterMembership, runtime: Runtime, timeoutMs: number, logger: Logger): Promise<void> {
  await cluster.drain();
  const deadline = Date.now() + timeoutMs;
  let busy = await runtime.releaseIdleTrees();
  logger.info({ running: busy, timeoutMs }, "draining: idle session trees handed over; waiting for running turns");
  while (busy > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    busy = await runtime.releaseIdleTrees();
  }
  if (busy > 0) logger.warn({ running: busy }, "drain deadline passed; cancelling the turns still running");
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
