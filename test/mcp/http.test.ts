import { context, trace } from "@opentelemetry/api";
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import { afterEach, describe, expect, it } from "vitest";
import type { McpConnection } from "../../src/mcp/connection.js";
import { captureLogger, Cleanup, closedPort, startHttpFixture, waitFor, waitForState } from "./helpers.js";

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

const call = (connection: McpConnection, tool: string, args: Record<string, unknown> = {}) =>
  connection.callTool(tool, args, { signal: new AbortController().signal, timeoutMs: 10_000 });

async function fixture(mode: "http" | "sse") {
  const server = await startHttpFixture(mode);
  cleanup.add(() => server.stop());
  return server;
}

describe("McpConnection over HTTP", () => {
  it("speaks Streamable HTTP, sending the headers and keeping secrets out of status and logs", async () => {
    const server = await fixture("http");
    const secrets = ["s3cr3t-header-value-456", "bearer-token-789", "query-token-abc", "url-password-def"];
    const capture = captureLogger();
    const url = new URL(server.url);
    url.username = "user";
    url.password = secrets[3];
    url.search = `?token=${secrets[2]}`;
    const connection = cleanup.connection(
      "web",
      { type: "http", url: url.href, headers: { "x-fixture-secret": secrets[0], authorization: `Bearer ${secrets[1]}` } },
      { logger: capture.logger },
    );
    connection.start();
    await waitForState(connection, "connected");

    expect(connection.status()).toMatchObject({
      transport: "http",
      target: server.url,
      serverName: "fixture-server",
      toolCount: 8,
      pid: null,
    });
    expect(await call(connection, "echo", { text: "over http" })).toEqual({ output: "over http", isError: false });
    expect(JSON.parse((await call(connection, "whoami")).output)).toMatchObject({ secretHeader: true, secretEnv: false });

    // Tools announced over the standalone GET stream.
    await call(connection, "add_tool", { name: "late" });
    await waitFor(() => connection.tools().some((tool) => tool.name === "late"), "the new tool");

    // The server going away is noticed on the next call, which starts a reconnect.
    await server.stop();
    const result = await call(connection, "echo", { text: "anyone?" });
    expect(result.isError).toBe(true);
    await waitForState(connection, "failed");
    await waitFor(() => connection.status().attempts >= 2, "a retry");
    const status = JSON.stringify(connection.status());
    await connection.close();
    for (const secret of secrets) {
      expect(status).not.toContain(secret);
      expect(capture.text()).not.toContain(secret);
      expect(result.output).not.toContain(secret);
    }
  });

  it("falls back to SSE for a server that only speaks it", async () => {
    const server = await fixture("sse");
    const connection = cleanup.connection("old", { type: "http", url: server.url, headers: { "x-fixture-secret": "header-secret" } });
    connection.start();
    await waitForState(connection, "connected");
    expect(connection.status()).toMatchObject({ transport: "sse", state: "connected", toolCount: 8 });
    expect(await call(connection, "add", { a: 1, b: 2 })).toEqual({ output: '3\n{\n  "sum": 3\n}', isError: false });
    expect(JSON.parse((await call(connection, "whoami")).output)).toMatchObject({ secretHeader: true });
  });

  it("uses SSE alone when told to", async () => {
    const server = await fixture("sse");
    const connection = cleanup.connection("old", { type: "sse", url: server.url, headers: {} });
    connection.start();
    await waitForState(connection, "connected");
    expect(connection.status().transport).toBe("sse");
    expect(await call(connection, "echo", { text: "sse" })).toEqual({ output: "sse", isError: false });
  });

  it("fails on a port nothing listens on, and retries", async () => {
    const connection = cleanup.connection("gone", { type: "http", url: `http://127.0.0.1:${await closedPort()}/mcp`, headers: {} });
    connection.start();
    await waitForState(connection, "failed");
    expect(connection.status().error).toMatch(/ECONNREFUSED|fetch failed/);
    await waitFor(() => connection.status().attempts >= 2, "a retry");
  });

  it("fails on a wrong path, saying what each transport got", async () => {
    const server = await fixture("http");
    const connection = cleanup.connection("lost", { type: "http", url: `http://127.0.0.1:${server.port}/nowhere`, headers: {} });
    connection.start();
    await waitForState(connection, "failed");
    expect(connection.status().error).toMatch(/^Streamable HTTP failed \(.*HTTP 404\)+, and so did SSE \(.*404/);
    expect(connection.status().transport).toBe("http");
  });

  it("passes the tool call's trace on to the server (W3C traceparent)", async () => {
    const provider = new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(new InMemorySpanExporter())] });
    provider.register();
    cleanup.add(() => provider.shutdown());
    const server = await fixture("http");
    const connection = cleanup.connection("traced", { type: "http", url: server.url, headers: {} });
    connection.start();
    await waitForState(connection, "connected");
    const span = trace.getTracer("test").startSpan("execute_tool whoami");
    const result = await context.with(trace.setSpan(context.active(), span), () => call(connection, "whoami"));
    span.end();
    const { traceId, spanId } = span.spanContext();
    expect(JSON.parse(result.output).traceparent).toBe(`00-${traceId}-${spanId}-01`);
  });
});
