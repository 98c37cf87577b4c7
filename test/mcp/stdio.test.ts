import { readFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { McpConnection } from "../../src/mcp/connection.js";
import { agentToolsOf } from "../../src/mcp/tools.js";
import type { McpServerStatus } from "../../src/mcp/types.js";
import { ToolExecutor } from "../../src/tools/executor.js";
import { ToolRegistry } from "../../src/tools/registry.js";
import { turnContext } from "../helpers/turn-context.js";
import { captureLogger, Cleanup, fixtureStdio, isAlive, waitFor, waitForState } from "./helpers.js";

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

const noSignal = () => new AbortController().signal;
const call = (connection: McpConnection, tool: string, args: Record<string, unknown> = {}, timeoutMs = 10_000) =>
  connection.callTool(tool, args, { signal: noSignal(), timeoutMs });

async function connected(env: Record<string, string> = {}, options: Parameters<Cleanup["connection"]>[2] = {}) {
  const connection = cleanup.connection("fx", fixtureStdio(env), options);
  connection.start();
  await waitForState(connection, "connected");
  return connection;
}

async function readLog(file: string): Promise<string> {
  return readFile(file, "utf8").catch(() => "");
}

describe("McpConnection over stdio", () => {
  it("connects, lists the tools and calls them", async () => {
    const states: McpServerStatus["state"][] = [];
    const connection = await connected({}, { onStateChanged: (status) => states.push(status.state) });

    const status = connection.status();
    expect(status).toMatchObject({
      name: "fx",
      transport: "stdio",
      state: "connected",
      error: "",
      serverName: "fixture-server",
      serverVersion: "1.2.3",
      toolCount: 8,
      attempts: 0,
      nextRetryAtMs: 0,
    });
    expect(status.target).toMatch(/fixture-server\.mjs stdio$/);
    expect(status.pid).toBeGreaterThan(0);
    expect(states).toEqual(["connecting", "connected"]);

    const echo = connection.tools().find((tool) => tool.name === "echo");
    expect(echo).toMatchObject({ description: "Returns its text", readOnlyHint: true });
    expect(echo?.inputSchema).toMatchObject({ type: "object", properties: { text: { type: "string" } } });
    expect(connection.tools().find((tool) => tool.name === "add")?.readOnlyHint).toBe(false);

    expect(await call(connection, "echo", { text: "hi" })).toEqual({ output: "hi", isError: false });
    expect(await call(connection, "add", { a: 2, b: 3 })).toEqual({ output: '5\n{\n  "sum": 5\n}', isError: false });
    expect((await call(connection, "image")).output).toMatch(/^\[image image\/png, \d+ bytes base64 — not shown\]$/);
    expect(await call(connection, "fail")).toEqual({ output: "this tool always fails", isError: true });
    const unknown = await call(connection, "nope");
    expect(unknown.isError).toBe(true);
    expect(unknown.output).toContain("nope");
  });

  it("lists again when the server announces new tools", async () => {
    let changes = 0;
    const connection = await connected({}, { onToolsChanged: () => changes++ });
    const before = changes;

    expect(await call(connection, "add_tool", { name: "dynamic" })).toEqual({ output: "added dynamic", isError: false });
    await waitFor(() => connection.tools().some((tool) => tool.name === "dynamic"), "the new tool");
    expect(changes).toBeGreaterThan(before);
    expect(connection.status().toolCount).toBe(9);
    expect(await call(connection, "dynamic")).toEqual({ output: "I am dynamic", isError: false });
  });

  it("cancels a hanging call on the server: by its timeout and by its signal", async () => {
    const log = path.join(await cleanup.tempDir(), "fixture.log");
    const connection = await connected({ FIXTURE_LOG: log });

    const timedOut = await call(connection, "slow", {}, 300);
    expect(timedOut).toEqual({ isError: true, output: 'MCP tool "slow" of server "fx" timed out after 300 ms' });
    await waitFor(async () => (await readLog(log)).split("\n").filter(Boolean).length === 1, "the server to see the timeout");

    const controller = new AbortController();
    const pending = connection.callTool("slow", {}, { signal: controller.signal, timeoutMs: 60_000 });
    setTimeout(() => controller.abort(new Error("the user cancelled")), 200);
    await expect(pending).rejects.toMatchObject({ name: "AbortError" });
    await waitFor(async () => (await readLog(log)).split("\n").filter(Boolean).length === 2, "the server to see the cancellation");
    expect(await readLog(log)).toMatch(/^cancelled slow \d+\ncancelled slow \d+\n$/);

    // An already aborted signal rejects at once, without a request.
    await expect(connection.callTool("echo", { text: "x" }, { signal: AbortSignal.abort(), timeoutMs: 1_000 })).rejects.toMatchObject({
      name: "AbortError",
    });
    expect(await call(connection, "echo", { text: "still here" })).toEqual({ output: "still here", isError: false });
  });

  it("runs as agent tools through the executor, whose timeout cancels the call on the server", async () => {
    const log = path.join(await cleanup.tempDir(), "fixture.log");
    const connection = await connected({ FIXTURE_LOG: log });
    const tools = agentToolsOf(connection, 60_000);
    const registry = new ToolRegistry(tools);

    const echo = registry.get("mcp__fx__echo");
    expect(echo).toMatchObject({ readOnly: true, source: { kind: "mcp", server: "fx", tool: "echo" } });
    expect(echo?.inputSchema.$schema).toBeUndefined();
    expect(registry.get("mcp__fx__add_tool")?.readOnly).toBe(false);

    const executor = new ToolExecutor(registry);
    const context = (timeoutMs: number) => ({ ...turnContext(), workspace: "/tmp", timeoutMs });
    expect(await executor.execute({ name: "mcp__fx__echo", argumentsJson: '{"text":"via agent"}' }, context(5_000))).toEqual({
      output: "via agent",
      isError: false,
    });
    const slow = await executor.execute({ name: "mcp__fx__slow", argumentsJson: "{}" }, context(300));
    expect(slow).toEqual({ output: 'tool "mcp__fx__slow" timed out after 300 ms', isError: true });
    await waitFor(async () => (await readLog(log)).includes("cancelled slow"), "the server to see the executor's timeout");
  });

  it("survives a crash mid-call: an error result, unavailable while down, then connected again", async () => {
    const connection = await connected();
    const firstPid = connection.status().pid;

    const crashed = await call(connection, "crash");
    expect(crashed.isError).toBe(true);
    expect(crashed.output).toContain('MCP server "fx" closed the connection during the call to "crash"');
    const down = connection.status();
    expect(down.state).toBe("failed");
    expect(down.attempts).toBe(1);
    expect(down.error).toContain("closed the connection");
    expect(down.nextRetryAtMs).toBeGreaterThan(0);
    expect(connection.tools()).toHaveLength(8);

    const started = Date.now();
    const unavailable = await call(connection, "echo", { text: "hi" });
    expect(Date.now() - started).toBeLessThan(100);
    expect(unavailable.isError).toBe(true);
    expect(unavailable.output).toMatch(/^MCP server "fx" is unavailable \((failed|connecting): the server closed the connection\); try again later$/);

    await waitForState(connection, "connected");
    expect(connection.status().pid).not.toBe(firstPid);
    expect(connection.status().attempts).toBe(0);
    expect(await call(connection, "echo", { text: "back" })).toEqual({ output: "back", isError: false });
  });

  it("leaves no process behind when closed, and never retries after", async () => {
    const states: string[] = [];
    const connection = await connected({}, { onStateChanged: (status) => states.push(status.state) });
    const pid = connection.status().pid!;
    expect(isAlive(pid)).toBe(true);

    await connection.close();
    expect(isAlive(pid)).toBe(false);
    expect(connection.status()).toMatchObject({ state: "disconnected", pid: null });
    expect((await call(connection, "echo", { text: "x" })).output).toBe('MCP server "fx" is unavailable (disconnected); try again later');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(states.at(-1)).toBe("disconnected");
  });

  it("closes while still connecting, leaving no process", async () => {
    const connection = cleanup.connection("fx", fixtureStdio());
    connection.start();
    await waitFor(() => connection.status().pid !== null, "the child to spawn");
    const pid = connection.status().pid!;
    await connection.close();
    expect(isAlive(pid)).toBe(false);
    expect(connection.status().state).toBe("disconnected");
  });

  it("gives up on a server that never answers, killing it even when it ignores SIGTERM", async () => {
    const script = "process.on('SIGTERM', () => {}); setInterval(() => {}, 1000)";
    const connection = cleanup.connection(
      "mute",
      { type: "stdio", command: process.execPath, args: ["-e", script], env: {}, cwd: "" },
      { connectTimeoutMs: 300, backoff: { baseMs: 60_000, maxMs: 60_000 } },
    );
    connection.start();
    await waitFor(() => connection.status().pid !== null, "the child to spawn");
    const pid = connection.status().pid!;
    await waitForState(connection, "failed");
    expect(connection.status().error).toBe("the server did not answer within 300 ms");
    // Failing waited for the child to be gone: its stdin closed, then SIGTERM, then SIGKILL.
    expect(isAlive(pid)).toBe(false);
    expect(connection.status().pid).toBeNull();
  });

  it("reports a command that does not exist, and keeps retrying", async () => {
    const connection = cleanup.connection("missing", { type: "stdio", command: "/nonexistent/mcp-server-xyz", args: [], env: {}, cwd: "" });
    connection.start();
    await waitForState(connection, "failed");
    expect(connection.status().error).toContain("ENOENT");
    await waitFor(() => connection.status().attempts >= 3, "more attempts");
    expect(connection.status().pid).toBeNull();
    const result = await call(connection, "anything");
    expect(result.isError).toBe(true);
    expect(result.output).toContain('MCP server "missing" is unavailable');
  });

  it("tells why a server that exits at start-up failed, from its last stderr line", async () => {
    const script = "console.error('starting'); console.error('Error: MY_API_KEY is not set'); process.exit(3)";
    const connection = cleanup.connection("dies", { type: "stdio", command: process.execPath, args: ["-e", script], env: {}, cwd: "" });
    connection.start();
    await waitForState(connection, "failed");
    expect(connection.status().error).toMatch(/closed.*\(its last stderr line: Error: MY_API_KEY is not set\)$/i);
  });

  it("logs the server's stderr and never a secret from its env", async () => {
    const secret = "s3cr3t-env-value-123";
    const capture = captureLogger();
    const connection = await connected({ FIXTURE_SECRET: secret }, { logger: capture.logger });

    expect(JSON.parse((await call(connection, "whoami")).output)).toMatchObject({ secretEnv: true, pid: connection.status().pid });
    await waitFor(() => capture.lines.some((line) => String(line.stderr).startsWith("fixture-server starting (stdio)")), "the stderr line");
    const stderrLine = capture.lines.find((line) => line.stderr !== undefined)!;
    expect(stderrLine).toMatchObject({ mcpServer: "fx", level: 30 });

    await call(connection, "crash");
    await waitForState(connection, "connected");
    await connection.close();
    expect(capture.text()).not.toContain(secret);
    expect(JSON.stringify(connection.status())).not.toContain(secret);
  });
});
