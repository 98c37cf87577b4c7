import { context, propagation } from "@opentelemetry/api";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { getDefaultEnvironment, StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport, StreamableHTTPError } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import { httpEndpoint } from "./http-endpoint.js";
import { ensureExited, type StopGrace } from "./process.js";
import { onEachLine } from "./stderr-lines.js";
import type { McpTransportKind, McpTransportSpec } from "./types.js";
import { describeError } from "./describe-error.js";

/** Opening one connection to an MCP server: the transport, the initialize handshake, the HTTP fallback. */

/** A stdio transport that knows its child's pid from the moment it spawns, even after it is gone. */
export class StdioTransport extends StdioClientTransport {
  spawnedPid: number | null = null;

  override start(): Promise<void> {
    const started = super.start();
    // spawn() runs synchronously inside start(), so the pid is known here.
    this.spawnedPid = this.pid;
    return started;
  }
}

export interface OpenedClient {
  client: Client;
  transport: Transport;
  /** "sse" when an "http" spec fell back to the old transport. */
  kind: McpTransportKind;
}

export interface OpenOptions {
  /** A fresh, unconnected client: the HTTP fallback needs a second one. */
  createClient: () => Client;
  /** Aborting closes whatever is half open (a spawned child included) and rejects with the reason. */
  signal: AbortSignal;
  /** For the initialize request. */
  timeoutMs: number;
  /** Each line the stdio server writes to stderr. */
  onStderrLine: (line: string) => void;
  /** The stdio transport, as soon as it exists: its pid shows in the status while connecting. */
  onStdio?: (transport: StdioTransport) => void;
}

const STDERR_LINE_CHARS = 2_000;
const STOP_GRACE: StopGrace = { exitMs: 500, termMs: 1_500 };

/** A client connected (initialized) to the server `spec` names. Throws when it cannot be reached. */
export async function openClient(spec: McpTransportSpec, options: OpenOptions): Promise<OpenedClient> {
  switch (spec.type) {
    case "stdio": {
      const transport = new StdioTransport({
        command: spec.command,
        args: spec.args,
        env: { ...getDefaultEnvironment(), ...spec.env },
        ...(spec.cwd ? { cwd: spec.cwd } : {}),
        stderr: "pipe",
      });
      // Attached before start, so a server's first words (often why it fails) are not lost.
      if (transport.stderr) onEachLine(transport.stderr, STDERR_LINE_CHARS, options.onStderrLine);
      options.onStdio?.(transport);
      return connect(options.createClient(), transport, "stdio", options);
    }
    case "sse":
      return connect(options.createClient(), sseTransport(spec.url, spec.headers), "sse", options);
    case "http": {
      const { url, headers } = httpEndpoint(spec.url, spec.headers);
      try {
        const transport = new StreamableHTTPClientTransport(url, { requestInit: { headers }, fetch: tracedFetch });
        return await connect(options.createClient(), transport, "http", options);
      } catch (error) {
        if (options.signal.aborted || !meansNotStreamable(error)) throw error;
        // The SDK README's backwards compatibility: a 4xx on the first POST means an older, SSE-only server.
        try {
          return await connect(options.createClient(), sseTransport(spec.url, spec.headers), "sse", options);
        } catch (fallbackError) {
          if (options.signal.aborted) throw fallbackError;
          throw new Error(`Streamable HTTP failed (${describeError(error)}), and so did SSE (${describeError(fallbackError)})`, {
            cause: fallbackError,
          });
        }
      }
    }
  }
}

/**
 * Closes a client and its transport, and for stdio waits until the child is gone (SIGTERM, then
 * SIGKILL if it ignores its closed stdin). Never throws.
 */
export async function closeClient(client: Client, transport: Transport): Promise<void> {
  // Streamable HTTP sessions are ended explicitly (the spec's DELETE), so the server can free them.
  if (transport instanceof StreamableHTTPClientTransport && transport.sessionId !== undefined) {
    await withinMs(transport.terminateSession().catch(() => undefined), 1_000);
  }
  const pid = transport instanceof StdioTransport ? transport.spawnedPid : null;
  // client.close() is a no-op when connect never attached the transport, hence both.
  const closing = Promise.allSettled([client.close(), transport.close()]);
  if (pid !== null) await ensureExited(pid, STOP_GRACE);
  // The SDK's own stdio close can wait seconds for a pipe a grandchild holds open: don't wait that long.
  await withinMs(closing, 1_000);
}

/** Waits for `promise`, but no longer than `ms`. */
function withinMs(promise: Promise<unknown>, ms: number): Promise<unknown> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(resolve, ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function connect(client: Client, transport: Transport, kind: McpTransportKind, options: OpenOptions): Promise<OpenedClient> {
  const { signal, timeoutMs } = options;
  try {
    signal.throwIfAborted();
    // The race: a transport's start (SSE waiting for its endpoint event) does not listen to the signal.
    await raceAbort(client.connect(transport, { signal, timeout: timeoutMs }), signal);
    return { client, transport, kind };
  } catch (error) {
    await closeClient(client, transport);
    throw signal.aborted ? signal.reason : error;
  }
}

function sseTransport(specUrl: string, specHeaders: Record<string, string>): SSEClientTransport {
  const { url, headers } = httpEndpoint(specUrl, specHeaders);
  return new SSEClientTransport(url, { requestInit: { headers }, fetch: tracedFetch });
}

/** fetch with the active trace's W3C context added, so an HTTP MCP server continues the tool call's trace (a no-op without tracing). */
const tracedFetch = (url: string | URL, init?: RequestInit): Promise<Response> => {
  const headers = new Headers(init?.headers);
  propagation.inject(context.active(), headers, { set: (carrier, key, value) => carrier.set(key, value) });
  return fetch(url, { ...init, headers });
};

function meansNotStreamable(error: unknown): boolean {
  return error instanceof StreamableHTTPError && error.code !== undefined && error.code >= 400 && error.code < 500;
}

function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}
