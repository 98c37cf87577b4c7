import { readDefinition } from "../definitions/fields.js";
import { invalidName, quoted } from "../definitions/names.js";
import type { DefinitionProblem } from "../definitions/problems.js";
import type { AgentDefinition } from "./types.js";

/** The `model` value that means the parent's model, as in Claude Code. */
const INHERIT = "inherit";

/**
 * Parses a subagent definition: the whole definition, or the first problem with its line. Fields
 * other agents use and agentd does not (`color`, ...) are ignored.
 */
export function parseAgentDefinition(text: string, options: { file: string }): { definition: AgentDefinition } | { problem: DefinitionProblem } {
  const result = readDefinition(text, options.file, (fields, frontMatter): AgentDefinition => {
    const name = fields.name();
    const description = fields.description();
    const tools = fields.list("tools");
    const model = (fields.optionalString("model") ?? "").trim();
    const skills = fields.list("skills") ?? [];
    skills.forEach((skill, index) => {
      const why = invalidName(skill);
      if (why) fields.fail(`skills: ${quoted(skill)} is not a skill name: it ${why}`, "skills", index);
    });
    const systemPrompt = frontMatter.body.trim();
    if (systemPrompt === "") {
      // Pointing past the front matter, where the prompt should be.
      fields.failAtLine(frontMatter.bodyLine, "the body after the front matter is the subagent's system prompt and must not be empty");
    }
    return { name, description, tools, model: model === INHERIT ? "" : model, skills, systemPrompt, text };
  });
  return "problem" in result ? result : { definition: result.value };
}

