import { mkdir, mkdtemp, realpath, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { loadAgentsDir } from "../../src/subagents/load.js";
import { parseAgentDefinition } from "../../src/subagents/parse.js";
import type { AgentDefinition } from "../../src/subagents/types.js";

const FILE = "agents/reviewer.md";

function definition(text: string): AgentDefinition {
  const result = parseAgentDefinition(text, { file: FILE });
  if (!("definition" in result)) throw new Error(`unexpected problem: ${result.problem.message}`);
  return result.definition;
}

function problem(text: string) {
  const result = parseAgentDefinition(text, { file: FILE });
  if (!("problem" in result)) throw new Error("expected a problem");
  expect(result.problem.file).toBe(FILE);
  return result.problem;
}

const agent = (name: string, extra = "", body = "You review code.") => `---\nname: ${name}\ndescription: Reviews code\n${extra}---\n${body}\n`;

describe("parseAgentDefinition", () => {
  it("reads a Claude Code style definition", () => {
    const text = "---\nname: code-reviewer\ndescription: Reviews diffs for bugs.\ntools: Read, Grep, Glob, Bash(git diff:*)\nmodel: sonnet\ncolor: blue\n---\n\nYou are a careful reviewer.\n";
    expect(definition(text)).toEqual({
      name: "code-reviewer",
      description: "Reviews diffs for bugs.",
      tools: ["Read", "Grep", "Glob", "Bash(git diff:*)"],
      model: "sonnet",
      skills: [],
      systemPrompt: "You are a careful reviewer.",
      text,
    });
  });

  it("takes tools as a string, a YAML list or nothing (the parent's tools)", () => {
    expect(definition(agent("a", "tools: read_file grep\n")).tools).toEqual(["read_file", "grep"]);
    expect(definition(agent("a", "tools:\n  - read_file\n  - mcp__github__*\n  - bash(npm test:*)\n")).tools).toEqual([
      "read_file",
      "mcp__github__*",
      "bash(npm test:*)",
    ]);
    expect(definition(agent("a", "tools: []\n")).tools).toEqual([]);
    expect(definition(agent("a")).tools).toBeNull();
  });

  it("maps model inherit, and no model, to the parent's model", () => {
    expect(definition(agent("a", "model: inherit\n")).model).toBe("");
    expect(definition(agent("a")).model).toBe("");
    expect(definition(agent("a", "model: gpt-4o-mini\n")).model).toBe("gpt-4o-mini");
  });

  it("takes skills as a string or a list, each a valid skill name", () => {
    expect(definition(agent("a", "skills: commit-message, code-review\n")).skills).toEqual(["commit-message", "code-review"]);
    expect(definition(agent("a", "skills:\n  - code-review\n")).skills).toEqual(["code-review"]);
    expect(problem(agent("a", "skills:\n  - code-review\n  - Bad_Skill\n"))).toMatchObject({ line: 6, message: expect.stringContaining("Bad_Skill") });
  });

  it("accepts CRLF", () => {
    expect(definition("---\r\nname: a\r\ndescription: d\r\ntools: read_file\r\n---\r\nPrompt\r\n")).toMatchObject({ name: "a", tools: ["read_file"], systemPrompt: "Prompt" });
  });

  it("reports each problem on its line", () => {
    expect(problem("---\ndescription: d\n---\nPrompt\n")).toMatchObject({ line: 1, message: expect.stringContaining('"name"') });
    expect(problem("---\nname: Reviewer\ndescription: d\n---\nPrompt\n").line).toBe(2);
    expect(problem("---\nname: a\n---\nPrompt\n")).toMatchObject({ line: 1, message: expect.stringContaining('"description"') });
    expect(problem("---\nname: a\ndescription: d\ntools: 5\n---\nPrompt\n").line).toBe(4);
    expect(problem("---\nname: a\ndescription: d\nmodel: [x]\n---\nPrompt\n").line).toBe(4);
    expect(problem("---\nname: a\ndescription: d\n---\n\n  \n")).toMatchObject({ line: 5, message: expect.stringContaining("system prompt") });
    expect(problem("---\nname: a\nname: b\ndescription: d\n---\nPrompt\n").line).toBe(3);
  });
});

describe("loadAgentsDir", () => {
  let root: string;

  beforeEach(async () => {
    root = await realpath(await mkdtemp(path.join(tmpdir(), "agentd-agents-")));
  });

  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it("loads every .md file in name order, reports bad ones and second definitions of a name", async () => {
    await writeFile(path.join(root, "b-reviewer.md"), agent("reviewer"));
    await writeFile(path.join(root, "a-tester.md"), agent("tester"));
    await writeFile(path.join(root, "c-broken.md"), "---\nname: broken\n---\nPrompt\n");
    await writeFile(path.join(root, "d-again.md"), agent("reviewer"));
    await writeFile(path.join(root, "notes.txt"), "not a definition");
    await writeFile(path.join(root, ".draft.md"), agent("draft"));
    await mkdir(path.join(root, "folder.md"));

    const { items, problems } = await loadAgentsDir(root);
    // In file-name order: the name comes from the front matter, and the first file of a name wins.
    expect(items.map((d) => d.name)).toEqual(["tester", "reviewer"]);
    expect(problems).toEqual([
      { file: path.join(root, "c-broken.md"), line: 1, message: expect.stringContaining("description") },
      { file: path.join(root, "d-again.md"), line: 2, message: expect.stringContaining(path.join(root, "b-reviewer.md")) },
    ]);
  });

  it("is empty, without a problem, when the folder does not exist", async () => {
    expect(await loadAgentsDir(path.join(root, "missing"))).toEqual({ items: [], problems: [] });
  });
});
