import type { Tool } from "../tools/types.js";
import { listSkillFiles, readSkillFile } from "./skill-files.js";
import type { Skill } from "./types.js";

/** What the skill tool needs of the runtime. */
export interface SkillLookup {
  /** The skills a session sees (its own shadowing inherited and global ones). */
  skillsFor(sessionId: string): readonly Skill[];
  /** Called when the model has read a skill's instructions in a turn (its allowed-tools then apply for the rest of that turn). */
  activated(sessionId: string, turnId: string, skill: Skill): void;
}

export interface SkillToolLimits {
  /** The largest file of a skill's folder the tool returns. */
  maxFileBytes?: number;
}

export const DEFAULT_MAX_SKILL_FILE_BYTES = 256 * 1024;
/** Files named in the header of a skill's instructions: enough to find one's way, not a dump of the folder. */
const MAX_LISTED_FILES = 50;

/**
 * The `skill` tool: the model reads a skill's instructions (and with `file`, the files they refer
 * to) only when a task calls for it; the system prompt holds just the catalogue.
 */
export function createSkillTool(lookup: SkillLookup, limits: SkillToolLimits = {}): Tool {
  const maxFileBytes = limits.maxFileBytes ?? DEFAULT_MAX_SKILL_FILE_BYTES;
  return {
    name: "skill",
    readOnly: true,
    description:
      "Read a skill listed in your instructions before doing the task it covers. Without `file`, returns the skill's " +
      "instructions and the files its folder holds; with `file`, returns one of those files (a path relative to the " +
      "skill's folder, as the instructions refer to it).",
    inputSchema: {
      type: "object",
      properties: {
        name: { type: "string", description: "The skill's name, as listed in your instructions." },
        file: { type: "string", description: "a path relative to the skill's folder, as the instructions refer to it" },
      },
      required: ["name"],
      additionalProperties: false,
    },
    async execute(args, context) {
      const name = args.name as string;
      const file = args.file as string | undefined;
      const skills = lookup.skillsFor(context.sessionId);
      const skill = skills.find((candidate) => candidate.name === name);
      if (!skill) {
        const available = skills.length === 0 ? "there are none in this session" : `the available ones are: ${skills.map((s) => s.name).join(", ")}`;
        throw new Error(`no skill named ${JSON.stringify(name.slice(0, 100))}; ${available}`);
      }
      if (file !== undefined) {
        if (skill.dir === null) throw new Error(`skill ${skill.name} was given inline and has no folder, so no files to read`);
        return readSkillFile(skill.dir, file, { maxFileBytes, signal: context.signal });
      }
      const header = await skillHeader(skill, context.signal);
      lookup.activated(context.sessionId, context.turnId, skill);
      return `${header}\n\n${skill.body}`;
    },
  };
}

/** "Skill: <name>", and for a folder skill the files it holds, which the model reads with `file`. */
async function skillHeader(skill: Skill, signal: AbortSignal): Promise<string> {
  const title = `Skill: ${skill.name}`;
  if (skill.dir === null) return title;
  const { files, more } = await listSkillFiles(skill.dir, MAX_LISTED_FILES, signal);
  if (files.length === 0) return title;
  return `${title} (files in its folder, read with \`file\`: ${files.join(", ")}${more ? ", and more" : ""})`;
}
