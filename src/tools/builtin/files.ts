import { randomUUID } from "node:crypto";
import { chmod, mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { readdirSync, statSync, type Stats } from "node:fs";
import path from "node:path";
import type { Tool, ToolContext } from "../types.js";
import { resolveInWorkspace, workspaceRelative } from "../workspace.js";

/** Caps that keep a single call from flooding the model's context or walking the whole disk. */
export interface FileToolLimits {
  /** Files larger than this are refused by read_file: even paged, they would flood the context. */
  maxReadBytes: number;
  /** Lines read_file returns when the model gives no limit. */
  defaultReadLines: number;
  /** How deep and how far a recursive list_dir goes. */
  maxListDepth: number;
  maxListEntries: number;
}

export const DEFAULT_FILE_TOOL_LIMITS: FileToolLimits = {
  maxReadBytes: 5_000_000,
  defaultReadLines: 2_000,
  maxListDepth: 5,
  maxListEntries: 1_000,
};

/** Directories a recursive listing shows but does not enter: huge and rarely what the model wants. */
const NOT_ENTERED = new Set([".git", "node_modules"]);

export interface FileTools {
  readFile: Tool;
  writeFile: Tool;
  listDir: Tool;
}

/** The built-in file tools, confined to the session's workspace. */
export function createFileTools(overrides: Partial<FileToolLimits> = {}): FileTools {
  const limits = { ...DEFAULT_FILE_TOOL_LIMITS, ...overrides };
  return { readFile: readFileTool(limits), writeFile: writeFileTool, listDir: listDirTool(limits) };
}

/** The built-in file tools as a list, for a registry. */
export function builtinFileTools(overrides: Partial<FileToolLimits> = {}): Tool[] {
  return Object.values(createFileTools(overrides));
}

const readFileTool = ({ maxReadBytes, defaultReadLines }: FileToolLimits): Tool => ({
  name: "read_file",
  readOnly: true,
  description:
    "Read a UTF-8 text file in the workspace. `path` is relative to the workspace root. Returns the file's " +
    `text as is (no line numbers). By default returns the first ${defaultReadLines} lines; use \`offset\` ` +
    "(1-based line to start at) and `limit` (number of lines) to page through longer files: a note at the end " +
    `says which lines were shown and what offset to pass next. Files over ${maxReadBytes} bytes, binary ` +
    "files and directories are refused (use list_dir for directories).",
  inputSchema: {
    type: "object",
    properties: {
      path: { type: "string", description: "File path relative to the workspace root." },
      offset: { type: "integer", minimum: 1, description: "1-based line number to start reading at. Default 1." },
      limit: { type: "integer", minimum: 1, description: `Maximum number of lines to return. Default ${defaultReadLines}.` },
    },
    required: ["path"],
    additionalProperties: false,
  },
  async execute(args, context) {
    const requested = args.path as string;
    const offset = (args.offset as number | undefined) ?? 1;
    const limit = (args.limit as number | undefined) ?? defaultReadLines;
    const file = await resolveInWorkspace(context.workspace, requested);
    const shown = await workspaceRelative(context.workspace, file);

    const info = await fsCall(shown, () => stat(file));
    if (info.isDirectory()) throw new Error(`${shown} is a directory; use list_dir to see its entries`);
    if (!info.isFile()) throw new Error(`${shown} is not a regular file`);
    if (info.size > maxReadBytes) {
      throw new Error(`${shown} is ${info.size} bytes, over read_file's limit of ${maxReadBytes} bytes`);
    }
    const bytes = await fsCall(shown, () => readFile(file, { signal: context.signal }));
    // A NUL byte in the first block is the usual (git's) heuristic for binary content.
    if (bytes.subarray(0, 8_000).includes(0)) throw new Error(`${shown} looks like a binary file; read_file reads text only`);
    return pageLines(shown, bytes.toString("utf8"), offset, limit);
  },
});

/** The requested window of lines, with a note when it is not the whole file. */
function pageLines(shown: string, text: string, offset: number, limit: number): string {
  if (text === "") return `[${shown} is empty]`;
  const lines = text.split("\n");
  // A final newline ends the last line; it does not start another one.
  if (lines[lines.length - 1] === "") lines.pop();
  if (offset === 1 && lines.length <= limit) return text;
  if (offset > lines.length) throw new Error(`offset ${offset} is past the end of ${shown}, which has ${lines.length} lines`);
  const last = Math.min(lines.length, offset + limit - 1);
  const window = lines.slice(offset - 1, last).join("\n");
  const more = last < lines.length ? `; pass offset=${last + 1} to read more` : "";
  return `${window}\n[lines ${offset}-${last} of ${lines.length} shown${more}]`;
}

const writeFileTool: Tool = {
  name: "write_file",
  readOnly: false,
  description:
    "Create or overwrite a file in the workspace with the given text content. `path` is relative to the " +
    "workspace root; missing parent directories are created. The whole file is replaced atomically (readers " +
    "never see a half-written file), so to change part of a file, read it first and write back the full text.",
  inputSchema: {
    type: "object",
    properties: {
      path: { type: "string", minLength: 1, description: "File path relative to the workspace root." },
      content: { type: "string", description: "The complete new content of the file." },
    },
    required: ["path", "content"],
    additionalProperties: false,
  },
  async execute(args, context) {
    const content = args.content as string;
    const file = await resolveInWorkspace(context.workspace, args.path as string);
    const shown = await workspaceRelative(context.workspace, file);
    const existing = await statIfExists(file);
    if (existing?.isDirectory()) throw new Error(`${shown} is a directory`);

    await fsCall(shown, () => mkdir(path.dirname(file), { recursive: true }));
    await fsCall(shown, () => writeAtomically(file, content, existing, context));
    return `wrote ${Buffer.byteLength(content, "utf8")} bytes to ${shown}`;
  },
};

/** Temp file in the same directory + rename, which is atomic on one filesystem. */
export async function writeAtomically(file: string, content: string, existing: Stats | undefined, context: ToolContext): Promise<void> {
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${randomUUID()}.tmp`);
  try {
    await writeFile(temp, content, { flag: "wx", signal: context.signal });
    // Overwriting keeps the file's permissions (an executable script stays executable).
    if (existing) await chmod(temp, existing.mode & 0o7777);
    await rename(temp, file);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

const listDirTool = ({ maxListDepth, maxListEntries }: FileToolLimits): Tool => ({
  name: "list_dir",
  readOnly: true,
  description:
    "List a directory in the workspace, one entry per line, sorted by name. Directories end with \"/\", " +
    "symbolic links with \"@\" (links are not followed). `path` is relative to the workspace root and defaults " +
    `to the root. With \`recursive\`: true, subdirectories are listed too (paths relative to \`path\`), up to ` +
    `${maxListDepth} levels deep and ${maxListEntries} entries; .git and node_modules are shown but not entered.`,
  inputSchema: {
    type: "object",
    properties: {
      path: { type: "string", description: 'Directory path relative to the workspace root. Default ".".' },
      recursive: { type: "boolean", description: "Also list subdirectories. Default false." },
    },
    additionalProperties: false,
  },
  async execute(args, context) {
    const dir = await resolveInWorkspace(context.workspace, (args.path as string | undefined) ?? ".");
    const shown = await workspaceRelative(context.workspace, dir);
    // The directory asked for is read synchronously: a stat and a readdir are quick syscalls, and two
    // thread-pool round trips took longer than the work. A recursive walk reads the ones below it
    // through the thread pool (see walk).
    const info = await fsCall(shown, async () => statSync(dir));
    if (!info.isDirectory()) throw new Error(`${shown} is not a directory; use read_file to read a file`);

    const listing: Listing = { entries: [], full: false };
    const walkOptions = { recursive: args.recursive === true, maxDepth: maxListDepth, maxEntries: maxListEntries, signal: context.signal };
    await walk(dir, "", 1, walkOptions, listing);
    if (listing.entries.length === 0) return `[${shown} is empty]`;
    const note = listing.full ? `\n[listing stopped at ${maxListEntries} entries]` : "";
    return listing.entries.join("\n") + note;
  },
});

