import { describe, expect, it } from "vitest";
import { ToolRegistry } from "../../src/tools/registry.js";
import type { Tool } from "../../src/tools/types.js";

function tool(name: string, inputSchema: Record<string, unknown> = { type: "object", properties: {} }): Tool {
  return { name, description: `the ${name} tool`, readOnly: true, inputSchema, execute: async () => "ok" };
}

describe("ToolRegistry", () => {
  it("registers, finds and lists tools sorted by name", () => {
    const registry = new ToolRegistry([tool("zeta"), tool("alpha")]);
    registry.register(tool("mid-dle_1"));
    expect(registry.has("alpha")).toBe(true);
    expect(registry.has("nope")).toBe(false);
    expect(registry.get("zeta")?.name).toBe("zeta");
    expect(registry.get("nope")).toBeUndefined();
    expect(registry.list().map((t) => t.name)).toEqual(["alpha", "mid-dle_1", "zeta"]);
  });

  it("refuses a duplicate name", () => {
    const registry = new ToolRegistry([tool("echo")]);
    expect(() => registry.register(tool("echo"))).toThrow(/already registered/);
  });

  it.each(["", "has space", "dot.ted", "slash/name", "é", "x".repeat(65)])("refuses the bad name %j", (name) => {
    expect(() => new ToolRegistry().register(tool(name))).toThrow(/invalid tool name/);
  });

  it("accepts a 64-character name", () => {
    expect(() => new ToolRegistry().register(tool("x".repeat(64)))).not.toThrow();
  });

  it("refuses an invalid schema at registration", () => {
    const registry = new ToolRegistry();
    expect(() => registry.register(tool("bad", { type: "object", properties: { a: { type: "strnig" } } }))).toThrow(
      /invalid input schema for tool "bad"/,
    );
    expect(() => registry.register(tool("typo", { type: "object", propertees: {} }))).toThrow(/invalid input schema/);
    expect(() => registry.register(tool("notobject", { type: "string" }))).toThrow(/"type": "object"/);
    expect(registry.list()).toEqual([]);
  });

  it("gives definitions sorted by name with name, description and schema only", () => {
    const schema = { type: "object", properties: { x: { type: "number" } }, required: ["x"] };
    const registry = new ToolRegistry([tool("b"), tool("a", schema)]);
    expect(registry.definitions()).toEqual([
      { name: "a", description: "the a tool", inputSchema: schema },
      { name: "b", description: "the b tool", inputSchema: { type: "object", properties: {} } },
    ]);
  });

  it("validates arguments with readable messages", () => {
    const registry = new ToolRegistry([
      tool("t", {
        type: "object",
        properties: { path: { type: "string" }, mode: { enum: ["a", "b"] } },
        required: ["path"],
        additionalProperties: false,
      }),
    ]);
    expect(registry.validate("t", { path: "x" })).toEqual([]);
    expect(registry.validate("t", { path: 1 })).toEqual(["/path must be string"]);
    expect(registry.validate("t", { mode: "c", extra: true })).toEqual([
      "arguments must have required property 'path'",
      'arguments must NOT have additional properties (unexpected property "extra")',
      '/mode must be equal to one of the allowed values: ["a","b"]',
    ]);
  });

  it("builds the built-in registry with the file and coding tools", () => {
    expect(ToolRegistry.withBuiltins().list().map((t) => t.name)).toEqual(["bash", "edit_file", "glob", "grep", "list_dir", "read_file", "write_file"]);
    expect(ToolRegistry.withBuiltins().definitions()).toHaveLength(7);
  });
});
