import { compileRule } from "../policy/rules.js";

/**
 * Skills written for other coding agents name those agents' tools (`Read`, `Bash(git diff:*)`);
 * they mean agentd's equivalents. Anything else is taken as an agentd permission rule.
 */
const TOOL_ALIASES: Record<string, string> = {
  Read: "read_file",
  Write: "write_file",
  Edit: "edit_file",
  MultiEdit: "edit_file",
  LS: "list_dir",
  Glob: "glob",
  Grep: "grep",
  Bash: "bash",
};

const ENTRY = /^([A-Za-z0-9_*?-]+)(\(.*\))?$/s;

/** A skill's allowed-tools entries as agentd permission rules. */
export function allowedToolRules(entries: readonly string[]): string[] {
  return entries.map((entry) => {
    const match = ENTRY.exec(entry.trim());
    if (!match) return entry;
    const [, name, pattern = ""] = match;
    return `${TOOL_ALIASES[name!] ?? name}${pattern}`;
  });
}

/**
 * Why the first entry that is not a valid rule is not; null when all are. An entry must name its
 * tool: a glob such as `*` or `mcp__*` would let a skill allow every tool, or tools it never saw.
 */
export function invalidAllowedTool(entries: readonly string[]): string | null {
  for (const rule of allowedToolRules(entries)) {
    if (/^[^(]*[*?[\]{}]/.test(rule)) return `"${rule.slice(0, 80)}" must name a tool, not a glob of tool names`;
    try {
      compileRule(rule);
    } catch (error) {
      return (error as Error).message;
    }
  }
  return null;
}
