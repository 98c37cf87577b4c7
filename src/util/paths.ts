import { realpathSync } from "node:fs";
import { lstat } from "node:fs/promises";
import path from "node:path";

/** Whether `candidate` is `root` itself or lies below it (both absolute and normalised). */
export function isWithin(candidate: string, root: string): boolean {
  const relative = path.relative(root, candidate);
  return relative === "" || (relative !== ".." && !relative.startsWith(`..${path.sep}`) && !path.isAbsolute(relative));
}

/** Whether `child` lies strictly inside `parent` (both absolute and normalised). */
export function isInside(child: string, parent: string): boolean {
  return child !== parent && isWithin(child, parent);
}

/** The real path of an existing file, or null. */
export function realpathOrNull(file: string): string | null {
  try {
    return realpathSync(file);
  } catch {
    return null;
  }
}

/** Why a path cannot be resolved safely; `code` is "ELOOP" or "EDANGLING". */
export class UnsafePathError extends Error {
  constructor(
    readonly code: "ELOOP" | "EDANGLING",
    message: string,
  ) {
    super(message);
    this.name = "UnsafePathError";
  }
}

/**
 * The real path of `target`: symlinks resolved for the part that exists, the missing tail (a file
 * or folder about to be made) appended as is; that tail cannot hold symlinks, since it does not
 * exist. A dangling symlink on the way is refused: it would pass for a missing folder and let a
 * write follow it anywhere.
 */
export async function realpathOfNearest(target: string): Promise<string> {
  const missing: string[] = [];
  let current = target;
  for (;;) {
    try {
      // One syscall, made synchronously: a thread-pool round trip costs far more than the lookup,
      // and every file tool call resolves a few paths.
      return path.join(realpathSync.native(current), ...missing);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "ELOOP") throw new UnsafePathError("ELOOP", "goes through a symbolic link loop");
      // ENOENT: not there yet; ENOTDIR: a parent is a file, so the fs call itself will fail later.
      if (code !== "ENOENT" && code !== "ENOTDIR") throw error;
    }
    if (await lstat(current).then((stats) => stats.isSymbolicLink(), () => false)) {
      throw new UnsafePathError("EDANGLING", "goes through a symbolic link to a missing target");
    }
    const parent = path.dirname(current);
    if (parent === current) return path.join(current, ...missing);
    missing.unshift(path.basename(current));
    current = parent;
  }
}
