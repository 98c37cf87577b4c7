import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { status } from "@grpc/grpc-js";
import { afterAll, describe, expect, it } from "vitest";
import { ConfirmDecision, McpServerState, Scope, type AgentEvent } from "../src/gen/agentd/v1/runtime.js";
import { events } from "../src/client/client.js";
import { cases, collect, grpcError, makeTempDir, removeTempDirs, scripted, startTestServer, waitFor, type TestServer } from "./helpers/harness.js";

const FIXTURE = fileURLToPath(new URL("./fixtures/mcp/fixture-server.mjs", import.meta.url));
const EVERYTHING = fileURLToPath(new URL("../node_modules/@modelcontextprotocol/server-everything/dist/index.js", import.meta.url));
const NODE = process.execPath;
const FAST = { backoffBaseMs: 50, backoffMaxMs: 300, connectTimeoutMs: 10_000 };

const servers: TestServer[] = [];
const processes: ChildProcess[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  for (const child of processes) child.kill("SIGKILL");
  await removeTempDirs();
});

async function start(config: Parameters<typeof startTestServer>[0] = {}): Promise<TestServer> {
  const t = await startTestServer(config);
  servers.push(t);
  return t;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function connected(t: TestServer, sessionId: string, name: string) {
  return waitFor(async () => {
    const { servers: list } = await t.client.listMcpServers({ sessionId });
    const found = list.find((s) => s.name === name);
    return found?.state === McpServerState.MCP_SERVER_STATE_CONNECTED ? found : undefined;
  }, 15_000);
}

/** Runs a scripted turn that calls one tool and returns that call's result. */
async function callTool(t: TestServer, sessionId: string, prompt = "go"): Promise<{ output: string; isError: boolean }> {
  const all = await collect(t.client.streamGenerate({ sessionId, prompt }));
  const result = all.find((e) => e.payload?.$case === "toolResult");
  if (!result || result.payload?.$case !== "toolResult") throw new Error(`no tool result in ${cases(all).join(",")}`);
  return result.payload.toolResult;
}

const whoami = (steps = 1) =>
  scripted([{ toolCalls: [{ name: "mcp__fixture__whoami", arguments: {} }] }, { text: "ok" }].slice(0, steps + 1), true);

describe("MCP servers over the wire", () => {
  it("a configured server: a scripted turn reads a skill, calls an MCP tool through a confirmation, and the server comes back after being killed", async () => {
    const dataDir = await makeTempDir();
    const skillDir = path.join(dataDir, "skills", "fixture-howto");
    await mkdir(skillDir, { recursive: true });
    await writeFile(path.join(skillDir, "SKILL.md"), "---\nname: fixture-howto\ndescription: How to use the fixture server\n---\nCall mcp__fixture__echo with the text to repeat.\n");
    const t = await start({
      dataDir,
      config: {
        mcpServers: { fixture: { command: NODE, args: [FIXTURE, "stdio"], env: { FIXTURE_SECRET: "s3cret-env-value" } } },
        mcp: FAST,
      },
    });
    const info = await connected(t, "", "fixture");
    expect(info).toMatchObject({ scope: Scope.SCOPE_GLOBAL, transport: "stdio", serverName: "fixture-server", serverVersion: "1.2.3" });
    expect(info.toolCount).toBeGreaterThanOrEqual(7);

    const { session } = await t.client.createSession({
      config: {
        confirmation: { enabled: true, timeoutMs: 10_000 },
        model: scripted([
          { toolCalls: [{ name: "skill", arguments: { name: "fixture-howto" } }] },
          { toolCalls: [{ name: "mcp__fixture__echo", arguments: { text: "hello over MCP" } }] },
          { text: "echoed: {{last_tool_result}}" },
          { toolCalls: [{ name: "mcp__fixture__whoami", arguments: {} }] },
          { text: "{{last_tool_result}}" },
        ]),
      },
    });
    const id = session!.id;
    const tools = (await t.client.listTools({ sessionId: id })).tools;
    expect(tools.find((tool) => tool.name === "mcp__fixture__echo")).toMatchObject({ origin: "mcp", mcpServer: "fixture", mcpTool: "echo" });

    // The skill tool is allowed; the MCP call asks, and is approved by a second client.
    const call = t.client.streamGenerate({ sessionId: id, prompt: "echo something" });
    const seen: AgentEvent[] = [];
    for await (const event of events(call)) {
      seen.push(event);
      if (event.payload?.$case === "confirmationRequired") {
        const c = event.payload.confirmationRequired.confirmation!;
        expect(c.toolName).toBe("mcp__fixture__echo");
        await t.client.confirmToolCall({ sessionId: id, confirmationId: c.id, decision: ConfirmDecision.CONFIRM_DECISION_APPROVE });
      }
    }
    const results = seen.filter((e) => e.payload?.$case === "toolResult").map((e) => (e.payload as { toolResult: { name: string; output: string } }).toolResult);
    expect(results[0]!.name).toBe("skill");
    expect(results[0]!.output).toContain("Call mcp__fixture__echo");
    expect(results[1]).toMatchObject({ name: "mcp__fixture__echo", output: "hello over MCP" });
    expect(cases(seen).filter((c) => c === "confirmationRequired")).toHaveLength(1);
    const done = seen.at(-1)!.payload;
    expect(done?.$case === "turnCompleted" && done.turnCompleted.result!.text).toBe("echoed: hello over MCP");

    // Kill the server's process: it is reported failed, then connected again.
    await t.client.configureSession({ sessionId: id, config: { confirmation: { enabled: false } } });
    const who = await t.client.generate({ sessionId: id, prompt: "who are you" });
    const { pid, secretEnv } = JSON.parse(who.result!.text) as { pid: number; secretEnv: boolean };
    expect(secretEnv).toBe(true);
    process.kill(pid, "SIGKILL");
    await waitFor(async () => {
      const found = (await t.client.listMcpServers({})).servers.find((s) => s.name === "fixture");
      return found && found.state !== McpServerState.MCP_SERVER_STATE_CONNECTED ? found : undefined;
    });
    const back = await connected(t, "", "fixture");
    expect(back.attempts).toBe(0);

    // The secret in env is never shown or logged.
    const listed = JSON.stringify(await t.client.listMcpServers({ sessionId: id }));
    expect(listed).not.toContain("s3cret-env-value");
    expect(JSON.stringify(t.logs)).not.toContain("s3cret-env-value");
    // The server's stderr reached the log, tagged with its name.
    expect(t.logs.some((line) => line.mcpServer === "fixture" && String(line.stderr).includes("fixture-server starting"))).toBe(true);
  });

  it("AddMcpServer runs only allowed commands, children inherit the server, and destroying the session stops its process", async () => {
    const t = await start({ config: { mcp: { ...FAST, allowedCommands: [NODE] } } });
    const { session } = await t.client.createSession({ config: { model: whoami() } });
    const id = session!.id;
    const stdio = (command: string) => ({ transport: { $case: "stdio" as const, stdio: { command, args: [FIXTURE, "stdio"], env: {}, cwd: "" } } });

    const denied = await grpcError(t.client.addMcpServer({ sessionId: id, name: "fixture", server: stdio("/bin/sh") }));
    expect(denied.code).toBe(status.PERMISSION_DENIED);
    expect(denied.details).toContain("mcp.allowedCommands");
    const badName = await grpcError(t.client.addMcpServer({ sessionId: id, name: "a__b", server: stdio(NODE) }));
    expect(badName.code).toBe(status.INVALID_ARGUMENT);
    const withCwd = await grpcError(
      t.client.addMcpServer({ sessionId: id, name: "fixture", server: { transport: { $case: "stdio", stdio: { command: NODE, args: [], env: {}, cwd: session!.workspace } } } }),
    );
    expect(withCwd.code).toBe(status.PERMISSION_DENIED);

    const added = await t.client.addMcpServer({ sessionId: id, name: "fixture", server: stdio(NODE) });
    expect(added.server).toMatchObject({ name: "fixture", scope: Scope.SCOPE_SESSION, transport: "stdio" });
    const again = await grpcError(t.client.addMcpServer({ sessionId: id, name: "fixture", server: stdio(NODE) }));
    expect(again.code).toBe(status.ALREADY_EXISTS);
    await connected(t, id, "fixture");

    const { session: child } = await t.client.createChildSession({ parentId: id });
    const inherited = (await t.client.listMcpServers({ sessionId: child!.id })).servers;
    expect(inherited.find((s) => s.name === "fixture")).toMatchObject({ scope: Scope.SCOPE_INHERITED, sessionId: id });
    expect((await t.client.listTools({ sessionId: child!.id })).tools.map((tool) => tool.name)).toContain("mcp__fixture__whoami");
    // Another session does not reach it.
    const { session: other } = await t.client.createSession({});
    expect((await t.client.listMcpServers({ sessionId: other!.id })).servers).toHaveLength(0);

    const { pid } = JSON.parse((await callTool(t, child!.id)).output) as { pid: number };
    expect(alive(pid)).toBe(true);

    // A server behind a wrapper (as with npx): the wrapper's child must go too.
    const { session: wrapped } = await t.client.createSession({ config: { model: whoami() } });
    const wrapper = `require("child_process").spawn(process.execPath, [${JSON.stringify(FIXTURE)}, "stdio"], { stdio: "inherit" }).on("exit", (c) => process.exit(c ?? 0))`;
    await t.client.addMcpServer({ sessionId: wrapped!.id, name: "fixture", server: { transport: { $case: "stdio", stdio: { command: NODE, args: ["-e", wrapper], env: {}, cwd: "" } } } });
    await connected(t, wrapped!.id, "fixture");
    const inner = (JSON.parse((await callTool(t, wrapped!.id)).output) as { pid: number }).pid;
    expect(alive(inner)).toBe(true);

    await t.client.destroySession({ sessionId: id });
    await t.client.destroySession({ sessionId: wrapped!.id });
    await waitFor(() => (alive(pid) || alive(inner) ? undefined : true), 8000);
  });

  it("an allowed command may pin its first arguments, loader variables are refused, and a session's server is reconnected after a restart", async () => {
    const t = await start({ config: { mcp: { ...FAST, allowedCommands: [`${NODE} ${FIXTURE}`] } } });
    const { session } = await t.client.createSession({ config: { model: whoami() } });
    const id = session!.id;
    const server = (args: string[], env: Record<string, string> = {}) => ({ transport: { $case: "stdio" as const, stdio: { command: NODE, args, env, cwd: "" } } });
    const otherScript = await grpcError(t.client.addMcpServer({ sessionId: id, name: "x", server: server(["-e", "console.log(1)"]) }));
    expect(otherScript.code).toBe(status.PERMISSION_DENIED);
    for (const variable of ["NODE_OPTIONS", "LD_PRELOAD", "PATH"]) {
      const loader = await grpcError(t.client.addMcpServer({ sessionId: id, name: "x", server: server([FIXTURE, "stdio"], { [variable]: "--require /tmp/evil.js" }) }));
      expect(loader.code).toBe(status.PERMISSION_DENIED);
      expect(loader.details).toContain(variable);
    }
    await t.client.addMcpServer({ sessionId: id, name: "fixture", server: server([FIXTURE, "stdio"]) });
    await connected(t, id, "fixture");

    // A tool the server adds while connected shows up (notifications/tools/list_changed).
    await t.client.configureSession({
      sessionId: id,
      config: { model: scripted([{ toolCalls: [{ name: "mcp__fixture__add_tool", arguments: { name: "fresh" } }] }, { text: "added" }]) },
    });
    await t.client.generate({ sessionId: id, prompt: "add a tool" });
    await waitFor(async () => ((await t.client.listTools({ sessionId: id })).tools.some((tool) => tool.name === "mcp__fixture__fresh") ? true : undefined));

    await t.server.close();
    const again = await start({ dataDir: t.dataDir, config: { mcp: { ...FAST, allowedCommands: [`${NODE} ${FIXTURE}`] } } });
    expect((await connected(again, id, "fixture")).scope).toBe(Scope.SCOPE_SESSION);
  });

  it("Streamable HTTP servers are added by URL with headers that are never shown; an SSE-only server is reached through the fallback", async () => {
    const http = await spawnFixture("http");
    const sse = await spawnFixture("sse");
    // An internal service that answers with something only agentd should see.
    const internal = createServer((_req, res) => res.writeHead(500).end("INTERNAL-ONLY admin-password=hunter2"));
    await new Promise<void>((resolve) => internal.listen(0, "127.0.0.1", resolve));
    const internalPort = (internal.address() as AddressInfo).port;
    const allowed = [`http://127.0.0.1:${http.port}/`, `http://127.0.0.1:${sse.port}/`, `http://127.0.0.1:${internalPort}/`];
    const t = await start({ config: { mcp: { ...FAST, allowedPrivateUrls: allowed } } });
    const { session } = await t.client.createSession({ config: { model: whoami() } });
    const id = session!.id;
    await t.client.addMcpServer({
      sessionId: id,
      name: "fixture",
      server: { transport: { $case: "http", http: { url: `http://127.0.0.1:${http.port}/mcp`, headers: { "x-fixture-secret": "hdr-s3cret" }, sseOnly: false } } },
    });
    await t.client.addMcpServer({
      sessionId: id,
      name: "old",
      server: { transport: { $case: "http", http: { url: `http://127.0.0.1:${sse.port}/sse`, headers: {}, sseOnly: false } } },
    });
    const info = await connected(t, id, "fixture");
    expect(info.transport).toBe("http");
    expect((await connected(t, id, "old")).transport).toBe("sse");
    const result = JSON.parse((await callTool(t, id)).output) as { secretHeader: boolean };
    expect(result.secretHeader).toBe(true);
    expect(JSON.stringify(await t.client.listMcpServers({ sessionId: id }))).not.toContain("hdr-s3cret");
    expect(JSON.stringify(t.logs)).not.toContain("hdr-s3cret");

    // Loopback and private addresses need the operator's leave.
    for (const url of ["http://localhost:9/mcp", "http://169.254.169.254/latest", "http://[::1]:9/mcp", "http://10.1.2.3/mcp"]) {
      const refused = await grpcError(t.client.addMcpServer({ sessionId: id, name: "internal", server: { transport: { $case: "http", http: { url, headers: {}, sseOnly: false } } } }));
      expect(refused.code, url).toBe(status.PERMISSION_DENIED);
    }
    // An allowed one that fails is reported by its status code, not by what it answered.
    await t.client.addMcpServer({
      sessionId: id,
      name: "internal",
      server: { transport: { $case: "http", http: { url: `http://127.0.0.1:${internalPort}/mcp`, headers: {}, sseOnly: false } } },
    });
    const failed = await waitFor(async () => {
      const found = (await t.client.listMcpServers({ sessionId: id })).servers.find((s) => s.name === "internal");
      return found?.state === McpServerState.MCP_SERVER_STATE_FAILED ? found : undefined;
    });
    expect(failed.error).toContain("500");
    expect(JSON.stringify(await t.client.listMcpServers({ sessionId: id }))).not.toContain("hunter2");
    expect(JSON.stringify(t.logs)).not.toContain("hunter2");
    await t.client.removeMcpServer({ sessionId: id, name: "internal" });
    internal.close();

    const wrong = await grpcError(
      t.client.addMcpServer({ sessionId: id, name: "ftp", server: { transport: { $case: "http", http: { url: "ftp://example.com/", headers: {}, sseOnly: false } } } }),
    );
    expect(wrong.code).toBe(status.INVALID_ARGUMENT);

    await t.client.removeMcpServer({ sessionId: id, name: "old" });
    expect((await t.client.listMcpServers({ sessionId: id })).servers.map((s) => s.name)).toEqual(["fixture"]);
    const gone = await grpcError(t.client.removeMcpServer({ sessionId: id, name: "old" }));
    expect(gone.code).toBe(status.NOT_FOUND);
  });

  it("cancelling a turn cancels the MCP request on the server, and a hanging call times out", async () => {
    const dataDir = await makeTempDir();
    const log = path.join(dataDir, "fixture.log");
    const t = await start({ dataDir, config: { mcpServers: { fixture: { command: NODE, args: [FIXTURE, "stdio"], env: { FIXTURE_LOG: log } } }, mcp: FAST } });
    await connected(t, "", "fixture");
    const { session } = await t.client.createSession({
      config: { limits: { toolTimeoutMs: 300 }, model: scripted([{ toolCalls: [{ name: "mcp__fixture__slow", arguments: {} }] }, { text: "after" }], true) },
    });
    const id = session!.id;
    const timedOut = await callTool(t, id);
    expect(timedOut.isError).toBe(true);
    expect(timedOut.output).toMatch(/timed out/);
    await waitFor(async () => ((await readFile(log, "utf8").catch(() => "")).includes("cancelled slow") ? true : undefined));

    await t.client.configureSession({ sessionId: id, config: { limits: { toolTimeoutMs: 0 } } });
    await writeFile(log, "");
    const call = t.client.streamGenerate({ sessionId: id, prompt: "wait" });
    const seen: AgentEvent[] = [];
    for await (const event of events(call)) {
      seen.push(event);
      if (event.payload?.$case === "toolCall") setTimeout(() => void t.client.cancel({ sessionId: id }), 100);
    }
    expect(seen.at(-1)!.payload?.$case).toBe("cancelled");
    await waitFor(async () => ((await readFile(log, "utf8")).includes("cancelled slow") ? true : undefined));
  });

  it("drives the published server-everything end to end", async () => {
    const t = await start({ config: { mcpServers: { everything: { command: NODE, args: [EVERYTHING, "stdio"] } }, mcp: FAST } });
    await connected(t, "", "everything");
    const { session } = await t.client.createSession({
      config: { model: scripted([{ toolCalls: [{ name: "mcp__everything__echo", arguments: { message: "hi from agentd" } }] }, { text: "{{last_tool_result}}" }]) },
    });
    const reply = await t.client.generate({ sessionId: session!.id, prompt: "echo" });
    expect(reply.result!.text).toContain("hi from agentd");
  });
});

async function spawnFixture(mode: "http" | "sse"): Promise<{ port: number }> {
  const child = spawn(NODE, [FIXTURE, mode, "0"], { stdio: ["ignore", "pipe", "ignore"] });
  processes.push(child);
  const lines = createInterface({ input: child.stdout! });
  for await (const line of lines) {
    const parsed = JSON.parse(line) as { port?: number };
    if (parsed.port) return { port: parsed.port };
  }
  throw new Error(`the ${mode} fixture did not start`);
}
