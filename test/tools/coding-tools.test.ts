import { chmod, mkdir, readdir, readFile, realpath, stat, symlink, utimes, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { codingTools, createBashTool, createEditTool, createGlobTool, createGrepTool } from "../../src/tools/builtin/index.js";
import { builtinFileTools } from "../../src/tools/builtin/files.js";
import { ToolRegistry } from "../../src/tools/registry.js";
import type { ToolContext } from "../../src/tools/types.js";
import { makeTempDir, removeTempDirs, waitFor } from "../helpers/harness.js";
import { turnContext } from "../helpers/turn-context.js";

const edit = createEditTool();
const glob = createGlobTool();
const grep = createGrepTool();
const bash = createBashTool();

let base: string;
let workspace: string;
let ctx: ToolContext;

beforeEach(async () => {
  base = await realpath(await makeTempDir("agentd-coding-"));
  workspace = path.join(base, "ws");
  await mkdir(workspace);
  await mkdir(path.join(base, "outside"));
  await writeFile(path.join(base, "outside", "secret.ts"), "const secret = 'TOPSECRET';\n");
  ctx = { ...turnContext(), workspace };
});

afterAll(removeTempDirs);

const put = async (relative: string, content: string | Buffer) => {
  await mkdir(path.dirname(path.join(workspace, relative)), { recursive: true });
  await writeFile(path.join(workspace, relative), content);
};
const text = (relative: string) => readFile(path.join(workspace, relative), "utf8");
const withSignal = (signal: AbortSignal): ToolContext => ({ ...turnContext(signal), workspace });

describe("the tool set", () => {
  it("exports edit_file, glob, grep and bash, marked read-only or not, with valid schemas", () => {
    const tools = codingTools({ grep: { maxMatches: 5 } });
    expect(tools.map((tool) => [tool.name, tool.readOnly])).toEqual([
      ["edit_file", false],
      ["glob", true],
      ["grep", true],
      ["bash", false],
    ]);
    expect(builtinFileTools().map((tool) => [tool.name, tool.readOnly])).toEqual([
      ["read_file", true],
      ["write_file", false],
      ["list_dir", true],
    ]);
    // Registering compiles every schema (strict Ajv): a broken one throws here.
    const registry = new ToolRegistry([...builtinFileTools(), ...tools]);
    for (const tool of tools) expect(tool.inputSchema.additionalProperties).toBe(false);
    expect(registry.validate("edit_file", { path: "a", old_string: "x", new_string: "y", extra: 1 })).toEqual([
      'arguments must NOT have additional properties (unexpected property "extra")',
    ]);
  });
});

describe("edit_file", () => {
  it("replaces a unique string, literally, and says where", async () => {
    await put("a.txt", "one\nfoo\nthree\n");
    expect(await edit.execute({ path: "a.txt", old_string: "foo\n", new_string: "$& two\nlines\n" }, ctx)).toBe(
      "edited a.txt: replaced 1 occurrence; the new text is at lines 2-3",
    );
    expect(await text("a.txt")).toBe("one\n$& two\nlines\nthree\n");
  });

  it("refuses an ambiguous, missing or no-op replacement", async () => {
    await put("a.txt", "foo\nbar\nfoo\n");
    await expect(edit.execute({ path: "a.txt", old_string: "foo", new_string: "x" }, ctx)).rejects.toThrow(
      "old_string occurs 2 times in a.txt; add surrounding context to make it unique, or set replace_all to true",
    );
    await expect(edit.execute({ path: "a.txt", old_string: "baz", new_string: "x" }, ctx)).rejects.toThrow(
      "old_string does not occur in a.txt; read the file again",
    );
    await expect(edit.execute({ path: "a.txt", old_string: "bar", new_string: "bar" }, ctx)).rejects.toThrow(/identical/);
    await expect(edit.execute({ path: "nope.txt", old_string: "a", new_string: "b" }, ctx)).rejects.toThrow(
      "nope.txt does not exist; to create it, pass an empty old_string",
    );
    expect(await text("a.txt")).toBe("foo\nbar\nfoo\n");
  });

  it("replaces every occurrence with replace_all", async () => {
    await put("a.txt", "foo\nbar\nfoo\nfoo\n");
    expect(await edit.execute({ path: "a.txt", old_string: "foo", new_string: "baz", replace_all: true }, ctx)).toBe(
      "edited a.txt: replaced 3 occurrences; the new text starts at lines 1, 3, 4",
    );
    expect(await text("a.txt")).toBe("baz\nbar\nbaz\nbaz\n");
    expect(await edit.execute({ path: "a.txt", old_string: "baz\n", new_string: "", replace_all: true }, ctx)).toBe(
      "edited a.txt: deleted 3 occurrences, at lines 1, 2, 2",
    );
    expect(await text("a.txt")).toBe("bar\n");
  });

  it("creates a file (and its directories) from an empty old_string, but never overwrites one that way", async () => {
    expect(await edit.execute({ path: "new/dir/b.ts", old_string: "", new_string: "x\ny\n" }, ctx)).toBe("created new/dir/b.ts (2 lines)");
    expect(await text("new/dir/b.ts")).toBe("x\ny\n");
    await expect(edit.execute({ path: "new/dir/b.ts", old_string: "", new_string: "z" }, ctx)).rejects.toThrow(
      /already exists and is not empty/,
    );
  });

  it("keeps the mode, writes atomically (no temp file left) and matches CRLF files", async () => {
    await put("run.sh", "echo hi\r\necho there\r\n");
    await chmod(path.join(workspace, "run.sh"), 0o755);
    await edit.execute({ path: "run.sh", old_string: "hi\necho", new_string: "hello\necho" }, ctx);
    expect(await text("run.sh")).toBe("echo hello\r\necho there\r\n");
    expect((await stat(path.join(workspace, "run.sh"))).mode & 0o777).toBe(0o755);
    expect(await readdir(workspace)).toEqual(["run.sh"]);
  });

  it("refuses paths outside the workspace: ../, absolute, and through symlinks", async () => {
    await symlink(path.join(base, "outside"), path.join(workspace, "out"));
    await symlink(path.join(base, "outside", "secret.ts"), path.join(workspace, "secret-link.ts"));
    const attempts = [
      { path: "../x.ts", old_string: "", new_string: "x" },
      { path: "../outside/secret.ts", old_string: "TOPSECRET", new_string: "x" },
      { path: path.join(base, "outside", "secret.ts"), old_string: "TOPSECRET", new_string: "x" },
      { path: "out/secret.ts", old_string: "TOPSECRET", new_string: "x" },
      { path: "out/new.ts", old_string: "", new_string: "x" },
      { path: "secret-link.ts", old_string: "TOPSECRET", new_string: "x" },
    ];
    for (const args of attempts) await expect(edit.execute(args, ctx)).rejects.toThrow(/outside the workspace/);
    expect(await readdir(base)).toEqual(["outside", "ws"]);
    expect(await readdir(path.join(base, "outside"))).toEqual(["secret.ts"]);
    expect(await readFile(path.join(base, "outside", "secret.ts"), "utf8")).toContain("TOPSECRET");
  });
});

describe("glob", () => {
  beforeEach(async () => {
    await put(".gitignore", "dist/\n*.log\n!keep.log\n");
    await put("src/.gitignore", "generated.ts\n");
    for (const file of ["src/a.ts", "src/b.ts", "src/sub/c.ts", "src/generated.ts", "dist/x.ts", "node_modules/p/i.ts", ".git/hooks/h.ts"]) {
      await put(file, "");
    }
    await put("debug.log", "");
    await put("keep.log", "");
    await symlink(path.join(base, "outside"), path.join(workspace, "ext"));
    await symlink(path.join(base, "outside", "secret.ts"), path.join(workspace, "leak.ts"));
    await symlink(path.join(workspace, "src", "a.ts"), path.join(workspace, "alias.ts"));
  });

  it("honours .gitignore files (nested, negated), skips .git and node_modules, follows no symlink out", async () => {
    expect(await glob.execute({ pattern: "**/*.ts", sort: "path" }, ctx)).toBe(["alias.ts", "src/a.ts", "src/b.ts", "src/sub/c.ts"].join("\n"));
    expect(await glob.execute({ pattern: "*.log", sort: "path" }, ctx)).toBe("keep.log");
    // The symlinked directory is not entered, even when the pattern names it.
    expect(await glob.execute({ pattern: "ext/**", sort: "path" }, ctx)).toBe('no files match "ext/**" in .');
  });

  it("sorts by modification time, newest first, by default", async () => {
    const at = (relative: string, seconds: number) => utimes(path.join(workspace, relative), seconds, seconds);
    await at("src/a.ts", 1_000);
    await at("src/b.ts", 3_000);
    await at("src/sub/c.ts", 2_000);
    expect(await glob.execute({ pattern: "**/*.ts", path: "src" }, ctx)).toBe(["src/b.ts", "src/sub/c.ts", "src/a.ts"].join("\n"));
    expect(await glob.execute({ pattern: "*.ts", path: "src", sort: "path" }, ctx)).toBe(["src/a.ts", "src/b.ts"].join("\n"));
  });

  it("looks inside an ignored directory named in the pattern or path", async () => {
    expect(await glob.execute({ pattern: "dist/*.ts" }, ctx)).toBe("dist/x.ts");
    expect(await glob.execute({ pattern: "*.ts", path: "node_modules/p" }, ctx)).toBe("node_modules/p/i.ts");
  });

  it("caps the results with a note", async () => {
    const capped = createGlobTool({ maxResults: 2 });
    expect(await capped.execute({ pattern: "**/*.ts", sort: "path" }, ctx)).toBe(
      ["alias.ts", "src/a.ts", "[2 more files matched but are not shown (2 of 4); narrow the pattern or `path`]"].join("\n"),
    );
  });

  it("refuses to leave the workspace", async () => {
    await expect(glob.execute({ pattern: "*", path: ".." }, ctx)).rejects.toThrow(/outside the workspace/);
    await expect(glob.execute({ pattern: "*", path: "ext" }, ctx)).rejects.toThrow(/outside the workspace/);
    await expect(glob.execute({ pattern: "../outside/*" }, ctx)).rejects.toThrow(/must be relative/);
  });
});

describe("grep", () => {
  beforeEach(async () => {
    await put(".gitignore", "ignored/\n");
    await put("src/a.ts", "import x from 'y';\nfunction alpha() {}\nconst beta = 1;\nfunction gamma() {}\n");
    await put("src/b.md", "# Alpha notes\nnothing here\n");
    await put("ignored/c.ts", "function hidden() {}\n");
    await put("node_modules/p/index.js", "function dep() {}\n");
    await put("data.bin", Buffer.concat([Buffer.from("function binary() {}\n"), Buffer.from([0, 1, 2])]));
    await symlink(path.join(base, "outside"), path.join(workspace, "ext"));
  });

  it("prints path:line: text, skipping binary, ignored, node_modules and out-of-workspace files", async () => {
    expect(await grep.execute({ pattern: "function \\w+" }, ctx)).toBe(["src/a.ts:2: function alpha() {}", "src/a.ts:4: function gamma() {}"].join("\n"));
    expect(await grep.execute({ pattern: "TOPSECRET" }, ctx)).toBe("no matches for /TOPSECRET/ in . (1 binary file(s) skipped)");
    expect(await grep.execute({ pattern: "binary" }, ctx)).toBe("no matches for /binary/ in . (1 binary file(s) skipped)");
  });

  it("filters by glob, ignores case, and searches one file or directory", async () => {
    expect(await grep.execute({ pattern: "alpha", case_insensitive: true, glob: "*.md" }, ctx)).toBe("src/b.md:1: # Alpha notes");
    expect(await grep.execute({ pattern: "alpha", case_insensitive: true, path: "src/a.ts" }, ctx)).toBe("src/a.ts:2: function alpha() {}");
    expect(await grep.execute({ pattern: "hidden", path: "ignored" }, ctx)).toBe("ignored/c.ts:1: function hidden() {}");
    await expect(grep.execute({ pattern: "x", path: "ext" }, ctx)).rejects.toThrow(/outside the workspace/);
  });

  it("shows context lines and separates groups", async () => {
    await put("c.txt", ["1", "match a", "3", "4", "5", "6", "match b", "8"].join("\n"));
    expect(await grep.execute({ pattern: "^match", context: 1, path: "c.txt" }, ctx)).toBe(
      ["c.txt-1- 1", "c.txt:2: match a", "c.txt-3- 3", "--", "c.txt-6- 6", "c.txt:7: match b", "c.txt-8- 8"].join("\n"),
    );
  });

  it("caps matches and bytes with a note", async () => {
    await put("many.txt", Array.from({ length: 50 }, (_, i) => `hit ${i}`).join("\n"));
    const few = createGrepTool({ maxMatches: 3 });
    expect(await few.execute({ pattern: "hit", path: "many.txt" }, ctx)).toBe(
      ["many.txt:1: hit 0", "many.txt:2: hit 1", "many.txt:3: hit 2", "[stopped at 3 matches; there may be more: narrow the pattern, `path` or `glob`]"].join("\n"),
    );
    const small = createGrepTool({ maxOutputBytes: 40 });
    expect(await small.execute({ pattern: "hit", path: "many.txt" }, ctx)).toBe(
      ["many.txt:1: hit 0", "many.txt:2: hit 1", "[output cut at 40 bytes; narrow the pattern, `path` or `glob`]"].join("\n"),
    );
  });

  it("skips files over the size limit, with a note", async () => {
    await put("big.txt", "needle\n".repeat(10));
    await put("small.txt", "needle\n");
    const tight = createGrepTool({ maxFileBytes: 20 });
    expect(await tight.execute({ pattern: "needle", glob: "*.txt" }, ctx)).toBe(["small.txt:1: needle", "[1 file(s) over 20 bytes were not searched]"].join("\n"));
    await expect(tight.execute({ pattern: "needle", path: "big.txt" }, ctx)).rejects.toThrow("big.txt is 70 bytes, over grep's limit of 20 bytes");
  });

  it("reports an invalid regex clearly", async () => {
    await expect(grep.execute({ pattern: "foo(" }, ctx)).rejects.toThrow(/^invalid regular expression "foo\(": .*Unterminated group/);
  });

  it("stops a catastrophically backtracking regex at the time limit without blocking the server", async () => {
    await put("evil.txt", `${"a".repeat(5_000)}\n${"a".repeat(40)}b\n`);
    const quick = createGrepTool({ timeLimitMs: 300 });
    const started = Date.now();
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 20);
    const output = await quick.execute({ pattern: "(a+)+$", path: "evil.txt" }, ctx);
    clearInterval(ticker);
    expect(output).toContain("evil.txt:1: aaaa");
    expect(output).toContain("[the search was stopped after its time limit of 0.3 s");
    expect(Date.now() - started).toBeLessThan(2_000);
    // The event loop kept running while the regex spun.
    expect(ticks).toBeGreaterThan(5);
  });

  it("stops when the turn is cancelled", async () => {
    await put("evil.txt", `${"a".repeat(40)}b\n`);
    const controller = new AbortController();
    const running = grep.execute({ pattern: "(a+)+$", path: "evil.txt" }, withSignal(controller.signal));
    setTimeout(() => controller.abort(new Error("turn cancelled")), 100);
    const started = Date.now();
    await expect(running).rejects.toThrow("turn cancelled");
    expect(Date.now() - started).toBeLessThan(1_000);
  });
});

