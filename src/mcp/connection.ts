import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import type { Tool as SdkTool } from "@modelcontextprotocol/sdk/types.js";
import type { Logger } from "../logging.js";
import type { ToolReturn } from "../tools/types.js";
import { DEFAULT_BACKOFF, retryDelayMs, type Backoff } from "./backoff.js";
import { mapCallToolResult } from "./result.js";
import { describeTarget, scrub, secretsOf } from "./secrets.js";
import { nameTools } from "./tools.js";
import { describeError } from "./describe-error.js";
import { loadedMcpSdk, loadMcpSdk } from "./sdk.js";
import type { OpenedClient, StdioTransport } from "./transport.js";
import type { McpServerState, McpServerStatus, McpToolInfo, McpTransportKind, McpTransportSpec } from "./types.js";

/** What agentd tells MCP servers it is. */
export const MCP_CLIENT_INFO = { name: "agentd", version: "0.1.0" } as const;

const DEFAULT_CONNECT_TIMEOUT_MS = 60_000;
/** A connection lost sooner than this after it was made counts against the backoff, like a failed one. */
const STABLE_AFTER_MS = 60_000;
/** The SDK always sets a timeout; "none" is a day. */
const NO_TIMEOUT_MS = 24 * 60 * 60 * 1000;
const MAX_TOOLS = 1_000;
const MAX_TOOL_PAGES = 100;
const MAX_ERROR_CHARS = 1_000;
/** Lines a server writes to stderr that read like trouble are logged as warnings. */
const TROUBLE = /\b(error|fatal|panic|exception|traceback|failed)\b/i;

export interface McpConnectionOptions {
  logger: Logger;
  backoff?: Backoff;
  /** For connecting and initializing, and for listing tools. */
  connectTimeoutMs?: number;
  /** The tool list changed: after (re)connecting with different tools, or on the server's notice. */
  onToolsChanged?: () => void;
  onStateChanged?: (status: McpServerStatus) => void;
}

export interface McpCallOptions {
  /** Aborting cancels the call on the server (notifications/cancelled) and rejects with an AbortError. */
  signal: AbortSignal;
  /** The SDK's own limit for the call; when it passes, the call returns an is_error result. */
  timeoutMs: number;
}

/** The connected client, with what it was opened on. */
interface Live extends OpenedClient {
  connectedAtMs: number;
}

/**
 * One MCP server, kept connected: it connects in the background, reconnects with backoff whenever
 * the connection fails or is lost, until close(). Its tools stay listed while it is down, and calls
 * to them then answer at once that the server is unavailable.
 */
export class McpConnection {
  readonly logger: Logger;
  private readonly backoff: Backoff;
  private readonly connectTimeoutMs: number;
  private readonly secrets: string[];
  private readonly target: string;

  private state: McpServerState = "disconnected";
  private kind: McpTransportKind;
  private error = "";
  private serverName = "";
  private serverVersion = "";
  private listed: McpToolInfo[] = [];
  private attempts = 0;
  /** Connections in a row lost soon after they were made. */
  private flaps = 0;
  private nextRetryAtMs = 0;
  private lastStderrLine = "";

  private started = false;
  private closed = false;
  private closing: Promise<void> | null = null;
  private live: Live | null = null;
  /** The stdio transport of the attempt under way or of the live connection: for the pid. */
  private stdio: StdioTransport | null = null;
  private attempt: { controller: AbortController; done: Promise<void> } | null = null;
  private retryTimer: NodeJS.Timeout | undefined;
  private refreshing: Promise<void> | null = null;
  private refreshAgain = false;

  constructor(
    readonly name: string,
    readonly spec: McpTransportSpec,
    private readonly options: McpConnectionOptions,
  ) {
    this.logger = options.logger.child({ mcpServer: name });
    this.backoff = options.backoff ?? DEFAULT_BACKOFF;
    this.connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.secrets = secretsOf(spec);
    this.target = describeTarget(spec);
    this.kind = spec.type;
  }

