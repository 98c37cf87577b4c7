import { readDefinition } from "../definitions/fields.js";
import { quoted } from "../definitions/names.js";
import type { DefinitionProblem } from "../definitions/problems.js";
import type { Skill } from "./types.js";

export interface ParseSkillOptions {
  /** The file named in problems. */
  file: string;
  /** The folder's name, which the skill's name must equal; null for a skill given inline. */
  folderName: string | null;
  /** The folder its other files are read from; null for a skill given inline. */
  dir: string | null;
}

/**
 * Parses a SKILL.md text: the whole skill, or the first problem with its line. Fields the spec has
 * and agentd does not use (`compatibility`, ...) are ignored.
 */
export function parseSkill(text: string, options: ParseSkillOptions): { skill: Skill } | { problem: DefinitionProblem } {
  const result = readDefinition(text, options.file, (fields, frontMatter): Skill => {
    const name = fields.name();
    if (options.folderName !== null && name !== options.folderName) {
      fields.fail(`name ${quoted(name)} must be the name of the skill's folder, ${quoted(options.folderName)}`, "name");
    }
    return {
      name,
      description: fields.description(),
      allowedTools: fields.list("allowed-tools"),
      license: fields.optionalString("license") ?? "",
      metadata: fields.stringMap("metadata"),
      body: frontMatter.body.trim(),
      dir: options.dir,
      text,
    };
  });
  return "problem" in result ? result : { skill: result.value };
}
