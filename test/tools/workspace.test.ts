import { mkdir, mkdtemp, realpath, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { resolveInWorkspace, workspaceRelative } from "../../src/tools/workspace.js";
import { isInside, isWithin } from "../../src/util/paths.js";

let base: string;
let workspace: string;
let outside: string;

beforeEach(async () => {
  base = await realpath(await mkdtemp(path.join(tmpdir(), "agentd-ws-")));
  workspace = path.join(base, "ws");
  outside = path.join(base, "outside");
  await mkdir(path.join(workspace, "sub"), { recursive: true });
  await mkdir(outside);
  await writeFile(path.join(workspace, "sub", "a.txt"), "a");
  await writeFile(path.join(outside, "secret.txt"), "s");
});

afterEach(async () => {
  await rm(base, { recursive: true, force: true });
});

describe("resolveInWorkspace", () => {
  it("resolves paths inside the workspace, existing or not", async () => {
    expect(await resolveInWorkspace(workspace, "sub/a.txt")).toBe(path.join(workspace, "sub", "a.txt"));
    expect(await resolveInWorkspace(workspace, "sub/../sub/./a.txt")).toBe(path.join(workspace, "sub", "a.txt"));
    expect(await resolveInWorkspace(workspace, "new/dir/file.txt")).toBe(path.join(workspace, "new", "dir", "file.txt"));
    expect(await resolveInWorkspace(workspace, "..foo")).toBe(path.join(workspace, "..foo"));
  });

  it("treats an empty path and '.' as the workspace root", async () => {
    expect(await resolveInWorkspace(workspace, "")).toBe(workspace);
    expect(await resolveInWorkspace(workspace, ".")).toBe(workspace);
  });

  it("accepts absolute paths inside the workspace", async () => {
    expect(await resolveInWorkspace(workspace, path.join(workspace, "sub", "a.txt"))).toBe(path.join(workspace, "sub", "a.txt"));
  });

  it("refuses .. escapes", async () => {
    await expect(resolveInWorkspace(workspace, "../x")).rejects.toThrow('path "../x" is outside the workspace');
    await expect(resolveInWorkspace(workspace, "sub/../../outside/secret.txt")).rejects.toThrow(/is outside the workspace/);
    await expect(resolveInWorkspace(workspace, "..")).rejects.toThrow(/is outside the workspace/);
  });

  it("refuses absolute paths outside the workspace", async () => {
    await expect(resolveInWorkspace(workspace, "/etc/passwd")).rejects.toThrow('path "/etc/passwd" is outside the workspace');
    // A sibling sharing the workspace's name as a prefix is still outside.
    await expect(resolveInWorkspace(workspace, `${workspace}-other/x`)).rejects.toThrow(/is outside the workspace/);
  });

  it("refuses symlinks that escape, including for files not created yet", async () => {
    await symlink(outside, path.join(workspace, "escape"));
    await symlink(path.join(outside, "secret.txt"), path.join(workspace, "secret-link"));
    await expect(resolveInWorkspace(workspace, "escape/secret.txt")).rejects.toThrow(/is outside the workspace/);
    await expect(resolveInWorkspace(workspace, "escape/new/file.txt")).rejects.toThrow(/is outside the workspace/);
    await expect(resolveInWorkspace(workspace, "secret-link")).rejects.toThrow(/is outside the workspace/);
  });

  it("refuses dangling symlinks, which a write would follow", async () => {
    await symlink(path.join(outside, "missing"), path.join(workspace, "dangling"));
    await expect(resolveInWorkspace(workspace, "dangling")).rejects.toThrow(/symbolic link to a missing target/);
    await expect(resolveInWorkspace(workspace, "dangling/x.txt")).rejects.toThrow(/symbolic link to a missing target/);
  });

  it("follows symlinks that stay inside", async () => {
    await symlink(path.join(workspace, "sub"), path.join(workspace, "alias"));
    expect(await resolveInWorkspace(workspace, "alias/a.txt")).toBe(path.join(workspace, "sub", "a.txt"));
  });

  it("works when the workspace itself is reached through a symlink", async () => {
    const link = path.join(base, "ws-link");
    await symlink(workspace, link);
    expect(await resolveInWorkspace(link, "sub/a.txt")).toBe(path.join(workspace, "sub", "a.txt"));
    expect(await workspaceRelative(link, path.join(workspace, "sub", "a.txt"))).toBe(path.join("sub", "a.txt"));
  });

  it("says so when the workspace does not exist", async () => {
    await expect(resolveInWorkspace(path.join(base, "gone"), "x")).rejects.toThrow(/does not exist/);
  });
});

describe("isWithin and isInside", () => {
  it("compare whole path segments; isInside excludes the root itself", () => {
    expect(isWithin("/a/b", "/a/b")).toBe(true);
    expect(isWithin("/a/b/c", "/a/b")).toBe(true);
    expect(isWithin("/a/bc", "/a/b")).toBe(false);
    expect(isWithin("/a", "/a/b")).toBe(false);
    expect(isWithin("/a/b/..c", "/a/b")).toBe(true);
    expect(isInside("/a/b", "/a/b")).toBe(false);
    expect(isInside("/a/b/c", "/a/b")).toBe(true);
    expect(isInside("/a/bc", "/a/b")).toBe(false);
  });
});
