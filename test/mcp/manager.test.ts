import { afterEach, describe, expect, it } from "vitest";
import { AgentdError } from "../../src/errors.js";
import { createLogger } from "../../src/logging.js";
import { GLOBAL_SCOPE, McpManager } from "../../src/mcp/manager.js";
import { FAST_BACKOFF, fixtureStdio, isAlive, waitForState } from "./helpers.js";

const managers: McpManager[] = [];
afterEach(async () => {
  await Promise.all(managers.splice(0).map((manager) => manager.closeAll()));
});

function manager(): McpManager {
  const created = new McpManager({ logger: createLogger("silent"), backoff: FAST_BACKOFF, connectTimeoutMs: 10_000 });
  managers.push(created);
  return created;
}

describe("McpManager", () => {
  it("keeps connections by scope, refuses duplicates and unknown names, closes a scope's processes", async () => {
    const mcp = manager();

    mcp.startGlobal({ shared: fixtureStdio() });
    const own = mcp.add("session-1", "mine", fixtureStdio());
    expect(mcp.connection("session-1", "mine")).toBe(own);
    expect(mcp.connection(GLOBAL_SCOPE, "mine")).toBeUndefined();

    expect(() => mcp.add("session-1", "mine", fixtureStdio())).toThrow(
      expect.objectContaining({ kind: "already_exists", message: 'an MCP server named "mine" already exists in this session' }),
    );
    expect(() => mcp.add("session-1", "bad__name", fixtureStdio())).toThrow(expect.objectContaining({ kind: "invalid_argument" }));
    // The same name in another scope is another server.
    mcp.add("session-2", "shared", fixtureStdio());

    await waitForState(own, "connected");
    await waitForState(mcp.connection(GLOBAL_SCOPE, "shared")!, "connected");
    expect(mcp.statuses("session-1").map((status) => [status.name, status.state])).toEqual([["mine", "connected"]]);
    expect(mcp.connections(GLOBAL_SCOPE).map((connection) => connection.name)).toEqual(["shared"]);

    const pid = own.status().pid!;
    await mcp.closeScope("session-1");
    expect(isAlive(pid)).toBe(false);
    expect(mcp.statuses("session-1")).toEqual([]);

    const removed = mcp.connection("session-2", "shared")!;
    await waitForState(removed, "connected");
    const removedPid = removed.status().pid!;
    await mcp.remove("session-2", "shared");
    expect(isAlive(removedPid)).toBe(false);
    await expect(mcp.remove("session-2", "shared")).rejects.toSatisfy(
      (error) => error instanceof AgentdError && error.kind === "not_found",
    );

    const globalPid = mcp.connection(GLOBAL_SCOPE, "shared")!.status().pid!;
    await mcp.closeAll();
    expect(isAlive(globalPid)).toBe(false);
    expect(mcp.statuses(GLOBAL_SCOPE)).toEqual([]);
  });
});
