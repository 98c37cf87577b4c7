import { describe, expect, it } from "vitest";
import { checkServerName, parseMcpServers } from "../../src/mcp/config.js";

const where = "agentd.yaml mcpServers";

describe("parseMcpServers", () => {
  it("reads the editors' shape: command servers and url servers", () => {
    const servers = parseMcpServers(
      {
        files: { command: "npx", args: ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"], env: { TOKEN: "x" }, cwd: "/srv" },
        plain: { type: "stdio", command: "server" },
        remote: { url: "https://example.com/mcp", headers: { Authorization: "Bearer t" } },
        streamable: { type: "streamable-http", url: "http://localhost:3000/mcp" },
        old: { type: "sse", url: "http://localhost:3001/sse" },
        off: { command: "x", disabled: true },
        pasted: { command: "y", autoApprove: ["a"], description: "from Cline" },
      },
      where,
    );
    expect(servers).toEqual({
      files: { type: "stdio", command: "npx", args: ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"], env: { TOKEN: "x" }, cwd: "/srv" },
      plain: { type: "stdio", command: "server", args: [], env: {}, cwd: "" },
      remote: { type: "http", url: "https://example.com/mcp", headers: { Authorization: "Bearer t" } },
      streamable: { type: "http", url: "http://localhost:3000/mcp", headers: {} },
      old: { type: "sse", url: "http://localhost:3001/sse", headers: {} },
      pasted: { type: "stdio", command: "y", args: [], env: {}, cwd: "" },
    });
  });

  it.each([
    [[], 'agentd.yaml mcpServers: must be an object of MCP servers by name'],
    [{ "a b": { command: "x" } }, 'MCP server "a b": an MCP server name must be 1 to 32'],
    [{ a__b: { command: "x" } }, 'MCP server "a__b": an MCP server name must not contain "__"'],
    [{ s: "npx" }, 'MCP server "s": must be an object with a command or a url'],
    [{ s: {} }, 'MCP server "s": needs "command"'],
    [{ s: { command: "x", url: "http://h" } }, "not both"],
    [{ s: { command: "" } }, 'field "command" must be a non-empty string'],
    [{ s: { command: "x", args: "a b" } }, 'field "args" must be an array of strings'],
    [{ s: { command: "x", args: [1] } }, 'field "args" must be an array of strings'],
    [{ s: { command: "x", env: { A: 1 } } }, 'field "env.A" must be a string'],
    [{ s: { command: "x", env: { "A=B": "v" } } }, 'field "env" has an invalid name "A=B"'],
    [{ s: { command: "x", cwd: 3 } }, 'field "cwd" must be a string'],
    [{ s: { command: "x", type: "http" } }, 'field "type" is "http" but a server with a command uses stdio'],
    [{ s: { command: "x", envFile: ".env" } }, 'MCP server "s": unknown field "envFile"'],
    [{ s: { url: "ftp://h/x" } }, 'field "url" must be an http or https URL'],
    [{ s: { url: "not a url" } }, 'field "url" is not a valid URL'],
    [{ s: { url: "http://h", type: "websocket" } }, 'field "type" must be "http", "streamable-http" or "sse"'],
    [{ s: { url: "http://h", headers: { "Bad Name": "v" } } }, 'field "headers" has an invalid name "Bad Name"'],
    [{ s: { url: "http://h", headers: { X: "a\r\nInjected: 1" } } }, 'field "headers.X" must not contain line breaks'],
    [{ s: { url: "http://h", command: undefined, args: [] } }, 'unknown field "args"'],
  ])("rejects %j", (value, message) => {
    expect(() => parseMcpServers(value, where)).toThrow(message);
    expect(() => parseMcpServers(value, where)).toThrow(/^agentd\.yaml mcpServers: /);
  });

  it("reads an absent section as no servers", () => {
    expect(parseMcpServers(undefined, where)).toEqual({});
    expect(parseMcpServers(null, where)).toEqual({});
  });

  it("never echoes an env or header value in an error", () => {
    expect(() => parseMcpServers({ s: { url: "http://h", headers: { X: "secret-value\n" } } }, where)).toThrow(
      expect.objectContaining({ message: expect.not.stringContaining("secret-value") }),
    );
  });
});

describe("checkServerName", () => {
  it.each(["github", "my-server", "a_b", "A1", "x".repeat(32), "_lead"])("accepts %s", (name) => {
    expect(checkServerName(name)).toBeNull();
  });

  it.each(["", "x".repeat(33), "a b", "a.b", "a__b", "trailing_", "é"])("refuses %j", (name) => {
    expect(checkServerName(name)).toMatch(/MCP server name/);
  });
});
