import { mkdir, rm, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { invalidAllowedTool } from "../../src/skills/allowed-tools.js";
import { skillCatalogue } from "../../src/skills/catalogue.js";
import { loadSkillFolder, loadSkillsDir } from "../../src/skills/load.js";
import { skillText, tempDir, writeSkill } from "./helpers.js";

let root: string;

beforeEach(async () => {
  root = await tempDir("agentd-skills-");
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("loadSkillFolder", () => {
  it("loads a folder's SKILL.md with the folder's real path", async () => {
    const dir = await writeSkill(root, "demo", skillText("demo", "A demo"));
    await symlink(dir, path.join(root, "alias"));
    const loaded = await loadSkillFolder(dir);
    expect(loaded).toMatchObject({ skill: { name: "demo", dir } });
    // Through a link the folder name is the link's, the folder the real one.
    const viaLink = await loadSkillFolder(path.join(root, "alias"));
    expect(viaLink).toMatchObject({ problem: { line: 2, message: expect.stringContaining('"alias"') } });
  });

  it("reports a folder without SKILL.md, and one whose SKILL.md leads outside", async () => {
    await mkdir(path.join(root, "empty"));
    expect(await loadSkillFolder(path.join(root, "empty"))).toMatchObject({ problem: { line: 1, file: path.join(root, "empty", "SKILL.md") } });
    const outside = await tempDir("agentd-outside-");
    try {
      await writeFile(path.join(outside, "SKILL.md"), skillText("linked", "SECRET DESCRIPTION"));
      await mkdir(path.join(root, "linked"));
      await symlink(path.join(outside, "SKILL.md"), path.join(root, "linked", "SKILL.md"));
      const loaded = await loadSkillFolder(path.join(root, "linked"));
      expect(loaded).toMatchObject({ problem: { message: expect.stringContaining("leads out") } });
      expect(JSON.stringify(loaded)).not.toContain("SECRET");
    } finally {
      await rm(outside, { recursive: true, force: true });
    }
  });

  it("refuses a SKILL.md over the size limit without reading it", async () => {
    const dir = await writeSkill(root, "big", skillText("big", "b", "", "x".repeat(300 * 1024)));
    expect(await loadSkillFolder(dir)).toMatchObject({ problem: { line: 1, message: expect.stringContaining("over the limit") } });
  });
});

describe("loadSkillsDir", () => {
  it("loads the good skills in name order and reports each bad one with its file and line", async () => {
    await writeSkill(root, "zeta", skillText("zeta", "Last"));
    await writeSkill(root, "broken", "---\nname: broken\ndescription: [unclosed\n---\nbody\n");
    await writeSkill(root, "alpha", skillText("alpha", "First", "allowed-tools: read_file\n"));
    await writeSkill(root, "mismatch", skillText("other-name", "Wrong folder"));
    await writeSkill(root, "no-description", "---\nname: no-description\n---\n");
    await mkdir(path.join(root, "not-a-skill"));
    await writeFile(path.join(root, "README.md"), "not a skill folder");
    await writeSkill(root, ".hidden", skillText("hidden", "Dot folders are skipped"));

    const { items, problems } = await loadSkillsDir(root);
    expect(items.map((s) => s.name)).toEqual(["alpha", "zeta"]);
    expect(items[0]!.allowedTools).toEqual(["read_file"]);
    expect(problems.map((p) => [path.relative(root, p.file), p.line])).toEqual([
      ["broken/SKILL.md", expect.any(Number)],
      ["mismatch/SKILL.md", 2],
      ["no-description/SKILL.md", 1],
    ]);
  });

  it("is empty, without a problem, when the folder does not exist", async () => {
    expect(await loadSkillsDir(path.join(root, "missing"))).toEqual({ items: [], problems: [] });
  });

  it("reports a root that is a file", async () => {
    await writeFile(path.join(root, "file"), "x");
    const { items, problems } = await loadSkillsDir(path.join(root, "file"));
    expect(items).toEqual([]);
    expect(problems).toEqual([{ file: path.join(root, "file"), line: 1, message: "is not a folder" }]);
  });
});

describe("the examples", () => {
  it("load with no problems, and their allowed-tools are valid permission rules", async () => {
    const examples = path.resolve(import.meta.dirname, "../../examples/skills");
    const { items, problems } = await loadSkillsDir(examples);
    expect(problems).toEqual([]);
    expect(items.map((s) => s.name)).toEqual(["code-review", "commit-message"]);
    for (const skill of items) {
      expect(skill.allowedTools?.length).toBeGreaterThan(0);
      expect(invalidAllowedTool(skill.allowedTools!)).toBeNull();
    }
    expect(items[0]!.body).toContain("checklist.md");
  });
});

describe("skillCatalogue", () => {
  const skill = (name: string, description: string) => ({
    name,
    description,
    allowedTools: null,
    license: "",
    metadata: {},
    body: `BODY OF ${name}`,
    dir: null,
    text: "",
  });

  it("is empty without skills", () => {
    expect(skillCatalogue([])).toBe("");
  });

  it("lists names and one-line descriptions in name order, never the bodies, and names the skill tool", () => {
    const text = skillCatalogue([skill("zeta", "Last one"), skill("alpha", "First\none")]);
    expect(text).toContain("`skill` tool");
    expect(text).not.toContain("BODY OF");
    const lines = text.split("\n").filter((line) => line.startsWith("- "));
    expect(lines).toEqual(["- alpha: First one", "- zeta: Last one"]);
    expect(skillCatalogue([skill("alpha", "First\none"), skill("zeta", "Last one")])).toBe(text);
  });
});