interface Listing {
  entries: string[];
  /** Set when the entry cap stopped the walk. */
  full: boolean;
}

interface WalkOptions {
  recursive: boolean;
  maxDepth: number;
  maxEntries: number;
  signal: AbortSignal;
}

async function walk(dir: string, prefix: string, depth: number, options: WalkOptions, listing: Listing): Promise<void> {
  // readdir takes no signal; checking between directories keeps a big walk cancellable. Below the
  // first directory, reads go through the thread pool: a deep walk (or a slow network file system)
  // must not hold the server's other sessions, and the checks need the turns of the event loop.
  options.signal.throwIfAborted();
  const read = depth === 1 ? async () => readdirSync(dir, { withFileTypes: true }) : () => readdir(dir, { withFileTypes: true });
  const entries = await fsCall(prefix || ".", read);
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const entry of entries) {
    if (listing.entries.length >= options.maxEntries) {
      listing.full = true;
      return;
    }
    const name = prefix + entry.name;
    if (entry.isSymbolicLink()) {
      listing.entries.push(`${name}@`);
    } else if (entry.isDirectory()) {
      listing.entries.push(`${name}/`);
      if (options.recursive && depth < options.maxDepth && !NOT_ENTERED.has(entry.name)) {
        await walk(path.join(dir, entry.name), `${name}/`, depth + 1, options, listing);
      }
    } else {
      listing.entries.push(name);
    }
  }
}

export async function statIfExists(file: string): Promise<Stats | undefined> {
  try {
    return await stat(file);
  } catch (error) {
    if (codeOf(error) === "ENOENT") return undefined;
    throw error;
  }
}

export function codeOf(error: unknown): string | undefined {
  return error instanceof Error && "code" in error && typeof error.code === "string" ? error.code : undefined;
}

/**
 * Runs an fs call, rewording the common failures: Node's messages carry the absolute host path,
 * which the model cannot use and should not see.
 */
export async function fsCall<T>(shown: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    switch (codeOf(error)) {
      case "ENOENT":
        throw new Error(`${shown} does not exist`);
      case "ENOTDIR":
        throw new Error(`${shown}: a parent of this path is a file, not a directory`);
      case "EACCES":
      case "EPERM":
        throw new Error(`permission denied: ${shown}`);
      default:
        throw error;
    }
  }
}
