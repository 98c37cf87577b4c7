import { realpath, stat } from "node:fs/promises";
import path from "node:path";
import type { DefinitionProblem } from "../definitions/problems.js";
import { listFolder, readDefinitionFile } from "../definitions/read-file.js";
import { isInside } from "../util/paths.js";
import { parseSkill } from "./parse.js";
import { SKILL_FILE, type Skill } from "./types.js";

/** Loads `<dir>/SKILL.md`; the skill's name must be the folder's name. */
export async function loadSkillFolder(dir: string): Promise<{ skill: Skill } | { problem: DefinitionProblem }> {
  const file = path.join(dir, SKILL_FILE);
  const realDir = await realpath(dir).catch(() => null);
  if (realDir === null) return { problem: { file, line: 1, message: "the skill's folder cannot be found" } };
  // SKILL.md itself must not lead out of the folder: whatever it points to would be read and quoted.
  const realFile = await realpath(path.join(realDir, SKILL_FILE)).catch(() => null);
  if (realFile === null) return { problem: { file, line: 1, message: `the folder has no ${SKILL_FILE}` } };
  if (!isInside(realFile, realDir)) return { problem: { file, line: 1, message: `${SKILL_FILE} is a link that leads out of the skill's folder` } };
  const read = await readDefinitionFile(realFile);
  if ("problem" in read) return { problem: { ...read.problem, file } };
  return parseSkill(read.text, { file, folderName: path.basename(dir), dir: realDir });
}

/**
 * Loads every immediate subfolder of `root` that holds a SKILL.md, in name order. A bad skill is
 * reported and the others load. A missing root is an empty set. Two skills of one name cannot
 * occur: a skill's name must be its folder's, and a folder's entries have distinct names.
 */
export async function loadSkillsDir(root: string): Promise<{ items: Skill[]; problems: DefinitionProblem[] }> {
  const listed = await listFolder(root);
  if ("problem" in listed) return { items: [], problems: [listed.problem] };
  const items: Skill[] = [];
  const problems: DefinitionProblem[] = [];
  for (const name of listed.names) {
    if (name.startsWith(".")) continue;
    const dir = path.join(root, name);
    // Folders without a SKILL.md (and plain files) are not skills: skipped without a word.
    const hasSkill = await stat(path.join(dir, SKILL_FILE)).then(
      () => true,
      (error: NodeJS.ErrnoException) => error.code !== "ENOENT" && error.code !== "ENOTDIR",
    );
    if (!hasSkill) continue;
    const loaded = await loadSkillFolder(dir);
    if ("problem" in loaded) problems.push(loaded.problem);
    else items.push(loaded.skill);
  }
  return { items, problems };
}
