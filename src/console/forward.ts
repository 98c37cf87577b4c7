import { request as httpRequest, type IncomingMessage, type ServerResponse } from "node:http";
import { AgentdError } from "../errors.js";

/** Marks a request one console sent another: it is answered there, never sent on again. */
export const HOP_HEADER = "x-agentd-console-hop";

/** Request headers the console that runs the session needs; the browser's Origin was checked here. */
const PASSED_ON = ["authorization", "content-type", "accept", "last-event-id"] as const;
/** How long the other console may take to answer (an event stream then stays open). */
const CONNECT_TIMEOUT_MS = 10_000;

/**
 * Sends a console request on to the console of the node that runs the session (a cluster), and its
 * answer back: a JSON reply or a live event stream. `body` is what this console read and checked
 * already (a POST's JSON); the caller is authenticated again there, with the same token.
 */
export function forwardToConsole(target: string, request: IncomingMessage, response: ServerResponse, body: Record<string, unknown> | null, via: string): Promise<void> {
  const headers: Record<string, string> = { [HOP_HEADER]: via, host: target };
  for (const name of PASSED_ON) {
    const value = request.headers[name];
    if (typeof value === "string") headers[name] = value;
  }
  const payload = body === null ? null : Buffer.from(JSON.stringify(body));
  if (payload) headers["content-length"] = String(payload.length);
  const unreachable = (why: string) => new AgentdError("unavailable", `the console of the node that runs this session (${target}) did not answer: ${why}; try again`);
  let address: URL;
  try {
    address = new URL(`http://${target}`);
  } catch {
    return Promise.reject(unreachable("its registered address is not host:port"));
  }
  // The reader left while this node looked the session up: nothing to send on.
  if (response.destroyed) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const upstream = httpRequest({ host: address.hostname.replace(/^\[|\]$/g, ""), port: Number(address.port) || 80, method: request.method, path: request.url, headers, timeout: CONNECT_TIMEOUT_MS });
    upstream.on("timeout", () => upstream.destroy(new Error("timed out")));
    upstream.on("error", (error) => (response.headersSent ? response.destroy() : reject(unreachable(error.message))));
    upstream.once("response", (answer: IncomingMessage) => {
      // An event stream stays open as long as the reader does; any other answer must come in time.
      if (answer.headers["content-type"] === "text/event-stream") upstream.setTimeout(0);
      const kept: Record<string, string> = {};
      for (const name of ["content-type", "cache-control"]) {
        const value = answer.headers[name];
        if (typeof value === "string") kept[name] = value;
      }
      response.writeHead(answer.statusCode ?? 502, kept);
      answer.pipe(response);
      answer.once("end", () => resolve());
      answer.once("error", () => response.destroy());
    });
    // The reader went away (a closed page): the other console's stream ends too.
    response.once("close", () => {
      upstream.destroy();
      resolve();
    });
    upstream.end(payload ?? undefined);
  });
}
