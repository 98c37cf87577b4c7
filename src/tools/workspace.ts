import { lstat, realpath } from "node:fs/promises";
import path from "node:path";

/** True when `candidate` is `root` itself or lies below it (both absolute and normalised). */
export function isInside(root: string, candidate: string): boolean {
  const relative = path.relative(root, candidate);
  return relative === "" || (relative !== ".." && !relative.startsWith(`..${path.sep}`) && !path.isAbsolute(relative));
}

function errorCode(error: unknown): string | undefined {
  return error instanceof Error && "code" in error && typeof error.code === "string" ? error.code : undefined;
}

/**
 * The real path of `target`: symlinks resolved for the part that exists, the missing tail (a file
 * about to be written, say) appended as is. That tail cannot contain symlinks because it does not exist.
 */
async function realPathOfDeepestAncestor(target: string, requested: string): Promise<string> {
  const missing: string[] = [];
  let current = target;
  for (;;) {
    try {
      return path.join(await realpath(current), ...missing);
    } catch (error) {
      const code = errorCode(error);
      // ENOENT: not there yet; ENOTDIR: a parent is a file, so the fs call itself will fail later.
      if (code !== "ENOENT" && code !== "ENOTDIR") {
        if (code === "ELOOP") throw new Error(`path "${requested}" goes through a symbolic link loop`);
        throw error;
      }
    }
    // realpath fails on a dangling symlink too, which would then pass for a missing directory and
    // let a write follow it anywhere; following it by hand is not worth the risk, so refuse.
    if (await isSymlink(current)) {
      throw new Error(`path "${requested}" goes through a symbolic link to a missing target`);
    }
    const parent = path.dirname(current);
    if (parent === current) return path.join(current, ...missing);
    missing.unshift(path.basename(current));
    current = parent;
  }
}

async function isSymlink(file: string): Promise<boolean> {
  try {
    return (await lstat(file)).isSymbolicLink();
  } catch {
    return false;
  }
}

async function realWorkspace(workspace: string): Promise<string> {
  try {
    return await realpath(path.resolve(workspace));
  } catch (error) {
    if (errorCode(error) === "ENOENT") throw new Error(`the workspace directory "${workspace}" does not exist`);
    throw error;
  }
}

/**
 * Resolves a path a model asked for (relative to the workspace, or absolute) to the real absolute
 * path it designates, refusing anything outside the workspace: `..` escapes, absolute paths
 * elsewhere, and symlinks inside the workspace that point out of it. An empty path is the root.
 */
export async function resolveInWorkspace(workspace: string, requested: string): Promise<string> {
  const root = path.resolve(workspace);
  const target = path.resolve(root, requested === "" ? "." : requested);
  const outside = () => new Error(`path "${requested}" is outside the workspace`);
  // Cheap lexical check first so the common escapes fail without touching the disk.
  if (!isInside(root, target)) throw outside();
  const realRoot = await realWorkspace(workspace);
  const real = await realPathOfDeepestAncestor(target, requested);
  if (!isInside(realRoot, real)) throw outside();
  return real;
}

/** How to show a resolved path to the model: relative to the workspace, "." for the root. */
export async function workspaceRelative(workspace: string, resolved: string): Promise<string> {
  return path.relative(await realWorkspace(workspace), resolved) || ".";
}
