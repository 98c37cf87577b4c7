import { describe, expect, it } from "vitest";
import { parseSkill, type ParseSkillOptions } from "../../src/skills/parse.js";
import type { Skill } from "../../src/skills/types.js";

const FILE = "skills/demo/SKILL.md";
const options: ParseSkillOptions = { file: FILE, folderName: "demo", dir: "/skills/demo" };

function skill(text: string, opts = options): Skill {
  const result = parseSkill(text, opts);
  if (!("skill" in result)) throw new Error(`unexpected problem: ${result.problem.message}`);
  return result.skill;
}

function problem(text: string, opts = options) {
  const result = parseSkill(text, opts);
  if (!("problem" in result)) throw new Error("expected a problem");
  expect(result.problem.file).toBe(opts.file);
  return result.problem;
}

describe("parseSkill", () => {
  it("reads every field of a good skill", () => {
    const text = [
      "---",
      "name: demo",
      "description: >",
      "  Shows how skills work.",
      "  Use it for demos.",
      "license: Apache-2.0",
      "compatibility: any agent",
      "metadata:",
      "  author: someone",
      "  version: 1.5",
      "  stable: true",
      "allowed-tools: Read Bash(git status:*)",
      "---",
      "",
      "# Demo",
      "Read `reference.md` first.",
      "",
    ].join("\n");
    expect(skill(text)).toEqual({
      name: "demo",
      description: "Shows how skills work. Use it for demos.",
      allowedTools: ["Read", "Bash(git status:*)"],
      license: "Apache-2.0",
      metadata: { author: "someone", version: "1.5", stable: "true" },
      body: "# Demo\nRead `reference.md` first.",
      dir: "/skills/demo",
      text,
    });
  });

  it("leaves optional fields empty when absent, and allowedTools null", () => {
    const parsed = skill("---\nname: demo\ndescription: d\n---\nbody\n");
    expect(parsed).toMatchObject({ allowedTools: null, license: "", metadata: {}, body: "body" });
  });

  it("accepts CRLF files", () => {
    const parsed = skill("---\r\nname: demo\r\ndescription: d\r\nallowed-tools: read_file, grep\r\n---\r\nline one\r\nline two\r\n");
    expect(parsed).toMatchObject({ name: "demo", description: "d", allowedTools: ["read_file", "grep"], body: "line one\nline two" });
    expect(problem("---\r\nname: demo\r\ndescription: d\r\nlicense: [1]\r\n---\r\n").line).toBe(4);
  });

  describe("allowed-tools", () => {
    const tools = (value: string) => skill(`---\nname: demo\ndescription: d\nallowed-tools: ${value}\n---\n`).allowedTools;

    it("splits a string on spaces and commas, keeping parenthesised patterns whole", () => {
      expect(tools("Bash(git log:*) Bash(git diff:*), Read")).toEqual(["Bash(git log:*)", "Bash(git diff:*)", "Read"]);
      expect(tools('"bash(git status --short) write_file(src/**)"')).toEqual(["bash(git status --short)", "write_file(src/**)"]);
      expect(tools("mcp__github__*")).toEqual(["mcp__github__*"]);
      expect(tools('""')).toEqual([]);
    });

    it("takes a YAML list as is", () => {
      expect(tools("\n  - Bash(git log:*)\n  - read_file")).toEqual(["Bash(git log:*)", "read_file"]);
      expect(tools("[]")).toEqual([]);
    });

    it("reports a bad list on its line", () => {
      expect(problem("---\nname: demo\ndescription: d\nallowed-tools: Bash(git log\n---\n")).toMatchObject({ line: 4, message: expect.stringContaining("(") });
      expect(problem("---\nname: demo\ndescription: d\nallowed-tools:\n  - read_file\n  - 3\n---\n")).toMatchObject({ line: 6, message: expect.stringContaining("entry 2") });
      expect(problem("---\nname: demo\ndescription: d\nallowed-tools: {a: 1}\n---\n").line).toBe(4);
    });
  });

  it("reports each broken rule on the offending field's line", () => {
    const cases: Array<[string, number, RegExp]> = [
      ["---\ndescription: d\n---\n", 1, /"name" field/],
      ["---\nname: demo\n---\n", 1, /"description" field/],
      ["---\nname: demo\ndescription:\n---\n", 3, /description has no value/],
      ["---\nname: Demo\ndescription: d\n---\n", 2, /lowercase/],
      ["---\nname: -demo\ndescription: d\n---\n", 2, /hyphen/],
      ["---\nname: demo-\ndescription: d\n---\n", 2, /hyphen/],
      ["---\nname: de--mo\ndescription: d\n---\n", 2, /--/],
      ["---\nname: de_mo\ndescription: d\n---\n", 2, /lowercase/],
      [`---\nname: ${"a".repeat(65)}\ndescription: d\n---\n`, 2, /64/],
      ["---\nname: 42\ndescription: d\n---\n", 2, /must be a string/],
      ["---\nname: demo\n\ndescription: '  '\n---\n", 4, /must not be empty/],
      [`---\nname: demo\ndescription: ${"d".repeat(1025)}\n---\n`, 3, /1024/],
      ["---\nname: demo\ndescription: [a]\n---\n", 3, /must be a string/],
      ["---\nname: demo\ndescription: d\nlicense: 3\n---\n", 4, /license must be a string/],
      ["---\nname: demo\ndescription: d\nmetadata: text\n---\n", 4, /mapping/],
      ["---\nname: demo\ndescription: d\nmetadata:\n  ok: yes\n  nested:\n    a: b\n---\n", 6, /metadata\.nested/],
    ];
    for (const [text, line, message] of cases) {
      const found = problem(text);
      expect({ text, line: found.line }).toEqual({ text, line });
      expect(found.message).toMatch(message);
    }
  });

  it("requires the name to be the folder's name, but not for an inline skill", () => {
    expect(problem("---\nname: other\ndescription: d\n---\n")).toMatchObject({ line: 2, message: expect.stringContaining('"demo"') });
    expect(skill("---\nname: other\ndescription: d\n---\n", { file: "(content)", folderName: null, dir: null })).toMatchObject({ name: "other", dir: null });
  });

  it("allows a name of exactly 64 characters", () => {
    const name = `${"a".repeat(63)}b`;
    expect(skill(`---\nname: ${name}\ndescription: d\n---\n`, { ...options, folderName: name }).name).toBe(name);
  });
});
