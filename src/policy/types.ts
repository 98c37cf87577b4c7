/** What a permission rule decides for a tool call. */
export type Decision = "allow" | "ask" | "deny";

/**
 * A session's permission rules, checked deny first, then ask, then allow; a call no rule matches
 * gets `defaultDecision`. A rule is a tool name (a glob: `mcp__github__*`) with an optional
 * argument pattern: `write_file(src/**)` matches the path, resolved inside the workspace;
 * `bash(npm test:*)` matches a command prefix, `bash(git status)` one exact command.
 */
export interface PermissionRules {
  deny: string[];
  ask: string[];
  allow: string[];
  defaultDecision: Decision;
}

/** How ASK is carried out. */
export interface ConfirmationSettings {
  /** When false, ASK behaves as ALLOW: nobody is asked. */
  enabled: boolean;
  /** How long a confirmation waits; 0 waits for ever. */
  timeoutMs: number;
  /** What a confirmation that times out becomes. */
  timeoutAction: "reject" | "approve";
}

/**
 * What users expect out of the box: reading is free, everything else (writing, running commands,
 * unknown tools) asks, through the default decision. Asking is not an explicit rule, so that an
 * "always" answer (an allow rule) does take effect: an ask rule would beat it.
 */
export const DEFAULT_PERMISSIONS: PermissionRules = {
  deny: [],
  ask: [],
  // skill only reads instructions; task hands work to a subagent whose own calls pass its own gate.
  allow: ["read_file", "list_dir", "glob", "grep", "skill", "task"],
  defaultDecision: "ask",
};

export const DEFAULT_CONFIRMATION: ConfirmationSettings = { enabled: true, timeoutMs: 30_000, timeoutAction: "reject" };
