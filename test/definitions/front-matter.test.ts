import { describe, expect, it } from "vitest";
import { MAX_DEFINITION_BYTES, parseFrontMatter } from "../../src/definitions/front-matter.js";
import { splitList } from "../../src/definitions/lists.js";
import { describeProblem } from "../../src/definitions/problems.js";

function parsed(text: string) {
  const result = parseFrontMatter(text);
  if (!("frontMatter" in result)) throw new Error(`unexpected problem: ${result.problem.message}`);
  return result.frontMatter;
}

function problem(text: string) {
  const result = parseFrontMatter(text);
  if (!("problem" in result)) throw new Error("expected a problem");
  return result.problem;
}

describe("parseFrontMatter", () => {
  it("splits the YAML from the body and knows each field's line", () => {
    const fm = parsed("---\nname: a\nmetadata:\n  owner: me\nlist:\n  - x\n  - y\n---\n# Body\ntext\n");
    expect(fm.data).toEqual({ name: "a", metadata: { owner: "me" }, list: ["x", "y"] });
    expect(fm.body).toBe("# Body\ntext\n");
    expect(fm.bodyLine).toBe(9);
    expect(fm.fieldLine("name")).toBe(2);
    expect(fm.fieldLine("metadata", "owner")).toBe(4);
    expect(fm.fieldLine("list", 1)).toBe(7);
    expect(fm.fieldLine("missing")).toBe(1);
    expect(fm.fieldLine("metadata", "missing")).toBe(3);
  });

  it("accepts CRLF line ends and a byte-order mark", () => {
    const fm = parsed("\uFEFF---\r\nname: a\r\ndescription: b\r\n---\r\nbody\r\nmore\r\n");
    expect(fm.data).toEqual({ name: "a", description: "b" });
    expect(fm.body).toBe("body\nmore\n");
    expect(fm.fieldLine("description")).toBe(3);
  });

  it("takes empty front matter as no fields", () => {
    expect(parsed("---\n---\nbody").data).toEqual({});
  });

  it("reports a missing or unclosed front matter on line 1", () => {
    expect(problem("# just markdown\n")).toMatchObject({ line: 1, message: expect.stringContaining("---") });
    expect(problem("---\nname: a\n")).toMatchObject({ line: 1, message: expect.stringContaining("never closed") });
  });

  it("reports YAML syntax errors, duplicate keys and non-mappings on their line", () => {
    expect(problem("---\nname: a\ndescription: b: c\n---\n")).toMatchObject({ line: 3, message: expect.stringContaining("not valid YAML") });
    expect(problem("---\nname: a\ndescription: x\nname: b\n---\n")).toEqual({ line: 4, message: "a key appears twice in the front matter" });
    expect(problem("---\n# comment\n- a\n- b\n---\n")).toMatchObject({ line: 3, message: expect.stringContaining("mapping") });
    expect(problem("---\n? [a, b]\n: c\n---\n")).toMatchObject({ line: 2, message: expect.stringContaining("plain names") });
  });

  it("does not quote the file in YAML error messages", () => {
    expect(problem("---\nsecret: SECRET-VALUE: x\n---\n").message).not.toContain("SECRET-VALUE");
  });

  it("refuses a file over the size limit", () => {
    const huge = `---\nname: a\n---\n${"x".repeat(MAX_DEFINITION_BYTES)}`;
    expect(problem(huge)).toMatchObject({ line: 1, message: expect.stringContaining(String(MAX_DEFINITION_BYTES)) });
  });
});

describe("splitList", () => {
  it("splits on commas and spaces but keeps parentheses whole", () => {
    expect(splitList("Read, Grep  Bash(git status:*),bash(git log --oneline:*)")).toEqual({
      entries: ["Read", "Grep", "Bash(git status:*)", "bash(git log --oneline:*)"],
    });
    expect(splitList("  ")).toEqual({ entries: [] });
  });

  it("reports parentheses that do not pair up", () => {
    expect(splitList("Bash(git status")).toHaveProperty("error");
    expect(splitList("Read)")).toHaveProperty("error");
  });
});

describe("describeProblem", () => {
  it("formats a problem as file:line: message", () => {
    expect(describeProblem({ file: "a/SKILL.md", line: 3, message: "bad" })).toBe("a/SKILL.md:3: bad");
  });
});
