import { compareByName } from "../definitions/names.js";
import type { Skill } from "./types.js";

/**
 * The section of a session's system prompt that lists its skills: names and descriptions only.
 * The model reads a skill's instructions with the `skill` tool when a task calls for it
 * (progressive disclosure), so many skills cost the prompt a line each. "" when there are none.
 */
export function skillCatalogue(skills: readonly Skill[]): string {
  if (skills.length === 0) return "";
  // A description may span lines in YAML; one line each keeps the list readable.
  const lines = [...skills].sort(compareByName).map((skill) => `- ${skill.name}: ${skill.description.replace(/\s+/g, " ").trim()}`);
  return [
    "## Skills",
    "Skills are instructions for particular tasks. When a task matches one, first read it with the `skill` tool (name), then follow it; " +
      "it may refer to files in its folder, which the same tool reads (name, file).",
    ...lines,
  ].join("\n");
}
