import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface RecordedRequest {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
  body: Record<string, unknown>;
}

export type Handler = (req: IncomingMessage, res: ServerResponse, body: Record<string, unknown>) => void | Promise<void>;

/** A loopback HTTP server standing in for a provider's API; `handler` is swapped per test. */
export class FakeServer {
  readonly requests: RecordedRequest[] = [];
  handler: Handler = (_req, res) => {
    res.writeHead(500).end();
  };
  private server: Server | undefined;
  private port = 0;

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const parts: Buffer[] = [];
      req.on("data", (part: Buffer) => parts.push(part));
      req.on("end", () => {
        const text = Buffer.concat(parts).toString("utf8");
        const body = (text === "" ? {} : JSON.parse(text)) as Record<string, unknown>;
        this.requests.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, body });
        void this.handler(req, res, body);
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }
}

/** Starts an SSE response. */
export function startSse(res: ServerResponse): void {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
}

/** Sends `frames` as one SSE response and ends it. */
export function sendSse(res: ServerResponse, frames: string[]): void {
  startSse(res);
  for (const frame of frames) res.write(frame);
  res.end();
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

/**
 * Resolves when the response's connection closes, with whether that happened before the response
 * was finished: true means the client hung up. (req's own "close" fires once its body is read.)
 */
export function hangUp(res: ServerResponse): Promise<boolean> {
  return new Promise((resolve) => res.once("close", () => resolve(!res.writableFinished)));
}

export async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const items: T[] = [];
  for await (const item of iterable) items.push(item);
  return items;
}

/** Rejects when `promise` takes longer than `ms`, so a hang fails fast instead of at the test timeout. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took more than ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
