import { afterEach, describe, expect, it } from "vitest";
import { agentToolsOf } from "../../src/mcp/tools.js";
import { Cleanup, EVERYTHING, waitForState } from "./helpers.js";

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

describe("McpConnection with the reference server-everything", () => {
  it("connects over stdio, lists its tools and calls echo", async () => {
    const connection = cleanup.connection("everything", { type: "stdio", command: process.execPath, args: [EVERYTHING, "stdio"], env: {}, cwd: "" });
    connection.start();
    await waitForState(connection, "connected", 15_000);

    const echo = connection.tools().find((tool) => tool.name === "echo");
    expect(echo).toMatchObject({ readOnlyHint: true });
    expect(connection.status().serverName).not.toBe("");
    const result = await connection.callTool("echo", { message: "hello" }, { signal: new AbortController().signal, timeoutMs: 10_000 });
    expect(result).toEqual({ output: "Echo: hello", isError: false });

    const tools = agentToolsOf(connection, 60_000);
    expect(tools.map((tool) => tool.name)).toContain("mcp__everything__echo");
    for (const tool of tools) expect(tool.inputSchema).toMatchObject({ type: "object", properties: expect.any(Object) });

    const pid = connection.status().pid!;
    await connection.close();
    expect(() => process.kill(pid, 0)).toThrow(expect.objectContaining({ code: "ESRCH" }));
  });
});