  /** Starts connecting in the background; see status() for how it goes. */
  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    this.beginAttempt();
  }

  /** The tools the server last listed, kept while it is down. */
  tools(): McpToolInfo[] {
    return [...this.listed];
  }

  /** The same list, not copied: a new array each time the list changes, so it can key a cache. */
  get listedTools(): readonly McpToolInfo[] {
    return this.listed;
  }

  status(): McpServerStatus {
    const running = this.state === "connecting" || this.state === "connected";
    return {
      name: this.name,
      transport: this.kind,
      target: this.target,
      state: this.state,
      error: this.error,
      serverName: this.serverName,
      serverVersion: this.serverVersion,
      toolCount: this.listed.length,
      pid: running ? (this.stdio?.pid ?? null) : null,
      attempts: this.attempts,
      nextRetryAtMs: this.state === "failed" ? this.nextRetryAtMs : 0,
    };
  }

  /**
   * Calls a tool. Problems the model can read about (server down, timeout, the server closing during
   * the call, an error answer) come back as is_error results; only an aborted signal rejects, with an
   * AbortError, so the agent loop sees a cancellation.
   */
  async callTool(tool: string, args: Record<string, unknown>, options: McpCallOptions): Promise<ToolReturn> {
    const { signal, timeoutMs } = options;
    if (signal.aborted) throw abortError(tool, signal.reason);
    const live = this.live;
    if (!live || this.state !== "connected") return this.unavailable();
    try {
      const result = await live.client.callTool({ name: tool, arguments: args }, undefined, {
        signal,
        timeout: timeoutMs > 0 ? timeoutMs : NO_TIMEOUT_MS,
      });
      return mapCallToolResult(result);
    } catch (error) {
      if (signal.aborted) throw abortError(tool, signal.reason);
      return this.failedCall(tool, timeoutMs, live, error);
    }
  }

  /** Closes the connection for good: no retry after it. For stdio, the child is gone when this resolves. */
  close(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  private async shutDown(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    const attempt = this.attempt;
    attempt?.controller.abort(new Error("the connection was closed"));
    const live = this.live;
    this.live = null;
    await Promise.allSettled([attempt?.done, live && loadedMcpSdk().closeClient(live.client, live.transport)]);
    this.stdio = null;
    this.setState("disconnected");
  }

  private beginAttempt(): void {
    this.retryTimer = undefined;
    if (this.closed) return;
    this.nextRetryAtMs = 0;
    this.setState("connecting");
    const controller = new AbortController();
    const done = this.connect(controller).finally(() => {
      if (this.attempt?.controller === controller) this.attempt = null;
    });
    this.attempt = { controller, done };
  }

  private async connect(controller: AbortController): Promise<void> {
    const { signal } = controller;
    const timer = setTimeout(
      () => controller.abort(new Error(`the server did not answer within ${this.connectTimeoutMs} ms`)),
      this.connectTimeoutMs,
    );
    let opened: OpenedClient | undefined;
    try {
      this.lastStderrLine = "";
      const sdk = await loadMcpSdk();
      opened = await sdk.openClient(this.spec, {
        createClient: () => this.createClient(),
        signal,
        timeoutMs: this.connectTimeoutMs,
        onStderrLine: (line) => this.logStderr(line),
        onStdio: (transport) => {
          this.stdio = transport;
        },
      });
      const tools = await listAllTools(opened.client, signal, this.connectTimeoutMs);
      signal.throwIfAborted();
      // The server may have gone between the listing and here; adopting a dead client would look connected forever.
      if (!opened.client.transport) throw new Error("the server closed the connection");
      this.adopt(opened, tools);
    } catch (error) {
      if (opened) await loadedMcpSdk().closeClient(opened.client, opened.transport);
      if (this.closed) return;
      this.stdio = null;
      this.fail(signal.aborted ? signal.reason : error);
    } finally {
      clearTimeout(timer);
    }
  }

  private createClient(): Client {
    const sdk = loadedMcpSdk();
    const client = new sdk.Client({ ...MCP_CLIENT_INFO }, { capabilities: {} });
    client.onclose = () => this.lost(client);
    client.onerror = (error) => this.logger.debug({ error: this.clean(describeError(error)) }, "MCP transport error");
    client.setNotificationHandler(sdk.ToolListChangedNotificationSchema, async () => this.refreshTools(client));
    return client;
  }

  private adopt(opened: OpenedClient, tools: McpToolInfo[]): void {
    const info = opened.client.getServerVersion();
    this.live = { ...opened, connectedAtMs: Date.now() };
    this.kind = opened.kind;
    this.serverName = info?.name ?? "";
    this.serverVersion = info?.version ?? "";
    this.attempts = 0;
    this.error = "";
    const changed = this.setTools(tools);
    this.logger.info({ transport: this.kind, server: this.serverName, version: this.serverVersion, tools: tools.length }, "MCP server connected");
    this.setState("connected");
    if (changed) this.options.onToolsChanged?.();
  }

  /** The live connection ended without close(): the server exited or dropped us. */
  private lost(client: Client): void {
    const live = this.live;
    if (this.closed || !live || live.client !== client) return;
    this.live = null;
    this.stdio = null;
    void loadedMcpSdk().closeClient(live.client, live.transport);
    // A server that dies soon after every connect must back off like one that never connects.
    this.flaps = Date.now() - live.connectedAtMs < STABLE_AFTER_MS ? this.flaps + 1 : 0;
    this.fail(new Error("the server closed the connection"));
  }

  private fail(error: unknown): void {
    this.attempts += 1;
    // A server that cannot start usually says why just before it exits.
    const connecting = this.state === "connecting" && this.lastStderrLine !== "";
    const stderr = connecting ? ` (its last stderr line: ${this.lastStderrLine.slice(0, 300)})` : "";
    this.error = this.clean(describeError(error) + stderr);
    const delay = retryDelayMs(this.backoff, this.attempts + this.flaps);
    this.nextRetryAtMs = Date.now() + delay;
    this.retryTimer = setTimeout(() => this.beginAttempt(), delay);
    // A pending retry alone must not keep the process alive.
    this.retryTimer.unref();
    this.logger.warn({ attempts: this.attempts, retryInMs: delay, error: this.error }, "MCP server unavailable; retrying");
    this.setState("failed");
  }

  /** Lists again after the server's tools/list_changed; refreshes never overlap, a notice during one runs another. */
  private async refreshTools(client: Client): Promise<void> {
    if (this.refreshing) {
      this.refreshAgain = true;
      return this.refreshing;
    }
    this.refreshing = (async () => {
      do {
        this.refreshAgain = false;
        if (this.live?.client !== client) return;
        try {
          const tools = await listAllTools(client, AbortSignal.timeout(this.connectTimeoutMs), this.connectTimeoutMs);
          if (this.live?.client === client && this.setTools(tools)) this.options.onToolsChanged?.();
        } catch (error) {
          this.logger.warn({ error: this.clean(describeError(error)) }, "MCP server announced new tools but listing them failed");
        }
      } while (this.refreshAgain);
    })().finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  /** Keeps a new list; true when it differs from the last one. */
  private setTools(tools: McpToolInfo[]): boolean {
    const changed = JSON.stringify(tools) !== JSON.stringify(this.listed);
    this.listed = tools;
    if (changed) for (const reason of nameTools(this.name, tools).skipped) this.logger.warn(`MCP tool left out: ${reason}`);
    return changed;
  }

  private failedCall(tool: string, timeoutMs: number, live: Live, error: unknown): ToolReturn {
    const server = `MCP server "${this.name}"`;
    const { McpError, ErrorCode } = loadedMcpSdk();
    if (error instanceof McpError && error.code === ErrorCode.RequestTimeout) {
      return { isError: true, output: `MCP tool "${tool}" of server "${this.name}" timed out after ${timeoutMs} ms` };
    }
    if (error instanceof McpError && error.code === ErrorCode.ConnectionClosed) {
      return { isError: true, output: `${server} closed the connection during the call to "${tool}"; it is being restarted, try again later` };
    }
    if (error instanceof McpError) {
      return { isError: true, output: `${server} answered the call to "${tool}" with an error: ${this.clean(error.message)}` };
    }
    // Over HTTP nothing tells us a server went away until a request fails to reach it: reconnect then.
    if (live.kind !== "stdio" && isTransportFailure(error)) this.lost(live.client);
    return { isError: true, output: `the call to "${tool}" on ${server} failed: ${this.clean(describeError(error))}` };
  }

  private unavailable(): ToolReturn {
    const why = this.error ? `${this.state}: ${this.error}` : this.state;
    return { isError: true, output: `MCP server "${this.name}" is unavailable (${why}); try again later` };
  }

  private logStderr(line: string): void {
    const text = this.clean(line);
    if (text.trim() === "") return;
    this.lastStderrLine = text;
    if (TROUBLE.test(text)) this.logger.warn({ stderr: text }, "MCP server stderr");
    else this.logger.info({ stderr: text }, "MCP server stderr");
  }

  /** A message safe to show and log: secrets scrubbed, length bounded. */
  private clean(text: string): string {
    const scrubbed = scrub(text, this.secrets);
    return scrubbed.length <= MAX_ERROR_CHARS ? scrubbed : `${scrubbed.slice(0, MAX_ERROR_CHARS)}…`;
  }

  private setState(state: McpServerState): void {
    this.state = state;
    this.options.onStateChanged?.(this.status());
  }
}

/** Every page of tools/list, up to MAX_TOOLS. */
async function listAllTools(client: Client, signal: AbortSignal, timeoutMs: number): Promise<McpToolInfo[]> {
  const tools: McpToolInfo[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < MAX_TOOL_PAGES && tools.length < MAX_TOOLS; page++) {
    const result = await client.listTools(cursor === undefined ? {} : { cursor }, { signal, timeout: timeoutMs });
    tools.push(...result.tools.map(toToolInfo));
    cursor = result.nextCursor;
    if (!cursor) break;
  }
  return tools.slice(0, MAX_TOOLS);
}

function toToolInfo(tool: SdkTool): McpToolInfo {
  return {
    name: tool.name,
    description: tool.description ?? tool.title ?? "",
    inputSchema: { ...tool.inputSchema },
    readOnlyHint: tool.annotations?.readOnlyHint === true,
  };
}

/** Failures to reach the server (fetch failing, an HTTP error status), as opposed to an answer. */
function isTransportFailure(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  return error.name !== "ZodError" && error.name !== "$ZodError";
}

function abortError(tool: string, reason: unknown): Error {
  const error = new Error(`the call to MCP tool "${tool}" was cancelled`, { cause: reason });
  error.name = "AbortError";
  return error;
}
