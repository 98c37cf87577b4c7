import { createServer, type Server } from "node:http";
import type { AgentdMetrics } from "./metrics.js";

export interface MetricsEndpoint {
  /** host:port it listens on. */
  address: string;
  close(): Promise<void>;
}

/** Serves GET /metrics (Prometheus text format) on a port of its own. */
export async function serveMetrics(metrics: AgentdMetrics, host: string, port: number): Promise<MetricsEndpoint> {
  const server: Server = createServer((request, response) => {
    const url = new URL(request.url ?? "/", "http://metrics");
    if (request.method !== "GET" || url.pathname !== "/metrics") {
      response.writeHead(404, { "content-type": "text/plain" }).end("not found: metrics are at GET /metrics\n");
      return;
    }
    metrics.text().then(
      (text) => response.writeHead(200, { "content-type": metrics.registry.contentType }).end(text),
      () => response.writeHead(500, { "content-type": "text/plain" }).end("collecting the metrics failed; see the server log\n"),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (error) => reject(new Error(`cannot serve metrics on ${host}:${port}: ${error.message}`)));
    server.listen(port, host, () => resolve());
  });
  const bound = server.address();
  const actual = typeof bound === "object" && bound ? bound.port : port;
  return {
    address: `${host}:${actual}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
