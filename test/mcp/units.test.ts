import { PassThrough } from "node:stream";
import { finished } from "node:stream/promises";
import { describe, expect, it } from "vitest";
import { retryDelayMs } from "../../src/mcp/backoff.js";
import { httpEndpoint } from "../../src/mcp/http-endpoint.js";
import { describeTarget, scrub, secretsOf } from "../../src/mcp/secrets.js";
import { onEachLine } from "../../src/mcp/stderr-lines.js";
import { mcpToolName, nameTools } from "../../src/mcp/tools.js";

const info = (name: string) => ({ name, description: "", inputSchema: { type: "object" }, readOnlyHint: false });

describe("tool names", () => {
  it("are mcp__<server>__<tool>, with other characters made _", () => {
    expect(mcpToolName("github", "create_issue")).toBe("mcp__github__create_issue");
    expect(mcpToolName("fs", "read.file/v2")).toBe("mcp__fs__read_file_v2");
    expect(mcpToolName("s", "x".repeat(56))).toBe(`mcp__s__${"x".repeat(56)}`);
    expect(mcpToolName("s", "x".repeat(57))).toBeNull();
  });

  it("leave out tools whose names are too long or taken", () => {
    const { named, skipped } = nameTools("s", [info("a.b"), info("a_b"), info("y".repeat(80))]);
    expect([...named.keys()]).toEqual(["mcp__s__a_b"]);
    expect(named.get("mcp__s__a_b")?.name).toBe("a.b");
    expect(skipped).toHaveLength(2);
  });
});

describe("retryDelayMs", () => {
  const backoff = { baseMs: 100, maxMs: 1_000 };
  it("doubles up to the cap, with the upper half random", () => {
    expect([1, 2, 3, 4, 5, 50].map((attempt) => retryDelayMs(backoff, attempt, () => 1))).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect([1, 2, 5].map((attempt) => retryDelayMs(backoff, attempt, () => 0))).toEqual([50, 100, 500]);
  });
});

describe("secrets", () => {
  it("are env and header values and URL credentials and query, scrubbed from text", () => {
    const stdio = { type: "stdio" as const, command: "srv", args: ["--port", "80 80"], env: { KEY: "abcd1234", DEBUG: "1" }, cwd: "" };
    expect(secretsOf(stdio)).toEqual(["abcd1234"]);
    expect(describeTarget(stdio)).toBe('srv --port "80 80"');
    expect(scrub("failed with abcd1234 and abcd1234", secretsOf(stdio))).toBe("failed with [redacted] and [redacted]");

    const http = { type: "http" as const, url: "https://bob:hunter22@h.example/mcp?key=qwerty#frag", headers: { Authorization: "Bearer tok-5678" } };
    expect(secretsOf(http)).toEqual(expect.arrayContaining(["Bearer tok-5678", "tok-5678", "hunter22", "key=qwerty", "qwerty"]));
    expect(secretsOf(http)).not.toContain("Bearer");
    expect(describeTarget(http)).toBe("https://h.example/mcp");
  });

  it("include the Basic header made from URL credentials", () => {
    const { url, headers } = httpEndpoint("http://bob:p%40ss@h/mcp", { X: "1" });
    expect(url.href).toBe("http://h/mcp");
    expect(headers).toEqual({ X: "1", Authorization: `Basic ${Buffer.from("bob:p@ss").toString("base64")}` });
    expect(secretsOf({ type: "http", url: "http://bob:p%40ss@h/mcp", headers: {} })).toContain(headers.Authorization);
    expect(httpEndpoint("http://bob:x@h/mcp", { authorization: "Bearer t" }).headers).toEqual({ authorization: "Bearer t" });
  });
});

describe("onEachLine", () => {
  it("splits chunks into lines, bounds long ones and flushes the last", async () => {
    const stream = new PassThrough();
    const lines: string[] = [];
    onEachLine(stream, 10, (line) => lines.push(line));
    stream.write("one\r\ntw");
    stream.write("o\n");
    stream.write("x".repeat(25));
    stream.write("y".repeat(5) + "\nafter\nlast");
    stream.end();
    await finished(stream);
    expect(lines).toEqual(["one", "two", `${"x".repeat(10)} [line cut at 10 characters]`, "after", "last"]);
  });

  it("does not split a character across chunks", () => {
    const stream = new PassThrough();
    const lines: string[] = [];
    onEachLine(stream, 100, (line) => lines.push(line));
    const bytes = Buffer.from("héllo\n");
    stream.write(bytes.subarray(0, 2));
    stream.write(bytes.subarray(2));
    stream.end();
    expect(lines).toEqual(["héllo"]);
  });
});
