import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { AgentdError, type ErrorKind } from "../errors.js";
import type { Logger } from "../logging.js";
import type { Caller } from "../runtime/caller.js";
import type { Runtime } from "../runtime/runtime.js";
import type { SessionView } from "../session/session.js";
import { CONSOLE_PAGE } from "./page.js";
import { isLoopbackHost } from "../util/loopback.js";
import { forwardToConsole, HOP_HEADER } from "./forward.js";

/**
 * The web console's edge: a small JSON + server-sent-events API over the Runtime, and the page that
 * uses it. A second edge beside the gRPC server, not a copy of its handlers: browsers cannot speak
 * gRPC over HTTP/2, and the console needs only a few reads, a turn, answers to confirmations and a
 * live event stream (SSE: one long GET a browser's EventSource reads, no library on either side).
 *
 *   GET  /                                       the page
 *   GET  /api/usage[?owner=NAME]                 what the caller (an admin: any owner) spent this budget period
 *   GET  /api/sessions                           sessions the caller may see (newest 200)
 *   GET  /api/sessions/:id                       a session, its tree's usage, its pending confirmations,
 *                                                its context usage, MCP servers and skills
 *   GET  /api/sessions/:id/messages              its transcript
 *   GET  /api/sessions/:id/events?after=N        its events after N, then live (text/event-stream)
 *   POST /api/sessions/:id/turns                 {"prompt"}: starts a turn owned by the server
 *   POST /api/sessions/:id/confirmations/:cid    {"decision": "approve"|"reject", "reason", "editedArgumentsJson", "remember"}
 *
 * Every /api call is authenticated like a gRPC call: `Authorization: Bearer <token>` (or
 * `?access_token=` for EventSource, which cannot set headers). On a cluster, a call about a session
 * another node runs is sent on to that node's console, so any node's console shows every session.
 */
export interface ConsoleOptions {
  runtime: Runtime;
  logger: Logger;
  /** Writes an audit line for each action (a turn started, a confirmation answered), as the gRPC port does. */
  audit(entry: { method: string; caller: Caller; sessionId: string; result: string; detail?: string; peer: string }): void;
  /** Who calls, from the bearer token ("" without one); rejects like the gRPC server would. */
  authenticate(token: string): Promise<Caller>;
  host: string;
  port: number;
  /** Event streams open at once (served here or sent on to another node's console); default 256. */
  maxStreams?: number;
  /** On a cluster: where a node's console answers (host:port), "" when it has none; and this node's id. */
  cluster?: { consoleOf(nodeId: string): Promise<string>; nodeId: string };
}

export interface ConsoleEndpoint {
  address: string;
  close(): Promise<void>;
}

const STATUS: Partial<Record<ErrorKind, number>> = {
  invalid_argument: 400,
  unauthenticated: 401,
  permission_denied: 403,
  not_found: 404,
  failed_precondition: 409,
  aborted: 409,
  already_exists: 409,
  out_of_range: 416,
  resource_exhausted: 429,
  unavailable: 503,
  deadline_exceeded: 504,
};
const MAX_BODY_BYTES = 1024 * 1024;
/** What may wait for one slow event-stream reader. */
const MAX_WAITING_BYTES = 4 * 1024 * 1024;
/** Event streams open at once on one console, unless configured. */
const MAX_STREAMS = 256;

/** What one console keeps between requests. */
interface ConsoleState {
  streams: number;
  maxStreams: number;
}

