import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { ClientReadableStream, ServiceError } from "@grpc/grpc-js";
import { afterAll, beforeAll } from "vitest";
import { AgentdClient, events } from "../../src/client/client.js";
import { resolveConfig, type ConfigOverrides } from "../../src/config/config.js";
import type { AgentEvent, ModelConfig, StreamGenerateResponse } from "../../src/gen/agentd/v1/runtime.js";
import { createLogger } from "../../src/logging.js";
import { startServer, type RunningServer, type ServerOptions } from "../../src/server/server.js";

export interface TestServer {
  server: RunningServer;
  client: AgentdClient;
  dataDir: string;
  /** Every log line the server wrote, parsed. */
  logs: Array<Record<string, unknown>>;
  /** Stops the server (gracefully) and closes the client; the data dir is kept. */
  stop(): Promise<void>;
}

const tempDirs: string[] = [];

export async function makeTempDir(prefix = "agentd-test-"): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

export async function removeTempDirs(): Promise<void> {
  await Promise.all(tempDirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
}

/** Starts a real server on an ephemeral loopback port with a file store in a temp dir. */
export async function startTestServer(
  options: { dataDir?: string; config?: ConfigOverrides } & Omit<ServerOptions, "config" | "logger"> = {},
): Promise<TestServer> {
  const dataDir = options.dataDir ?? (await makeTempDir());
  const logs: Array<Record<string, unknown>> = [];
  const logger = createLogger("debug", { write: (line: string) => void logs.push(JSON.parse(line)) });
  // Tests of other features run without the permission gate's questions (ASK behaves as ALLOW);
  // the tests of permissions turn confirmations back on for their sessions.
  const config = resolveConfig(
    {
      host: "127.0.0.1",
      port: 0,
      dataDir,
      persistence: { debounceMs: 5, retryBaseMs: 20, retryMaxMs: 100 },
      sessionDefaults: { confirmation: { enabled: false, timeoutMs: 30_000, timeoutAction: "reject" } },
    },
    options.config ?? {},
  );
  const server = await startServer({ ...options, config, logger });
  const client = new AgentdClient(server.address);
  return {
    server,
    client,
    dataDir,
    logs,
    stop: async () => {
      client.close();
      await server.close();
    },
  };
}

/**
 * Starts servers for the tests of a file, each with its own data dir, and stops them all (and
 * removes the temp dirs) after the last test.
 */
export function serversStoppedAfterAll(): (options?: Parameters<typeof startTestServer>[0]) => Promise<TestServer> {
  const started: TestServer[] = [];
  afterAll(async () => {
    await Promise.all(started.splice(0).map((s) => s.stop()));
    await removeTempDirs();
  });
  return async (options = {}) => {
    const server = await startTestServer(options);
    started.push(server);
    return server;
  };
}

/** One server for all tests of a file: started before the first, stopped (with its temp dirs) after the last. */
export function useSharedTestServer(): () => TestServer {
  let current: TestServer | undefined;
  beforeAll(async () => {
    current = await startTestServer();
  });
  afterAll(async () => {
    await current?.stop();
    await removeTempDirs();
  });
  return () => {
    if (!current) throw new Error("the shared test server is not running");
    return current;
  };
}

export interface ScriptStep {
  text?: string;
  chunkSize?: number;
  delayMs?: number;
  toolCalls?: Array<{ id?: string; name: string; arguments: Record<string, unknown> }>;
  usage?: { inputTokens: number; outputTokens: number };
  stopReason?: string;
  error?: { code: string; message: string };
}

/** A model config for the scripted provider with an inline script. */
export function scripted(steps: ScriptStep[], repeat = false): ModelConfig {
  return {
    provider: "scripted",
    model: "script",
    baseUrl: "",
    apiKeyEnv: "",
    scriptPath: "",
    scriptJson: JSON.stringify({ steps, repeat }),
  };
}

/** Reads a whole StreamGenerate call. */
export async function collect(call: ClientReadableStream<StreamGenerateResponse>): Promise<AgentEvent[]> {
  const result: AgentEvent[] = [];
  for await (const event of events(call)) result.push(event);
  return result;
}

/** The gRPC error a promise rejects with; fails the test when it resolves. */
export async function grpcError(promise: Promise<unknown>): Promise<ServiceError> {
  try {
    await promise;
  } catch (error) {
    return error as ServiceError;
  }
  throw new Error("expected the call to fail");
}

export function cases(events: AgentEvent[]): string[] {
  return events.map((e) => e.payload?.$case ?? "none");
}

/** Polls until `check` returns a value that is not undefined, or fails after `timeoutMs`. */
export async function waitFor<T>(check: () => T | undefined | Promise<T | undefined>, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
