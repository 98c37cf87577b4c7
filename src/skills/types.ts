/** A skill in the Agent Skills format (https://agentskills.io): a SKILL.md file and its folder. */
export interface Skill {
  name: string;
  description: string;
  /** The `allowed-tools` list, split into entries; null when the field is absent. */
  allowedTools: string[] | null;
  /** "" when absent. */
  license: string;
  metadata: Record<string, string>;
  /** The Markdown after the front matter. */
  body: string;
  /** The folder the skill's other files are read from; null for a skill given inline. */
  dir: string | null;
  /** The SKILL.md text as loaded: what a session stores so the skill can be restored. */
  text: string;
}

export const SKILL_FILE = "SKILL.md";
