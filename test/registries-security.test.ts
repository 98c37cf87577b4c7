import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentdClient } from "../src/client/client.js";
import { McpServerState } from "../src/gen/agentd/v1/runtime.js";
import { hashToken, newToken } from "../src/server/auth/tokens.js";
import { cases, collect, grpcError, makeTempDir, removeTempDirs, scripted, startTestServer, waitFor, type TestServer } from "./helpers/harness.js";
import { skillText, writeSkill } from "./skills/helpers.js";

const FIXTURE = fileURLToPath(new URL("./fixtures/mcp/fixture-server.mjs", import.meta.url));
const NODE = process.execPath;

/**
 * What the registries show and allow per caller: a user sees the operator's skills and servers, not
 * where they live or the command lines (which hold tokens); a user's own things are checked again
 * when the server restarts; a call to a tool the session does not offer is refused without asking.
 */
let t: TestServer;
let alice: AgentdClient;
let admin: AgentdClient;
const servers: TestServer[] = [];
const aliceToken = newToken();
const adminToken = newToken();
const bobToken = newToken();

async function serverConfig(dataDir: string, allowedCommands: string[]) {
  const tokensFile = path.join(dataDir, "..", `tokens-${path.basename(dataDir)}.json`);
  await writeFile(
    tokensFile,
    JSON.stringify({ tokens: [{ sha256: hashToken(aliceToken), owner: "alice", role: "user" }, { sha256: hashToken(adminToken), owner: "root", role: "admin" }, { sha256: hashToken(bobToken), owner: "bob", role: "user" }] }),
  );
  return {
    auth: { tokensFile },
    mcpServers: { ops: { command: NODE, args: [FIXTURE, "stdio", "--token=ops-secret-token"] } },
    mcp: { allowedCommands, backoffBaseMs: 50, backoffMaxMs: 200, connectTimeoutMs: 10_000 },
  };
}

beforeAll(async () => {
  const dataDir = await makeTempDir();
  await writeSkill(path.join(dataDir, "skills"), "ops", skillText("ops", "Operator's skill"));
  t = await startTestServer({ dataDir, config: await serverConfig(dataDir, [NODE]) });
  servers.push(t);
  alice = new AgentdClient(t.server.address, { token: aliceToken });
  admin = new AgentdClient(t.server.address, { token: adminToken });
});
afterAll(async () => {
  alice.close();
  admin.close();
  await Promise.all(servers.map((s) => s.stop()));
  await removeTempDirs();
});

