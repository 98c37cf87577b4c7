import { turnContext } from "../helpers/turn-context.js";
import { chmod, mkdir, mkdtemp, readdir, readFile, realpath, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createFileTools } from "../../src/tools/builtin/files.js";
import { ToolExecutor } from "../../src/tools/executor.js";
import { ToolRegistry } from "../../src/tools/registry.js";
import type { ToolContext } from "../../src/tools/types.js";

const { readFile: readFileTool, writeFile: writeFileTool, listDir: listDirTool } = createFileTools();
// Small caps so the cap tests need only a few files.
const capped = createFileTools({ maxReadBytes: 10, maxListEntries: 3, maxListDepth: 2 });

let base: string;
let workspace: string;
let ctx: ToolContext;

beforeEach(async () => {
  base = await realpath(await mkdtemp(path.join(tmpdir(), "agentd-files-")));
  workspace = path.join(base, "ws");
  await mkdir(workspace);
  ctx = { ...turnContext(), workspace };
});

afterEach(async () => {
  await rm(base, { recursive: true, force: true });
});

const put = async (relative: string, content: string | Buffer) => {
  await mkdir(path.dirname(path.join(workspace, relative)), { recursive: true });
  await writeFile(path.join(workspace, relative), content);
};

describe("read_file", () => {
  it("returns a small file as is", async () => {
    await put("a.txt", "one\ntwo\n");
    expect(await readFileTool.execute({ path: "a.txt" }, ctx)).toBe("one\ntwo\n");
  });

  it("pages by lines with offset and limit", async () => {
    await put("n.txt", "1\n2\n3\n4\n5\n");
    expect(await readFileTool.execute({ path: "n.txt", limit: 2 }, ctx)).toBe("1\n2\n[lines 1-2 of 5 shown; pass offset=3 to read more]");
    expect(await readFileTool.execute({ path: "n.txt", offset: 4 }, ctx)).toBe("4\n5\n[lines 4-5 of 5 shown]");
    await expect(readFileTool.execute({ path: "n.txt", offset: 9 }, ctx)).rejects.toThrow("offset 9 is past the end of n.txt, which has 5 lines");
  });

  it("says when a file is empty", async () => {
    await put("e.txt", "");
    expect(await readFileTool.execute({ path: "e.txt" }, ctx)).toBe("[e.txt is empty]");
  });

  it("refuses directories, missing, binary and oversized files with clear messages", async () => {
    await mkdir(path.join(workspace, "d"));
    await put("bin", Buffer.from([1, 0, 2]));
    await put("big.txt", "a".repeat(11));
    await expect(readFileTool.execute({ path: "d" }, ctx)).rejects.toThrow("d is a directory; use list_dir");
    await expect(readFileTool.execute({ path: "nope.txt" }, ctx)).rejects.toThrow("nope.txt does not exist");
    await expect(readFileTool.execute({ path: "bin" }, ctx)).rejects.toThrow(/binary/);
    await expect(capped.readFile.execute({ path: "big.txt" }, ctx)).rejects.toThrow("big.txt is 11 bytes, over read_file's limit of 10 bytes");
  });

  it("refuses paths outside the workspace", async () => {
    await writeFile(path.join(base, "secret.txt"), "s");
    await symlink(base, path.join(workspace, "up"));
    await expect(readFileTool.execute({ path: "../secret.txt" }, ctx)).rejects.toThrow(/outside the workspace/);
    await expect(readFileTool.execute({ path: "up/secret.txt" }, ctx)).rejects.toThrow(/outside the workspace/);
  });
});