describe("bash", () => {
  it("runs in the workspace and reports the exit code", async () => {
    await put("hello.txt", "hi");
    expect(await bash.execute({ command: "pwd; cat hello.txt; echo" }, ctx)).toBe(`${workspace}\nhi\n[exit code 0]`);
    expect(await bash.execute({ command: "true" }, ctx)).toBe("[no output]\n[exit code 0]");
  });

  it("merges stderr and returns a failing exit code as a normal result", async () => {
    const output = String(await bash.execute({ command: "echo out; echo err >&2; exit 3" }, ctx));
    expect(output).toContain("out");
    expect(output).toContain("err");
    expect(output.endsWith("\n[exit code 3]")).toBe(true);
  });

  it("keeps the head and tail of long output", async () => {
    const small = createBashTool({ maxOutputBytes: 100 });
    const output = String(await small.execute({ command: "seq 1 10000" }, ctx));
    const total = Array.from({ length: 10_000 }, (_, i) => `${i + 1}\n`).join("").length;
    expect(output.startsWith("1\n2\n3\n")).toBe(true);
    expect(output).toContain(`[... ${total - 100} bytes of output omitted in the middle (${total} in all) ...]`);
    expect(output.endsWith("9999\n10000\n[exit code 0]")).toBe(true);
  });

  it("passes only an allow-listed environment: no API keys", async () => {
    const saved = process.env.OPENAI_API_KEY;
    process.env.OPENAI_API_KEY = "sk-test-must-not-leak";
    process.env.AGENTD_TEST_VAR = "visible";
    try {
      const output = await bash.execute({ command: "env" }, ctx);
      expect(output).not.toContain("sk-test-must-not-leak");
      expect(output).not.toContain("OPENAI_API_KEY");
      expect(output).toContain(`HOME=${workspace}`);
      expect(output).toContain("TERM=dumb");
      expect(output).not.toContain("AGENTD_TEST_VAR");
      // Even an operator's pass list cannot let a secret-looking name through.
      const passing = createBashTool({ passEnv: ["AGENTD_TEST_VAR", "OPENAI_API_KEY"] });
      const passed = await passing.execute({ command: "env" }, ctx);
      expect(passed).toContain("AGENTD_TEST_VAR=visible");
      expect(passed).not.toContain("sk-test-must-not-leak");
    } finally {
      if (saved === undefined) delete process.env.OPENAI_API_KEY;
      else process.env.OPENAI_API_KEY = saved;
      delete process.env.AGENTD_TEST_VAR;
    }
  });

  it("times out, escalating to SIGKILL for a command that ignores SIGTERM", async () => {
    const started = Date.now();
    expect(await bash.execute({ command: "echo begun; sleep 5", timeout_ms: 200 }, ctx)).toBe(
      "begun\n[timed out after 200 ms: the command and the processes it started were killed]",
    );
    const stubborn = createBashTool({ killGraceMs: 200 });
    const output = await stubborn.execute({ command: "trap '' TERM; echo $$ > shell.pid; sleep 5", timeout_ms: 200 }, ctx);
    expect(output).toContain("[timed out after 200 ms");
    expect(alive(Number(await text("shell.pid")))).toBe(false);
    expect(Date.now() - started).toBeLessThan(3_000);
  });

  it("kills the whole process group, grandchildren included, when the turn is cancelled", async () => {
    const controller = new AbortController();
    const running = bash.execute({ command: "sleep 30 & echo $! > child.pid; wait" }, withSignal(controller.signal));
    const pid = await waitFor(() => {
      try {
        const found = readFileSync(path.join(workspace, "child.pid"), "utf8").trim();
        return found === "" ? undefined : Number(found);
      } catch {
        return undefined;
      }
    });
    expect(alive(pid)).toBe(true);
    controller.abort(new Error("turn cancelled"));
    await expect(running).rejects.toMatchObject({ name: "AbortError" });
    expect(alive(pid)).toBe(false);
  });

  it("stops background processes left behind when the command ends", async () => {
    const output = await bash.execute({ command: "sleep 30 & echo $! > bg.pid; echo started" }, ctx);
    expect(output).toBe("started\n[exit code 0]\n[processes it left running in the background were stopped]");
    expect(alive(Number(await text("bg.pid")))).toBe(false);
  });
});

/** Whether a process runs; a zombie (dead, not yet reaped by its new parent) counts as gone. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const state = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.[0];
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}
