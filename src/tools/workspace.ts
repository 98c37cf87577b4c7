import { realpathSync } from "node:fs";
import { isWithin, realpathOfNearest, UnsafePathError } from "../util/paths.js";
import path from "node:path";

function errorCode(error: unknown): string | undefined {
  return error instanceof Error && "code" in error && typeof error.code === "string" ? error.code : undefined;
}

async function realWorkspace(workspace: string): Promise<string> {
  try {
    // Synchronously, like realpathOfNearest: one quick syscall, not worth a thread-pool round trip.
    return realpathSync.native(path.resolve(workspace));
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
  if (!isWithin(target, root)) throw outside();
  const realRoot = await realWorkspace(workspace);
  const real = await realpathOfNearest(target).catch((error: unknown) => {
    throw error instanceof UnsafePathError ? new Error(`path "${requested}" ${error.message}`) : error;
  });
  if (!isWithin(real, realRoot)) throw outside();
  return real;
}

/** How to show a resolved path to the model: relative to the workspace, "." for the root. */
export async function workspaceRelative(workspace: string, resolved: string): Promise<string> {
  return path.relative(await realWorkspace(workspace), resolved) || ".";
}