describe("write_file", () => {
  it("creates parent directories and reports the bytes written", async () => {
    expect(await writeFileTool.execute({ path: "a/b.txt", content: "héllo world" }, ctx)).toBe("wrote 12 bytes to a/b.txt");
    expect(await readFile(path.join(workspace, "a", "b.txt"), "utf8")).toBe("héllo world");
  });

  it("overwrites atomically, keeps the mode and leaves no temp file", async () => {
    await put("run.sh", "old");
    await chmod(path.join(workspace, "run.sh"), 0o755);
    await writeFileTool.execute({ path: "run.sh", content: "new" }, ctx);
    expect(await readFile(path.join(workspace, "run.sh"), "utf8")).toBe("new");
    expect((await stat(path.join(workspace, "run.sh"))).mode & 0o777).toBe(0o755);
    expect(await readdir(workspace)).toEqual(["run.sh"]);
  });

  it("refuses to write outside the workspace, directly or through a symlink", async () => {
    await mkdir(path.join(base, "outside"));
    await symlink(path.join(base, "outside"), path.join(workspace, "out"));
    await expect(writeFileTool.execute({ path: "../x.txt", content: "x" }, ctx)).rejects.toThrow('path "../x.txt" is outside the workspace');
    await expect(writeFileTool.execute({ path: path.join(base, "x.txt"), content: "x" }, ctx)).rejects.toThrow(/outside the workspace/);
    await expect(writeFileTool.execute({ path: "out/x.txt", content: "x" }, ctx)).rejects.toThrow(/outside the workspace/);
    expect(await readdir(base)).toEqual(["outside", "ws"]);
    expect(await readdir(path.join(base, "outside"))).toEqual([]);
  });

  it("refuses to replace a directory", async () => {
    await mkdir(path.join(workspace, "d"));
    await expect(writeFileTool.execute({ path: "d", content: "x" }, ctx)).rejects.toThrow("d is a directory");
  });
});

describe("list_dir", () => {
  beforeEach(async () => {
    await put("b.txt", "");
    await put("a/z.txt", "");
    await put("a/deep/x.txt", "");
    await put("node_modules/pkg/index.js", "");
    await symlink(path.join(workspace, "b.txt"), path.join(workspace, "link"));
  });

  it("lists one level, sorted, directories with a slash and links with @", async () => {
    expect(await listDirTool.execute({}, ctx)).toBe(["a/", "b.txt", "link@", "node_modules/"].join("\n"));
    expect(await listDirTool.execute({ path: "a" }, ctx)).toBe(["deep/", "z.txt"].join("\n"));
  });

  it("lists recursively without entering node_modules", async () => {
    expect(await listDirTool.execute({ recursive: true }, ctx)).toBe(
      ["a/", "a/deep/", "a/deep/x.txt", "a/z.txt", "b.txt", "link@", "node_modules/"].join("\n"),
    );
  });

  it("stops at the entry cap with a note", async () => {
    expect(await capped.listDir.execute({ recursive: true }, ctx)).toBe(["a/", "a/deep/", "a/z.txt", "[listing stopped at 3 entries]"].join("\n"));
  });

  it("stops at the depth cap", async () => {
    const shallow = createFileTools({ maxListDepth: 2 }).listDir;
    expect(await shallow.execute({ recursive: true, path: "a" }, ctx)).toBe(["deep/", "deep/x.txt", "z.txt"].join("\n"));
    expect(await shallow.execute({ recursive: true }, ctx)).toBe(["a/", "a/deep/", "a/z.txt", "b.txt", "link@", "node_modules/"].join("\n"));
  });

  it("reports empty directories, files and escapes", async () => {
    await mkdir(path.join(workspace, "empty"));
    expect(await listDirTool.execute({ path: "empty" }, ctx)).toBe("[empty is empty]");
    await expect(listDirTool.execute({ path: "b.txt" }, ctx)).rejects.toThrow(/is not a directory/);
    await expect(listDirTool.execute({ path: ".." }, ctx)).rejects.toThrow(/outside the workspace/);
  });
});

describe("file tools through the executor", () => {
  it("turns a refused path into an error result the model reads", async () => {
    const executor = new ToolExecutor(ToolRegistry.withBuiltins());
    const exec = { ...ctx, timeoutMs: 1_000 };
    expect(await executor.execute({ name: "write_file", argumentsJson: '{"path":"../x","content":"x"}' }, exec)).toEqual({
      isError: true,
      output: 'path "../x" is outside the workspace',
    });
    expect(await executor.execute({ name: "read_file", argumentsJson: '{"path":3}' }, exec)).toEqual({
      isError: true,
      output: "invalid arguments for read_file: /path must be string",
    });
    expect(await executor.execute({ name: "write_file", argumentsJson: '{"path":"ok.txt","content":"hi"}' }, exec)).toEqual({
      isError: false,
      output: "wrote 2 bytes to ok.txt",
    });
  });
});