export async function serveConsole(options: ConsoleOptions): Promise<ConsoleEndpoint> {
  const state: ConsoleState = { streams: 0, maxStreams: options.maxStreams ?? MAX_STREAMS };
  const server: Server = createServer((request, response) => {
    handle(options, state, request, response).catch((error: unknown) => fail(response, error, options.logger));
  });
  // Streams stay open; closing the console ends them.
  const open = new Set<ServerResponse>();
  server.on("request", (_request, response: ServerResponse) => {
    open.add(response);
    response.once("close", () => open.delete(response));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (error) => reject(new Error(`cannot serve the console on ${options.host}:${options.port}: ${error.message}`)));
    server.listen(options.port, options.host, () => resolve());
  });
  const bound = server.address();
  const port = typeof bound === "object" && bound ? bound.port : options.port;
  return {
    address: `${options.host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const response of open) response.destroy();
        server.close(() => resolve());
      }),
  };
}

async function handle(options: ConsoleOptions, state: ConsoleState, request: IncomingMessage, response: ServerResponse): Promise<void> {
  const url = new URL(request.url ?? "/", "http://console");
  const path = url.pathname;
  if (request.method === "GET" && (path === "/" || path === "/index.html")) {
    response.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store", "content-security-policy": "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; frame-ancestors 'none'", "x-frame-options": "DENY" });
    response.end(CONSOLE_PAGE);
    return;
  }
  if (!path.startsWith("/api/")) throw new AgentdError("not_found", `nothing at ${path}; the console is at /`);
  checkSameOrigin(options, request);
  const header = request.headers.authorization ?? "";
  // EventSource cannot set headers: only the event stream takes the token from the query.
  const token = header.startsWith("Bearer ") ? header.slice(7) : path.endsWith("/events") ? (url.searchParams.get("access_token") ?? "") : "";
  const caller = await options.authenticate(token);
  const { runtime } = options;
  let parts: string[];
  try {
    parts = path.split("/").slice(2).map(decodeURIComponent);
  } catch {
    throw new AgentdError("invalid_argument", "the path has a malformed %-escape");
  }
  const [collection, sessionId, sub, subId] = parts;
  if (request.method === "GET" && collection === "usage" && parts.length === 1) {
    return json(response, 200, await runtime.ownerUsage(caller, url.searchParams.get("owner") ?? ""));
  }
  if (collection !== "sessions") throw new AgentdError("not_found", `no API at ${path}`);

  if (request.method === "GET" && parts.length === 1) {
    const page = await runtime.listSessionsEverywhere(caller, { owner: "", pageSize: 200, pageToken: "" });
    return json(response, 200, { sessions: page.sessions.map(sessionJson) });
  }
  if (sessionId === undefined) throw new AgentdError("not_found", `no API at ${path}`);
  // On a cluster, a session another node runs is served by that node's console, through this one.
  const place = await runtime.placeSession(caller, sessionId);
  if (place.kind === "elsewhere") return forward(options, state, request, response, sessionId, sub, place);
  if (request.method === "GET" && parts.length === 2) {
    const session = runtime.getSession(caller, sessionId);
    const context = await runtime.getContextUsage(caller, sessionId);
    return json(response, 200, {
      session: sessionJson(session),
      treeUsage: runtime.treeUsage(caller, sessionId),
      ownerUsage: await runtime.ownerUsage(caller, session.owner).catch(() => null),
      confirmations: runtime.listPendingConfirmations(caller, sessionId, true),
      context: { tokens: context.tokens, contextWindow: context.contextWindow, fraction: context.fraction, autoCompact: context.autoCompact },
      mcpServers: runtime.listMcpServers(caller, sessionId).map(({ status, scope }) => ({
        name: status.name,
        scope,
        transport: status.transport,
        state: status.state,
        toolCount: status.toolCount,
        error: status.error,
      })),
      skills: runtime.listSkills(caller, sessionId).skills.map(({ item, scope }) => ({ name: item.name, description: item.description, scope })),
    });
  }
  if (request.method === "GET" && sub === "messages" && parts.length === 3) {
    const messages = [];
    let pageToken = "";
    do {
      const page = runtime.messages(caller, sessionId, { pageSize: 1000, pageToken });
      messages.push(...page.messages);
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    return json(response, 200, { messages });
  }
  if (request.method === "GET" && sub === "events" && parts.length === 3) {
    const after = Number(url.searchParams.get("after") ?? "0");
    if (!Number.isSafeInteger(after) || after < 0) throw new AgentdError("invalid_argument", "after must be a whole number of 0 or more");
    return streamEvents(options, state, caller, sessionId, after, request, response);
  }
  if (request.method === "POST" && sub === "turns" && parts.length === 3) {
    const body = await readJson(request);
    const prompt = typeof body.prompt === "string" ? body.prompt : "";
    const started = audited(options, request, caller, "Console.StartTurn", sessionId, () => runtime.startServerTurn(caller, sessionId, prompt));
    return json(response, 202, started);
  }
  if (request.method === "POST" && sub === "confirmations" && subId !== undefined && parts.length === 4) {
    const body = await readJson(request);
    const decision = body.decision;
    if (decision !== "approve" && decision !== "reject") throw new AgentdError("invalid_argument", 'decision must be "approve" or "reject"');
    const outcome = audited(options, request, caller, "Console.ConfirmToolCall", sessionId, () => runtime.confirmToolCall(caller, sessionId, {
      confirmationId: subId,
      decision,
      reason: typeof body.reason === "string" ? body.reason : "",
      editedArgumentsJson: typeof body.editedArgumentsJson === "string" && body.editedArgumentsJson !== "" ? body.editedArgumentsJson : undefined,
      remember: body.remember === true,
    }));
    return json(response, 200, outcome);
  }
  throw new AgentdError("not_found", `no ${request.method} at ${path}`);
}

/**
 * Counts an event stream (served here or sent on) against the console's cap while it is open;
 * false when its reader has gone already (while the session was looked up): nothing to serve.
 */
function countStream(state: ConsoleState, response: ServerResponse): boolean {
  if (response.destroyed) return false;
  if (state.streams >= state.maxStreams) {
    throw new AgentdError("resource_exhausted", `the console has ${state.maxStreams} event streams open, its limit (console.maxStreams); close some pages or tabs`);
  }
  state.streams++;
  response.once("close", () => state.streams--);
  return true;
}

/** Sends the request on to the console of the node that runs the session; once, never on from there. */
async function forward(
  options: ConsoleOptions,
  state: ConsoleState,
  request: IncomingMessage,
  response: ServerResponse,
  sessionId: string,
  sub: string | undefined,
  place: { nodeId: string; address: string },
): Promise<void> {
  // Sent here by another console, yet run elsewhere: the session moved meanwhile.
  if (request.headers[HOP_HEADER] !== undefined) throw new AgentdError("unavailable", `session ${sessionId} just moved to another node; try again`);
  const target = options.cluster ? await options.cluster.consoleOf(place.nodeId) : "";
  if (target === "") throw new AgentdError("unavailable", `session ${sessionId} runs on another node (${place.address}) whose console is off or only on its loopback address; open the console there, or set its console.host and console.advertiseAddress`);
  const body = request.method === "POST" ? await readJson(request) : null;
  if (sub === "events" && !countStream(state, response)) return;
  await forwardToConsole(target, request, response, body, options.cluster!.nodeId);
}

/** The session's events as server-sent events: `event: agentd` with the event as JSON, `id:` its sequence. */
function streamEvents(options: ConsoleOptions, state: ConsoleState, caller: Caller, sessionId: string, after: number, request: IncomingMessage, response: ServerResponse): void {
  if (!countStream(state, response)) return;
  const lastEventId = Number(request.headers["last-event-id"] ?? "");
  const from = Number.isSafeInteger(lastEventId) && lastEventId > after ? lastEventId : after;
  const items = options.runtime.subscribe(caller, sessionId, { afterSequence: from, includeDescendants: false, fromOldestKept: true });
  response.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store", connection: "keep-alive" });
  response.write(": agentd events\n\n");
  const heartbeat = setInterval(() => response.write(": heartbeat\n\n"), 15_000);
  // A reader that stops reading is cut off once this much waits for it; EventSource reconnects with Last-Event-ID.
  const send = (text: string) => {
    response.write(text);
    if (response.writableLength > MAX_WAITING_BYTES) response.end();
  };
  const subscription = items.subscribe({
    next: (item) => {
      if (item.kind === "caught_up") send(`event: caught_up\ndata: ${JSON.stringify({ sequence: item.sequence })}\n\n`);
      else send(`${item.event.sequence > 0 ? `id: ${item.event.sequence}\n` : ""}event: agentd\ndata: ${JSON.stringify(item.event)}\n\n`);
    },
    error: (error: unknown) => {
      response.write(`event: failed\ndata: ${JSON.stringify({ message: error instanceof AgentdError ? error.message : "the stream failed; see the server log" })}\n\n`);
      response.end();
    },
    complete: () => response.end(),
  });
  response.once("close", () => {
    clearInterval(heartbeat);
    subscription.unsubscribe();
  });
}

/** Runs an action and writes its audit line, with its outcome. */
function audited<T>(options: ConsoleOptions, request: IncomingMessage, caller: Caller, method: string, sessionId: string, action: () => T): T {
  // A request another node's console sent on says which node (the socket's peer is that node).
  const hop = request.headers[HOP_HEADER];
  const via = typeof hop === "string" && /^[\w.:-]{1,100}$/.test(hop) ? ` (sent on by node ${hop})` : "";
  const peer = `${request.socket.remoteAddress ?? ""}:${request.socket.remotePort ?? ""}${via}`;
  try {
    const result = action();
    options.audit({ method, caller, sessionId, result: "OK", peer });
    return result;
  } catch (error) {
    options.audit({ method, caller, sessionId, result: error instanceof AgentdError ? error.kind.toUpperCase() : "INTERNAL", detail: error instanceof Error ? error.message : "", peer });
    throw error;
  }
}

/**
 * Another web page the user has open must not drive the console: a console on loopback answers
 * only requests addressed to a loopback name (a DNS-rebound name is refused), a browser's Origin must
 * be the console's own, and a POST must be JSON (which a page elsewhere cannot send without a
 * CORS preflight, which is never granted).
 */
function checkSameOrigin(options: ConsoleOptions, request: IncomingMessage): void {
  const host = request.headers.host ?? "";
  const hostName = host.startsWith("[") ? host.slice(0, host.indexOf("]") + 1) : host.split(":")[0]!;
  if (isLoopbackHost(options.host) && !isLoopbackHost(hostName)) {
    throw new AgentdError("permission_denied", `this console answers only on loopback addresses, not "${host}"`);
  }
  const origin = request.headers.origin;
  if (origin !== undefined && origin !== "null") {
    let originHost = "";
    try {
      originHost = new URL(origin).host;
    } catch {
      // refused below
    }
    if (originHost !== host) throw new AgentdError("permission_denied", "requests from other web pages are refused");
  } else if (origin === "null") {
    throw new AgentdError("permission_denied", "requests from other web pages are refused");
  }
  if (request.method === "POST" && !(request.headers["content-type"] ?? "").startsWith("application/json")) {
    throw new AgentdError("invalid_argument", "send the request body as JSON (content-type: application/json)");
  }
}

function sessionJson(session: SessionView): Record<string, unknown> {
  return {
    id: session.id,
    owner: session.owner,
    parentId: session.parentId,
    state: session.state,
    turnActive: session.activeTurnId !== null,
    activeTurnId: session.activeTurnId,
    messageCount: session.messageCount,
    lastSequence: session.lastSequence,
    usage: session.usage,
    labels: session.labels,
    agent: session.agent,
    model: session.config.model ? `${session.config.model.provider}/${session.config.model.model}` : null,
    createdAt: session.createdAt,
    updatedAt: session.updatedAt,
  };
}

async function readJson(request: IncomingMessage): Promise<Record<string, unknown>> {
  if (Number(request.headers["content-length"] ?? "0") > MAX_BODY_BYTES) {
    request.resume();
    throw new AgentdError("invalid_argument", `the request body is larger than ${MAX_BODY_BYTES} bytes`);
  }
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new AgentdError("invalid_argument", `the request body is larger than ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  if (size === 0) return {};
  try {
    const value: unknown = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    if (value !== null && typeof value === "object" && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch {
    // said below
  }
  throw new AgentdError("invalid_argument", "the request body must be a JSON object");
}

function json(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" });
  response.end(JSON.stringify(body));
}

function fail(response: ServerResponse, error: unknown, logger: Logger): void {
  if (response.headersSent) {
    response.end();
    return;
  }
  if (error instanceof AgentdError) return json(response, STATUS[error.kind] ?? 500, { error: error.kind, message: error.message });
  logger.error({ err: error }, "console request failed");
  json(response, 500, { error: "internal", message: "internal error; see the server log" });
}
