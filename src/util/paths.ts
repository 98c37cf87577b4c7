import { realpathSync } from "node:fs";
import path from "node:path";

/** Whether `child` lies strictly inside `parent` (both absolute and resolved). */
export function isInside(child: string, parent: string): boolean {
  const relative = path.relative(parent, child);
  return relative !== "" && !relative.startsWith("..") && !path.isAbsolute(relative);
}

/** The real path of an existing file, or null. */
export function realpathOrNull(file: string): string | null {
  try {
    return realpathSync(file);
  } catch {
    return null;
  }
}
