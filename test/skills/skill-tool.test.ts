import { rm, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { loadSkillFolder } from "../../src/skills/load.js";
import { parseSkill } from "../../src/skills/parse.js";
import { createSkillTool, type SkillLookup } from "../../src/skills/skill-tool.js";
import type { Skill } from "../../src/skills/types.js";
import type { ToolContext } from "../../src/tools/types.js";
import { turnContext } from "../helpers/turn-context.js";
import { skillText, tempDir, writeSkill } from "./helpers.js";

let root: string;
let outside: string;
let skills: Skill[];
let activations: string[];
let ctx: ToolContext;

const lookup: SkillLookup = {
  skillsFor: (sessionId) => (sessionId === "test-session" ? skills : []),
  activated: (sessionId, turnId, skill) => activations.push(`${sessionId}/${turnId}/${skill.name}`),
};
const tool = createSkillTool(lookup, { maxFileBytes: 1024 });

async function folderSkill(folder: string, text: string, files: Record<string, string | Buffer> = {}): Promise<Skill> {
  const loaded = await loadSkillFolder(await writeSkill(root, folder, text, files));
  if (!("skill" in loaded)) throw new Error(loaded.problem.message);
  return loaded.skill;
}

const run = (args: Record<string, unknown>) => tool.execute(args, ctx);

beforeEach(async () => {
  root = await tempDir("agentd-skill-tool-");
  outside = await tempDir("agentd-skill-outside-");
  await writeFile(path.join(outside, "secret.txt"), "TOP SECRET CONTENT");
  activations = [];
  ctx = { ...turnContext(), workspace: outside };
  const review = await folderSkill("review", skillText("review", "Review code", "", "Follow checklist.md step by step."), {
    "checklist.md": "# Checklist\n- [ ] tests\n",
    "scripts/run.sh": "echo hi\n",
    ".hidden": "not listed",
    "big.txt": "x".repeat(2000),
    "image.png": Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x00, 0x01]),
  });
  await symlink(path.join(outside, "secret.txt"), path.join(review.dir!, "escape.txt"));
  await symlink(outside, path.join(review.dir!, "escape-dir"));
  await symlink("checklist.md", path.join(review.dir!, "alias.md"));
  const inline = parseSkill(skillText("inline", "Given inline", "", "Inline body."), { file: "(content)", folderName: null, dir: null });
  if (!("skill" in inline)) throw new Error("inline skill did not parse");
  skills = [review, inline.skill];
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
  await rm(outside, { recursive: true, force: true });
});

describe("the skill tool", () => {
  it("is a read-only tool named skill with a strict schema", () => {
    expect(tool.name).toBe("skill");
    expect(tool.readOnly).toBe(true);
    expect(tool.inputSchema).toMatchObject({ required: ["name"], additionalProperties: false });
  });

  it("returns the body with a header listing the folder's files, and reports the activation", async () => {
    const output = (await run({ name: "review" })) as string;
    const [header, ...rest] = output.split("\n");
    expect(header).toContain("Skill: review");
    for (const file of ["checklist.md", "scripts/run.sh", "big.txt", "alias.md"]) expect(header).toContain(file);
    expect(header).not.toContain(".hidden");
    // Links are listed only when they lead to a file inside the folder.
    expect(header).not.toContain("escape");
    expect(header).not.toContain("SKILL.md");
    expect(rest.join("\n")).toContain("Follow checklist.md step by step.");
    expect(activations).toEqual(["test-session/test-turn/review"]);
  });

  it("returns an inline skill's body with a header and no files", async () => {
    expect(await run({ name: "inline" })).toBe("Skill: inline\n\nInline body.");
    expect(activations).toEqual(["test-session/test-turn/inline"]);
  });

  it("reads a file the instructions refer to, also through a link that stays inside, without activating", async () => {
    expect(await run({ name: "review", file: "checklist.md" })).toBe("# Checklist\n- [ ] tests\n");
    expect(await run({ name: "review", file: "./scripts/run.sh" })).toBe("echo hi\n");
    expect(await run({ name: "review", file: "alias.md" })).toBe("# Checklist\n- [ ] tests\n");
    expect(activations).toEqual([]);
  });

  it("refuses paths that leave the folder, without quoting what lies outside", async () => {
    const refusals: Array<[string, RegExp]> = [
      ["../x", /without "\.\."/],
      ["scripts/../../review/checklist.md", /without "\.\."/],
      [path.join(outside, "secret.txt"), /relative/],
      ["escape.txt", /outside the skill's folder/],
      ["escape-dir/secret.txt", /outside the skill's folder/],
    ];
    for (const [file, message] of refusals) {
      const error = await run({ name: "review", file }).then(
        () => null,
        (thrown: Error) => thrown,
      );
      expect(error?.message, file).toMatch(message);
      expect(error!.message).not.toContain("TOP SECRET");
      if (!file.startsWith(outside)) expect(error!.message).not.toContain(outside);
    }
  });

  it("refuses folders, missing, binary and too large files", async () => {
    await expect(run({ name: "review", file: "scripts" })).rejects.toThrow(/is a folder/);
    await expect(run({ name: "review", file: "." })).rejects.toThrow(/is a folder/);
    await expect(run({ name: "review", file: "missing.md" })).rejects.toThrow(/no file "missing.md"/);
    await expect(run({ name: "review", file: "image.png" })).rejects.toThrow(/binary/);
    await expect(run({ name: "review", file: "big.txt" })).rejects.toThrow(/2000 bytes, over the limit of 1024/);
    await expect(run({ name: "review", file: "" })).rejects.toThrow(/non-empty/);
  });

  it("says an inline skill has no files", async () => {
    await expect(run({ name: "inline", file: "anything.md" })).rejects.toThrow(/no folder/);
  });

  it("names the available skills when asked for an unknown one", async () => {
    await expect(run({ name: "nope" })).rejects.toThrow(/no skill named "nope"; the available ones are: review, inline/);
    await expect(tool.execute({ name: "review" }, { ...ctx, sessionId: "other" })).rejects.toThrow(/there are none/);
    expect(activations).toEqual([]);
  });

  it("lists at most 50 files", async () => {
    const many: Record<string, string> = {};
    for (let i = 0; i < 60; i++) many[`refs/file-${String(i).padStart(2, "0")}.md`] = "x";
    skills = [await folderSkill("many", skillText("many", "Many files"), many)];
    const header = ((await run({ name: "many" })) as string).split("\n")[0]!;
    expect(header.match(/refs\/file-/g)).toHaveLength(50);
    expect(header).toContain("and more");
  });

  it("stops when the turn is cancelled", async () => {
    const controller = new AbortController();
    controller.abort();
    await expect(tool.execute({ name: "review" }, { ...ctx, signal: controller.signal })).rejects.toThrow();
  });
});

describe("a skill folder that has gone", () => {
  it("reports it instead of reading elsewhere", async () => {
    const gone = await folderSkill("gone", skillText("gone", "Gone soon"), { "a.md": "a" });
    skills = [gone];
    await rm(gone.dir!, { recursive: true });
    await expect(run({ name: "gone", file: "a.md" })).rejects.toThrow(/no longer there/);
  });
});
