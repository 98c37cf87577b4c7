import type { Dirent } from "node:fs";
import { readdir, readFile, realpath, stat } from "node:fs/promises";
import path from "node:path";
import ignore, { type Ignore } from "ignore";
import { isWithin } from "../../util/paths.js";

/**
 * The file walk shared by glob and grep: stays inside the workspace, honours .gitignore files,
 * never enters .git or node_modules, and never follows a symlinked directory.
 */

/** Directories never entered: huge, and never what a search is for. */
export const NEVER_ENTERED = new Set([".git", "node_modules"]);

/** .gitignore files over this size are not read (no real one is anywhere near it). */
const MAX_GITIGNORE_BYTES = 1_000_000;

export interface WalkedFile {
  /** Path relative to the workspace root, with "/" separators: what the model is shown. */
  relative: string;
  /** Real absolute path to read (a symlink's target, which is inside the workspace). */
  real: string;
}

export interface WalkOptions {
  /** Real path of the workspace root. */
  workspace: string;
  /** Real path of the directory to walk; inside the workspace. */
  start: string;
  signal: AbortSignal;
  /** Directory entries examined before the walk gives up: bounds the work on a huge tree. */
  maxEntries: number;
  /** Called for each regular file, in name order; returning false stops the walk. */
  onFile(file: WalkedFile): boolean | Promise<boolean>;
  /** Returns false to stop the walk between directories (a deadline, a full result). */
  keepGoing?: () => boolean;
}

export interface WalkSummary {
  entries: number;
  /** True when maxEntries stopped the walk before it saw the whole tree. */
  incomplete: boolean;
}

/** The rules of one .gitignore file, which apply below the directory holding it. */
interface IgnoreLevel {
  /** The directory, relative to the workspace root ("" for the root). */
  dir: string;
  rules: Ignore;
  /** The file's lines, to rebuild the rules without some of them. */
  lines: string[];
}

/**
 * Walks `start` depth first, entries sorted by name. Files and directories matched by a .gitignore
 * (the workspace's own, those of the directories between it and `start`, and those found on the
 * way) are skipped; a later or deeper rule overrides an earlier one, "!" rules included, as in git.
 * `start` itself is never ignored: the rules that would ignore it are dropped for this walk.
 * Symbolic links to files are reported when their target is a regular file inside the workspace;
 * symbolic links to directories are not followed at all, so a walk cannot leave the workspace or loop.
 * Sockets, FIFOs and devices are skipped (reading a FIFO would block).
 */
export async function walkFiles(options: WalkOptions): Promise<WalkSummary> {
  const { workspace, start, signal, maxEntries, onFile } = options;
  const keepGoing = options.keepGoing ?? (() => true);
  const summary: WalkSummary = { entries: 0, incomplete: false };

  // Rules from the directories above `start`: a walk of src/ still honours the root's .gitignore.
  const levels: IgnoreLevel[] = [];
  const startRelative = toPosix(path.relative(workspace, start));
  const parts = startRelative === "" ? [] : startRelative.split("/");
  // The root, then each directory down to start's parent ("a/b" -> "", "a"); start's own is read by visit.
  for (let depth = 0; depth < parts.length; depth++) {
    const dir = parts.slice(0, depth).join("/");
    const level = await readGitignore(path.join(workspace, dir), workspace, dir);
    if (level) levels.push(exceptFor(level, startRelative));
  }

  const visit = async (dir: string, relativeDir: string, inherited: IgnoreLevel[]): Promise<boolean> => {
    signal.throwIfAborted();
    if (!keepGoing()) return false;
    const own = await readGitignore(dir, workspace, relativeDir);
    const rules = own ? [...inherited, own] : inherited;
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      // Unreadable or vanished directories are skipped, as a search tool should.
      return true;
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      if (++summary.entries > maxEntries) {
        summary.incomplete = true;
        return false;
      }
      const relative = relativeDir === "" ? entry.name : `${relativeDir}/${entry.name}`;
      const absolute = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        if (NEVER_ENTERED.has(entry.name) || isIgnored(rules, relative, true)) continue;
        if (!(await visit(absolute, relative, rules))) return false;
      } else if (entry.isFile()) {
        if (isIgnored(rules, relative, false)) continue;
        if (!(await onFile({ relative, real: absolute }))) return false;
      } else if (entry.isSymbolicLink()) {
        if (isIgnored(rules, relative, false)) continue;
        const real = await fileInside(absolute, workspace);
        if (real && !(await onFile({ relative, real }))) return false;
      }
    }
    return true;
  };

  await visit(start, startRelative, levels);
  return summary;
}

/** Whether the rules ignore `relative` (workspace-relative); the deepest rule that decides wins. */
function isIgnored(levels: IgnoreLevel[], relative: string, isDirectory: boolean): boolean {
  let ignored = false;
  for (const { dir, rules } of levels) {
    if (dir !== "" && !relative.startsWith(`${dir}/`)) continue;
    const below = dir === "" ? relative : relative.slice(dir.length + 1);
    const result = rules.test(isDirectory ? `${below}/` : below);
    if (result.ignored) ignored = true;
    else if (result.unignored) ignored = false;
  }
  return ignored;
}

/**
 * The level without the rules that ignore `start` (or a directory on the way to it): a directory the
 * model names is searched even when ignored, like node_modules/pkg or dist, as ripgrep does. Other
 * rules still apply below it ("dist/" goes, "*.map" stays).
 */
function exceptFor(level: IgnoreLevel, start: string): IgnoreLevel {
  const below = `${level.dir === "" ? start : start.slice(level.dir.length + 1)}/`;
  let { rules, lines } = level;
  for (;;) {
    const { ignored, rule } = rules.test(below);
    if (!ignored || !rule) return { dir: level.dir, rules, lines };
    const index = lines.lastIndexOf(rule.pattern);
    if (index === -1) return { dir: level.dir, rules, lines };
    lines = lines.filter((_, at) => at !== index);
    rules = ignore().add(lines);
  }
}

async function readGitignore(dir: string, workspace: string, relativeDir: string): Promise<IgnoreLevel | undefined> {
  const file = path.join(dir, ".gitignore");
  try {
    const info = await stat(file);
    if (!info.isFile() || info.size > MAX_GITIGNORE_BYTES) return undefined;
    // A .gitignore that is a symlink out of the workspace is not read.
    const real = await realpath(file);
    if (!isWithin(real, workspace)) return undefined;
    // Split as the ignore package splits a text it is given.
    const lines = (await readFile(real, "utf8")).split(/\r?\n/);
    return { dir: relativeDir, rules: ignore().add(lines), lines };
  } catch {
    return undefined;
  }
}

/** The real path of a symlink's target when it is a regular file inside the workspace. */
async function fileInside(link: string, workspace: string): Promise<string | undefined> {
  try {
    const real = await realpath(link);
    if (!isWithin(real, workspace)) return undefined;
    return (await stat(real)).isFile() ? real : undefined;
  } catch {
    return undefined;
  }
}

function toPosix(relative: string): string {
  return path.sep === "/" ? relative : relative.split(path.sep).join("/");
}
