import path from "node:path";
import picomatch from "picomatch";
import { invalidArgument } from "../errors.js";
import type { Decision, PermissionRules } from "./types.js";

const STRICTNESS: Record<Decision, number> = { allow: 0, ask: 1, deny: 2 };

/** A rule parsed once: a tool-name matcher and an optional argument matcher. */
interface CompiledRule {
  text: string;
  tool: (name: string) => boolean;
  /** `lenient` (deny and ask rules) also tries the command's canonical form: see canonicalCommand. */
  argument: ((call: PreparedInput, lenient: boolean) => boolean) | null;
}

/** A call with its path resolved once, not once per rule. */
interface PreparedInput extends RuleInput {
  /** The `path` argument relative to the workspace, with "/" separators; null without one. */
  relativePath: string | null;
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
  const tool = picomatch(name!, { dot: true });
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
function argumentMatcher(pattern: string): (call: PreparedInput, lenient: boolean) => boolean {
  const prefix = pattern.endsWith(":*") ? pattern.slice(0, -2).trim() : null;
  const glob = picomatch(pattern, { dot: true });
  const matches = (command: string) => (prefix === null ? command === pattern : command === prefix || command.startsWith(`${prefix} `));
  return ({ args, relativePath }, lenient) => {
    if (typeof args.command === "string") {
      const command = args.command.trim().replace(/\s+/g, " ");
      return matches(command) || (lenient && matches(canonicalCommand(command)));
    }
    return relativePath !== null && glob(relativePath);
  };
}

/** Wrappers that run the command after them, and so are looked through by deny and ask rules. */
const WRAPPERS = new Set(["command", "env", "exec", "sudo", "nohup", "time", "nice", "builtin"]);

/**
 * What a command runs, spelled plainly, for deny and ask rules: `FOO=1 \rm`, `'rm'`, `/bin/rm` and
 * `sudo rm` all become `rm`. Best effort: the shell has more ways to hide a command than any rule
 * can see, which is why what no rule allows still asks.
 */
function canonicalCommand(command: string): string {
  const words = command.split(" ");
  while (words.length > 0 && (/^[A-Za-z_][A-Za-z0-9_]*=/.test(words[0]!) || WRAPPERS.has(words[0]!.replace(/^.*\//, "")))) words.shift();
  if (words.length === 0) return command;
  words[0] = words[0]!.replace(/["'\\]/g, "").replace(/^.*\//, "");
  return words.join(" ");
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

  /**
   * Deny wins, then ask, then allow; then the default. `rule` is the rule that matched, if any. A
   * shell line is judged command by command ("npm test && rm -rf ~" is not "npm test"), the strictest
   * answer winning; a line whose text cannot be judged (substitutions, redirections) is allowed by
   * no pattern rule, though deny rules still see it.
   */
  decide(input: RuleInput): { decision: Decision; rule: string | null } {
    const { workspace, args } = input;
    const relativePath =
      typeof args.path === "string" ? path.relative(workspace, path.resolve(workspace, args.path)).split(path.sep).join("/") || "." : null;
    const call: PreparedInput = { ...input, relativePath };
    if (typeof args.command !== "string") return this.decideOne(call, false);
    const { commands, opaque } = commandChain(args.command);
    const parts = (commands.length > 0 ? commands : [args.command]).map((command) =>
      this.decideOne({ ...call, args: { ...args, command } }, opaque),
    );
    return parts.reduce((worst, part) => (STRICTNESS[part.decision] > STRICTNESS[worst.decision] ? part : worst));
  }

  /** `opaque`: the line held what its text cannot tell (substitutions, redirections): no allow pattern matches it. */
  private decideOne(call: PreparedInput, opaque: boolean): { decision: Decision; rule: string | null } {
    for (const [decision, list] of [["deny", this.deny], ["ask", this.ask], ["allow", this.allow]] as const) {
      const lenient = decision !== "allow";
      const hit = list.find(
        (rule) => rule.tool(call.name) && (rule.argument === null || ((lenient || !opaque) && rule.argument(call, lenient))),
      );
      if (hit) return { decision, rule: hit.text };
    }
    return { decision: this.rules.defaultDecision, rule: null };
  }
}

/**
 * The commands of a shell line, split at `;`, `&&`, `||`, `|`, `&`, newlines, and the openings of
 * subshells, groups and substitutions. `opaque` when the line holds what its text cannot tell
 * (substitutions, redirections): then no allow pattern matches any part, though deny and ask do.
 */
function commandChain(line: string): { commands: string[]; opaque: boolean } {
  const opaque = /`|\$\(|[<>]/.test(line);
  const commands = line
    .split(/&&|\|\||\$\(|[;|&\n`(){}]/)
    .map((part) => part.trim())
    .filter((part) => part !== "");
  return { commands, opaque };
}

/** Commands that run whatever they are given: "always" for one of them remembers only that exact line. */
const INTERPRETERS = new Set(["bash", "sh", "zsh", "dash", "fish", "python", "python3", "node", "perl", "ruby", "php", "eval", "xargs", "sudo", "env", "exec", "ssh"]);

/**
 * The rule that "always" (or "never") adds for a call: the tool, or for a command its first words;
 * for an interpreter, the exact line; "" for a line of several commands or one the rules cannot
 * read, which is then answered once and asked again next time.
 */
export function rememberedRule(name: string, args: Record<string, unknown>): string {
  if (typeof args.command !== "string") return name;
  const line = args.command.trim().replace(/\s+/g, " ");
  const { commands, opaque } = commandChain(line);
  const words = line.split(" ");
  if (opaque || commands.length !== 1) return "";
  if (INTERPRETERS.has(words[0]!.replace(/^.*\//, ""))) return `${name}(${line})`;
  const second = words[1];
  const prefix = second !== undefined && /^[A-Za-z][\w.-]*$/.test(second) ? `${words[0]} ${second}` : words[0]!;
  return `${name}(${prefix.replace(/[()]/g, "")}:*)`;
}
