/**
 * A subagent definition: a Markdown file (the format of Claude Code's `.claude/agents/*.md`) whose
 * front matter names the agent and whose body is its system prompt.
 */
export interface AgentDefinition {
  /** The same name rule as skills. */
  name: string;
  /** Required, at most 1024 characters. */
  description: string;
  /** Tool names or globs the child may use; null = the parent's tools. */
  tools: string[] | null;
  /** "" = the parent's model; otherwise a model name on the parent's provider. */
  model: string;
  /** Skill names the child gets in its catalogue. */
  skills: string[];
  /** The body: the child's system prompt. Never empty. */
  systemPrompt: string;
  /** The file text as loaded, for storing and restoring. */
  text: string;
}
