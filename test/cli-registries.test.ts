import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { removeTempDirs, startTestServer, waitFor, type TestServer } from "./helpers/harness.js";

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, "..");
const tsx = path.join(root, "node_modules/.bin/tsx");
const FIXTURE = path.join(root, "test/fixtures/mcp/fixture-server.mjs");

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer({
    config: { skills: { dir: path.join(root, "examples/skills"), allowedRoots: [] }, mcp: { allowedCommands: [process.execPath], backoffBaseMs: 50, backoffMaxMs: 200, connectTimeoutMs: 10_000 } },
  });
});
afterAll(async () => {
  await t.stop();
  await removeTempDirs();
});

/** `agentd <command> <action> --server ADDR ...`: the flag goes before a "--" that ends the options. */
function agentd(command: string, action: string, ...args: string[]) {
  return run(tsx, [path.join(root, "src/cli/main.ts"), command, action, "--server", t.server.address, ...args], { cwd: root, timeout: 15_000 });
}

describe("agentd skills, agents and mcp", () => {
  it("lists and shows the example skills, loads a subagent definition from a file", async () => {
    const list = await agentd("skills", "list");
    expect(list.stdout).toMatch(/^code-review {2}\(global\)/m);
    expect(list.stdout).toMatch(/^commit-message {2}\(global\)/m);
    const show = await agentd("skills", "show", "code-review");
    expect(show.stdout).toContain("checklist.md");

    const { session } = await t.client.createSession({});
    const id = session!.id;
    const loaded = await agentd("agents", "load", "--file", "examples/agents/code-reviewer.md", "--session", id);
    expect(loaded.stdout).toContain("loaded code-reviewer");
    const agents = await agentd("agents", "list", "--session", id);
    expect(agents.stdout).toContain("code-reviewer  (session; tools: read_file, list_dir, glob, grep)");
  });

  it("adds, lists and removes a session's MCP server", async () => {
    const { session } = await t.client.createSession({});
    const id = session!.id;
    const added = await agentd("mcp", "add", "fixture", "--session", id, "--env", "FIXTURE_SECRET=very-secret", "--", process.execPath, FIXTURE, "stdio");
    expect(added.stdout).toContain("fixture");
    await waitFor(async () => ((await agentd("mcp", "list", "--session", id)).stdout.includes("connected") ? true : undefined), 10_000);
    const list = await agentd("mcp", "list", "--session", id);
    expect(list.stdout).toMatch(/^fixture {2}connected {2}stdio .*fixture-server\.mjs stdio {2}\d+ tools fixture-server 1\.2\.3 {2}\[session\]$/m);
    expect(list.stdout).not.toContain("very-secret");
    const denied = await agentd("mcp", "add", "sh", "--session", id, "--", "/bin/sh", "-c", "id").catch((error: { code: number; stderr: string }) => error);
    expect((denied as { stderr: string }).stderr).toContain("PERMISSION_DENIED");
    await agentd("mcp", "remove", "fixture", "--session", id);
    expect((await agentd("mcp", "list", "--session", id)).stdout).toContain("no MCP servers");
  });
});
