import { realpath, stat } from "node:fs/promises";
import path from "node:path";
import picomatch from "picomatch";
import type { Tool } from "../types.js";
import { resolveInWorkspace, workspaceRelative } from "../workspace.js";
import { fsCall } from "./files.js";
import { walkFiles } from "./walk.js";

export interface GlobToolLimits {
  /** Paths returned at most; a note says how many more matched. */
  maxResults: number;
  /** Directory entries examined at most, so a glob over a huge tree ends. */
  maxEntries: number;
}

export const DEFAULT_GLOB_TOOL_LIMITS: GlobToolLimits = {
  maxResults: 500,
  maxEntries: 200_000,
};

/** How many files are stat'ed at once when sorting by modification time. */
const STAT_CONCURRENCY = 32;

/** glob: the workspace's files whose paths match a glob pattern. */
export function createGlobTool(overrides: Partial<GlobToolLimits> = {}): Tool {
  const { maxResults, maxEntries } = { ...DEFAULT_GLOB_TOOL_LIMITS, ...overrides };
  return {
    name: "glob",
    readOnly: true,
    description:
      "Find files in the workspace whose path matches a glob pattern, such as \"**/*.ts\", \"src/**/*.{js,jsx}\" " +
      "or \"*.md\". The pattern is matched against paths relative to `path` (default: the workspace root): `*` " +
      "does not cross \"/\" (so \"*.md\" finds only files directly in `path`) and `**` matches any number of " +
      "directories. Returns workspace-relative file paths, one per line, newest first (sort: \"path\" for " +
      `alphabetical), at most ${maxResults}. Files ignored by .gitignore, .git and node_modules are skipped unless ` +
      "the directory is named in `path` or at the start of the pattern (\"node_modules/pkg/**\"). Symbolic links " +
      "to directories are not followed. Use grep to search file contents.",
    inputSchema: {
      type: "object",
      properties: {
        pattern: { type: "string", minLength: 1, description: 'Glob pattern relative to `path`, e.g. "**/*.test.ts".' },
        path: { type: "string", description: 'Directory to search in, relative to the workspace root. Default ".".' },
        sort: {
          type: "string",
          enum: ["mtime", "path"],
          description: 'Order of the results: "mtime" (most recently modified first, the default) or "path".',
        },
      },
      required: ["pattern"],
      additionalProperties: false,
    },
    async execute(args, context) {
      const pattern = args.pattern as string;
      const byPath = args.sort === "path";
      if (pattern.startsWith("/") || pattern.split("/").includes("..")) {
        throw new Error(`the pattern "${pattern}" must be relative and stay below \`path\`; pass the directory as \`path\` instead`);
      }
      const workspace = await resolveInWorkspace(context.workspace, ".");
      const dir = await resolveInWorkspace(context.workspace, (args.path as string | undefined) ?? ".");
      const shown = await workspaceRelative(context.workspace, dir);
      const info = await fsCall(shown, () => stat(dir));
      if (!info.isDirectory()) throw new Error(`${shown} is not a directory; \`path\` names the directory to search in`);

      const matches = picomatch(pattern, { dot: true });
      const dirRelative = shown === "." ? "" : shown;
      const found: Array<{ relative: string; real: string }> = [];
      const summary = await walkFiles({
        workspace,
        start: await narrowStart(dir, pattern),
        signal: context.signal,
        maxEntries,
        onFile(file) {
          const below = dirRelative === "" ? file.relative : file.relative.slice(dirRelative.length + 1);
          if (matches(below)) found.push(file);
          return true;
        },
      });

      const notes: string[] = [];
      if (summary.incomplete) {
        notes.push(`[the search stopped after ${maxEntries} directory entries, so there may be more matches: narrow \`path\` or the pattern]`);
      }
      if (found.length === 0) return [`no files match "${pattern}" in ${shown}`, ...notes].join("\n");

      let ordered: string[];
      if (byPath) {
        ordered = found.map((file) => file.relative).sort(comparePaths);
      } else {
        const times = await modificationTimes(found.map((file) => file.real), context.signal);
        ordered = found
          .map((file, index) => ({ relative: file.relative, mtime: times[index] }))
          .sort((a, b) => b.mtime - a.mtime || comparePaths(a.relative, b.relative))
          .map((file) => file.relative);
      }
      if (ordered.length > maxResults) {
        notes.unshift(`[${ordered.length - maxResults} more files matched but are not shown (${maxResults} of ${ordered.length}); narrow the pattern or \`path\`]`);
        ordered = ordered.slice(0, maxResults);
      }
      return [...ordered, ...notes].join("\n");
    },
  };
}

/**
 * Where to start walking: the pattern's literal leading directories ("src/app" for
 * "src/app/**\/*.ts"), when they are a real directory reached without symlinks; otherwise `dir`.
 * Besides saving work, this lets a pattern that spells out an ignored directory ("node_modules/x/**",
 * "dist/*.js") look inside it, as `path` does: the start of a walk is never itself ignored.
 */
async function narrowStart(dir: string, pattern: string): Promise<string> {
  const { base, isGlob } = picomatch.scan(pattern);
  // For a pattern without wildcards ("a/b.txt"), base is the whole path: start in its directory.
  const baseDir = isGlob ? base : path.posix.dirname(base);
  if (baseDir === "" || baseDir === ".") return dir;
  const candidate = path.join(dir, baseDir);
  try {
    return (await realpath(candidate)) === candidate && (await stat(candidate)).isDirectory() ? candidate : dir;
  } catch {
    return dir;
  }
}

/** Modification times in ms (0 for files that vanished meanwhile), a few stat calls at a time. */
async function modificationTimes(files: string[], signal: AbortSignal): Promise<number[]> {
  const times: number[] = new Array<number>(files.length).fill(0);
  for (let from = 0; from < files.length; from += STAT_CONCURRENCY) {
    signal.throwIfAborted();
    const batch = files.slice(from, from + STAT_CONCURRENCY);
    const stats = await Promise.all(batch.map((file) => stat(file).then((s) => s.mtimeMs, () => 0)));
    stats.forEach((mtime, index) => (times[from + index] = mtime));
  }
  return times;
}

function comparePaths(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
