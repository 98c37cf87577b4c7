import path from "node:path";
import picomatch from "picomatch";
import { invalidArgument } from "../errors.js";
import type { Decision, PermissionRules } from "./types.js";

/** A rule parsed once: a tool-name matcher and an optional argument matcher. */
interface CompiledRule {
  text: string;
  tool: (name: string) => boolean;
  argument: ((call: RuleInput) => boolean) | null;
}

/** What a rule is matched against: the call, and where relative paths are resolved. */
export interface RuleInput {
  name: string;
  args: Record<string, unknown>;
  workspace: string;
}

const RULE = /^([A-Za-z0-9_*?-]+)(?:\((.*)\))?$/s;
const MAX_RULE_CHARS = 512;
const MAX_RULES = 1000;

/** Parses a rule, throwing INVALID_ARGUMENT that names the rule and what is wrong with it. */
export function compileRule(text: string): CompiledRule {
  const where = `permission rule "${text.length > 80 ? `${text.slice(0, 80)}…` : text}"`;
  if (text.length === 0 || text.length > MAX_RULE_CHARS) throw invalidArgument(`${where} must be 1 to ${MAX_RULE_CHARS} characters`);
  const match = RULE.exec(text.trim());
  if (!match) {
    throw invalidArgument(`${where} is not of the form tool_name or tool_name(pattern), such as write_file(src/**) or bash(npm test:*)`);
  }
  const [, name, pattern] = match;
  const tool = picomatch(name!, { nocase: false });
  if (pattern === undefined) return { text, tool, argument: null };
  if (pattern.trim() === "") throw invalidArgument(`${where} has an empty pattern; leave out the parentheses to match every call`);
  return { text, tool, argument: argumentMatcher(pattern.trim()) };
}

/**
 * A pattern is a command (for tools with a `command` argument: `npm test:*` is a prefix, anything
 * else the exact command) or a path glob (for tools with a `path` argument, matched against the
 * path resolved inside the workspace, so `./src/../src/a.ts` is `src/a.ts`). A call with neither
 * argument never matches a rule with a pattern.
 */
function argumentMatcher(pattern: string): (call: RuleInput) => boolean {
  const prefix = pattern.endsWith(":*") ? pattern.slice(0, -2).trim() : null;
  const glob = picomatch(pattern, { dot: true });
  return ({ args, workspace }) => {
    if (typeof args.command === "string") {
      const command = args.command.trim();
      return prefix === null ? command === pattern : command === prefix || command.startsWith(`${prefix} `);
    }
    if (typeof args.path === "string") {
      const relative = path.relative(workspace, path.resolve(workspace, args.path)).split(path.sep).join("/") || ".";
      return glob(relative);
    }
    return false;
  };
}

/** A session's rules, compiled: what decide() runs. Invalid rules fail here, when they are set. */
export class RuleSet {
  private readonly deny: CompiledRule[];
  private readonly ask: CompiledRule[];
  private readonly allow: CompiledRule[];

  constructor(readonly rules: PermissionRules) {
    const count = rules.deny.length + rules.ask.length + rules.allow.length;
    if (count > MAX_RULES) throw invalidArgument(`at most ${MAX_RULES} permission rules are allowed, got ${count}`);
    this.deny = rules.deny.map(compileRule);
    this.ask = rules.ask.map(compileRule);
    this.allow = rules.allow.map(compileRule);
  }

  /** Deny wins, then ask, then allow; then the default. `rule` is the rule that matched, if any. */
  decide(call: RuleInput): { decision: Decision; rule: string | null } {
    for (const [decision, list] of [["deny", this.deny], ["ask", this.ask], ["allow", this.allow]] as const) {
      const hit = list.find((rule) => rule.tool(call.name) && (rule.argument === null || rule.argument(call)));
      if (hit) return { decision, rule: hit.text };
    }
    return { decision: this.rules.defaultDecision, rule: null };
  }
}

/** The rule that "always" (or "never") adds for a call: the tool, or for a command its first words. */
export function rememberedRule(name: string, args: Record<string, unknown>): string {
  if (typeof args.command !== "string") return name;
  const words = args.command.trim().split(/\s+/);
  const second = words[1];
  const prefix = second !== undefined && /^[A-Za-z][\w.-]*$/.test(second) ? `${words[0]} ${second}` : words[0]!;
  return `${name}(${prefix.replace(/[()]/g, "")}:*)`;
}