describe("the registries per caller", () => {
  it("a user sees global servers by program and global skills without their folder; an admin sees all", async () => {
    await waitFor(async () => ((await admin.listMcpServers({})).servers[0]?.state === McpServerState.MCP_SERVER_STATE_CONNECTED ? true : undefined), 10_000);
    const forUser = (await alice.listMcpServers({})).servers[0]!;
    expect(forUser.target).toBe(`${NODE} …`);
    expect(JSON.stringify(await alice.listMcpServers({}))).not.toContain("ops-secret-token");
    expect((await admin.listMcpServers({})).servers[0]!.target).toContain("--token=ops-secret-token");

    expect((await alice.listSkills({})).skills[0]).toMatchObject({ name: "ops", folder: "" });
    expect((await admin.listSkills({})).skills[0]!.folder).toMatch(/skills[/\\]ops$/);
    expect((await grpcError(alice.reloadSkills({}))).code).toBe(status.PERMISSION_DENIED);
    expect((await grpcError(alice.reloadAgents({}))).code).toBe(status.PERMISSION_DENIED);
  });

  it("another owner's session is not found for every registry call", async () => {
    const { session } = await alice.createSession({});
    const id = session!.id;
    const bob = new AgentdClient(t.server.address, { token: bobToken });
    const content = { $case: "content" as const, content: skillText("mine", "x") };
    const stdio = { transport: { $case: "stdio" as const, stdio: { command: NODE, args: [FIXTURE, "stdio"], env: {}, cwd: "" } } };
    for (const call of [
      () => bob.listSkills({ sessionId: id }),
      () => bob.loadSkill({ sessionId: id, source: content }),
      () => bob.getSkill({ sessionId: id, name: "ops" }),
      () => bob.unloadSkill({ sessionId: id, name: "ops" }),
      () => bob.listMcpServers({ sessionId: id }),
      () => bob.addMcpServer({ sessionId: id, name: "x", server: stdio }),
      () => bob.removeMcpServer({ sessionId: id, name: "x" }),
      () => bob.listAgents({ sessionId: id }),
      () => bob.loadAgent({ sessionId: id, source: content }),
      () => bob.unloadAgent({ sessionId: id, name: "x" }),
      () => bob.listTools({ sessionId: id }),
    ]) {
      expect((await grpcError(call())).code).toBe(status.NOT_FOUND);
    }
    bob.close();
  });

  it("a call of a tool the session does not offer is refused without asking anyone", async () => {
    const { session } = await alice.createSession({
      config: {
        tools: { allow: ["read_file"] },
        confirmation: { enabled: true, timeoutMs: 10_000 },
        model: scripted([{ toolCalls: [{ name: "write_file", arguments: { path: "x", content: "y" } }] }, { text: "done" }]),
      },
    });
    const all = await collect(alice.streamGenerate({ sessionId: session!.id, prompt: "write" }));
    expect(cases(all)).not.toContain("confirmationRequired");
    const result = all.find((e) => e.payload?.$case === "toolResult")!.payload as { toolResult: { output: string; isError: boolean } };
    expect(result.toolResult.isError).toBe(true);
    expect(result.toolResult.output).toContain('unknown tool "write_file"');
    expect((await alice.listTools({ sessionId: session!.id })).tools.map((tool) => tool.name)).toEqual(["read_file"]);
  });

  it("refuses skills whose allowed-tools name no tool, agents with bad tools or unknown skills, and paths outside the sandbox", async () => {
    const { session } = await alice.createSession({});
    const id = session!.id;
    for (const allowed of ["*", "mcp__*", "b?sh"]) {
      const refused = await grpcError(alice.loadSkill({ sessionId: id, source: { $case: "content", content: skillText("wild", "x", `allowed-tools: "${allowed}"\n`) } }));
      expect(refused.code, allowed).toBe(status.INVALID_ARGUMENT);
      expect(refused.details).toMatch(/:4: allowed-tools/);
    }
    const badTools = await grpcError(alice.loadAgent({ sessionId: id, source: { $case: "content", content: "---\nname: a\ndescription: x\ntools: read_file, 'x y'\n---\nbody\n" } }));
    expect(badTools.code).toBe(status.INVALID_ARGUMENT);
    const noSkill = await grpcError(alice.loadAgent({ sessionId: id, source: { $case: "content", content: "---\nname: a\ndescription: x\nskills: missing\n---\nbody\n" } }));
    expect(noSkill.details).toContain('no skill named "missing"');

    const outside = await makeTempDir("agentd-outside-");
    await writeFile(path.join(outside, "agent.md"), "---\nname: a\ndescription: x\n---\nSECRET PROMPT\n");
    for (const p of [path.join(outside, "agent.md"), "../../../etc/passwd", "/proc/self/environ", path.join(t.dataDir, "audit.log")]) {
      const denied = await grpcError(alice.loadAgent({ sessionId: id, source: { $case: "path", path: p } }));
      expect(denied.code, p).toBe(status.PERMISSION_DENIED);
      expect(denied.details).not.toContain("SECRET");
    }
    await mkdir(path.join(session!.workspace, "agents"), { recursive: true });
    await writeFile(path.join(session!.workspace, "agents", "helper.md"), "---\nname: helper\ndescription: Helps\n---\nHelp.\n");
    expect((await alice.loadAgent({ sessionId: id, source: { $case: "path", path: "agents/helper.md" } })).agent!.name).toBe("helper");
  });

  it("a session's agents survive a restart; its MCP servers are checked again and stay off when no longer allowed", async () => {
    const dataDir = await makeTempDir();
    const first = await startTestServer({ dataDir, config: await serverConfig(dataDir, [NODE]) });
    servers.push(first);
    const user = new AgentdClient(first.server.address, { token: aliceToken });
    const { session } = await user.createSession({});
    const id = session!.id;
    await user.loadAgent({ sessionId: id, source: { $case: "content", content: "---\nname: helper\ndescription: Helps\n---\nHelp.\n" } });
    await user.addMcpServer({ sessionId: id, name: "mine", server: { transport: { $case: "stdio", stdio: { command: NODE, args: [FIXTURE, "stdio"], env: {}, cwd: "" } } } });
    user.close();
    await first.server.close();

    const second = await startTestServer({ dataDir, config: await serverConfig(dataDir, []) });
    servers.push(second);
    const again = new AgentdClient(second.server.address, { token: aliceToken });
    expect((await again.listAgents({ sessionId: id })).agents.map((a) => a.name)).toEqual(["helper"]);
    await waitFor(() => (second.logs.some((line) => line.mcpServer === "mine" && String(line.msg).includes("not started")) ? true : undefined));
    expect((await again.listMcpServers({ sessionId: id })).servers.map((s) => s.name)).toEqual(["ops"]);
    again.close();
  });
});
