import { constants, type Dirent } from "node:fs";
import { open, readdir, realpath, stat } from "node:fs/promises";
import path from "node:path";
import { isWithin } from "../util/paths.js";

/** Entries a folder listing examines before it stops: bounds the work on a huge folder. */
const MAX_EXAMINED = 2_000;

/**
 * The files of a skill's folder, relative with "/" separators, sorted, at most `max`: dot-files and
 * dot-folders are left out, SKILL.md too (its body is what the listing goes with), and so are links
 * except to files inside the folder (the ones readSkillFile reads). Linked folders are not entered,
 * so the walk stays in the folder and cannot loop. `more` says some were left out.
 */
export async function listSkillFiles(dir: string, max: number, signal: AbortSignal): Promise<{ files: string[]; more: boolean }> {
  const realDir = await realpath(dir).catch(() => null);
  // A folder gone (or swapped for a link) since the skill was loaded holds nothing; the instructions are still worth reading.
  if (realDir === null || realDir !== dir) return { files: [], more: false };
  const linksToFileInside = async (link: string) => {
    const real = await realpath(link).catch(() => null);
    return real !== null && isWithin(real, realDir) && (await stat(real).then((info) => info.isFile(), () => false));
  };
  const files: string[] = [];
  let examined = 0;
  const walk = async (relative: string): Promise<boolean> => {
    signal.throwIfAborted();
    let entries: Dirent[];
    try {
      entries = await readdir(path.join(realDir, relative), { withFileTypes: true });
    } catch {
      return true;
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      if (++examined > MAX_EXAMINED) return false;
      if (entry.name.startsWith(".")) continue;
      const name = relative === "" ? entry.name : `${relative}/${entry.name}`;
      if (entry.isDirectory()) {
        if (!(await walk(name))) return false;
      } else if (entry.isFile() || (entry.isSymbolicLink() && (await linksToFileInside(path.join(realDir, name))))) {
        if (name === "SKILL.md") continue;
        if (files.length === max) return false;
        files.push(name);
      }
    }
    return true;
  };
  const complete = await walk("");
  return { files, more: !complete };
}

export interface SkillFileLimits {
  maxFileBytes: number;
  signal: AbortSignal;
}

/**
 * Reads `requested`, a path relative to the skill's folder, as text. It must stay inside the
 * folder after symlinks are resolved, and be a regular, small, non-binary file. Error messages
 * name only what the model asked for: never the file's content or where a link leads.
 */
export async function readSkillFile(dir: string, requested: string, limits: SkillFileLimits): Promise<string> {
  const shown = JSON.stringify(requested.length > 200 ? `${requested.slice(0, 200)}…` : requested);
  if (requested === "" || requested.includes("\u0000")) throw new Error("file must be a non-empty path relative to the skill's folder");
  const parts = requested.split(/[\\/]/);
  if (path.isAbsolute(requested) || /^[A-Za-z]:/.test(requested) || parts.includes("..")) {
    throw new Error(`file ${shown} is not allowed: give a path relative to the skill's folder, without ".."`);
  }
  const realDir = await realpath(dir).catch(() => {
    throw new Error("the skill's folder is no longer there");
  });
  // `dir` is the folder's real path when the skill was loaded (and checked against where skills may
  // come from): a folder swapped since for a link, or moved under one, is not followed.
  if (realDir !== dir) throw new Error("the skill's folder has changed since the skill was loaded; load the skill again");
  const real = await realpath(path.join(realDir, requested)).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ELOOP") throw new Error(`file ${shown} goes through a symbolic link loop`);
    throw new Error(`the skill's folder has no file ${shown}; read the skill without \`file\` to see the files it holds`);
  });
  if (!isWithin(real, realDir)) throw new Error(`file ${shown} leads outside the skill's folder and cannot be read`);

  // O_NOFOLLOW: should the file be swapped for a link after the check above, the open fails.
  // O_NONBLOCK: a FIFO or device opens at once (and is refused below) instead of holding a thread.
  const handle = await open(real, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch(() => {
    throw new Error(`file ${shown} cannot be read`);
  });
  try {
    // What was opened, whatever was swapped on the way: it must still lie inside the folder.
    const opened = await realpath(`/proc/self/fd/${handle.fd}`).catch(() => real);
    if (!isWithin(opened, realDir)) throw new Error(`file ${shown} leads outside the skill's folder and cannot be read`);
    const info = await handle.stat();
    if (info.isDirectory()) throw new Error(`${shown} is a folder; ask for one of the files it holds`);
    if (!info.isFile()) throw new Error(`${shown} is not a regular file`);
    if (info.size > limits.maxFileBytes) throw new Error(`${shown} is ${info.size} bytes, over the limit of ${limits.maxFileBytes} bytes for a skill's file`);
    const bytes = await handle.readFile({ signal: limits.signal });
    // A NUL byte is the usual (git's) sign of a binary file.
    if (bytes.includes(0)) throw new Error(`${shown} is a binary file; only text files can be read`);
    return bytes.toString("utf8");
  } finally {
    await handle.close();
  }
}
