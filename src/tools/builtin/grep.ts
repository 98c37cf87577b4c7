import { open, stat } from "node:fs/promises";
import { Worker } from "node:worker_threads";
import picomatch from "picomatch";
import type { Tool } from "../types.js";
import { resolveInWorkspace, workspaceRelative } from "../workspace.js";
import { fsCall } from "./files.js";
import { walkFiles, type WalkedFile } from "./walk.js";

export interface GrepToolLimits {
  /** Matching lines reported at most (context lines not counted). */
  maxMatches: number;
  /** UTF-8 bytes of output at most; lines past it are dropped with a note. */
  maxOutputBytes: number;
  /** Files larger than this are skipped (minified bundles, data, logs). */
  maxFileBytes: number;
  /** A longer line is shown cut to this many characters (it is still searched whole). */
  maxLineChars: number;
  /** Context lines the model may ask for around each match. */
  maxContextLines: number;
  /** Wall-clock budget of one search; the regex runs in a worker thread that is killed past it. */
  timeLimitMs: number;
  /** Directory entries examined at most, so a search over a huge tree ends. */
  maxEntries: number;
}

export const DEFAULT_GREP_TOOL_LIMITS: GrepToolLimits = {
  maxMatches: 200,
  maxOutputBytes: 30_000,
  maxFileBytes: 2_000_000,
  maxLineChars: 400,
  maxContextLines: 10,
  timeLimitMs: 15_000,
  maxEntries: 200_000,
};

/** Files are sent to the worker in batches of about this many bytes. */
const BATCH_BYTES = 512 * 1024;
const BATCH_FILES = 64;
/** The NUL-byte sniff that marks a file as binary (git's heuristic, as read_file uses). */
const SNIFF_BYTES = 8_000;
/** The worker only holds a batch and a regex; more heap than this means a runaway. */
const WORKER_HEAP_MB = 256;

/**
 * The matcher, run in a worker thread: a JavaScript regex cannot be interrupted on the thread that
 * runs it, so a catastrophic one (`(a+)+$`) would freeze the whole server. In a worker, the time
 * limit and the turn's signal end it with worker.terminate(), which V8 honours even mid-backtrack.
 * Plain CommonJS so it runs as is, with no TypeScript loader, under tsx, vitest or from dist/.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const { source, flags, context, maxMatches, maxLineChars } = workerData;
const regex = new RegExp(source, flags);
let total = 0;
let shownAny = false;
const clip = (line) => line.length > maxLineChars ? line.slice(0, maxLineChars) + " [line cut: " + line.length + " characters]" : line;
// Each line is posted as soon as it is known, so a search killed mid-regex keeps what it found.
const emit = (path, index, separator, line) =>
  parentPort.postMessage({ line: path + (separator === ":" ? ":" : "-") + (index + 1) + separator + " " + clip(line.replace(/\\r$/, "")) });
function search(path, text) {
  const lines = text.split("\\n");
  if (lines[lines.length - 1] === "") lines.pop();
  let lastShown = -1;
  let trailing = 0;
  for (let i = 0; i < lines.length && (total < maxMatches || trailing > 0); i++) {
    const line = lines[i].endsWith("\\r") ? lines[i].slice(0, -1) : lines[i];
    if (total < maxMatches && regex.test(line)) {
      const from = Math.max(lastShown + 1, i - context);
      // "--" between groups that do not touch, in this file or across files, as grep does.
      if (context > 0 && shownAny && from > lastShown + 1) parentPort.postMessage({ line: "--" });
      for (let j = from; j < i; j++) emit(path, j, "-", lines[j]);
      emit(path, i, ":", line);
      shownAny = true;
      lastShown = i;
      trailing = context;
      total++;
    } else if (trailing > 0) {
      emit(path, i, "-", line);
      lastShown = i;
      trailing--;
    }
  }
}
parentPort.on("message", ({ files }) => {
  for (const { path, text } of files) {
    if (total >= maxMatches) break;
    search(path, text);
  }
  parentPort.postMessage({ done: true, total });
});
`;

type WorkerMessage = { line: string } | { done: true; total: number };

interface GrepSearch {
  regex: { source: string; flags: string };
  context: number;
}

/** grep: search file contents in the workspace with a JavaScript regular expression. */
export function createGrepTool(overrides: Partial<GrepToolLimits> = {}): Tool {
  const limits = { ...DEFAULT_GREP_TOOL_LIMITS, ...overrides };
  const { maxMatches, maxOutputBytes, maxFileBytes, maxContextLines, timeLimitMs } = limits;
  return {
    name: "grep",
    readOnly: true,
    description:
      "Search the contents of the workspace's text files with a JavaScript regular expression, matched against " +
      "each line separately (so ^ and $ are line anchors; a match cannot span lines). Prints each matching line as " +
      "`path:line: text` with workspace-relative paths; with `context`, the lines around it are printed as " +
      "`path-line- text` and separate groups by \"--\". `path` narrows the search to a directory or one file; " +
      "`glob` filters files by name (\"*.ts\", \"*.{js,jsx}\": without a \"/\" it matches the file name at any depth; " +
      "with one, the path below `path`, as in \"src/**/*.ts\"). Skipped: binary files, files over " +
      `${maxFileBytes} bytes, .git, node_modules and files ignored by .gitignore (unless \`path\` names them, as in ` +
      `"node_modules/pkg"). At most ${maxMatches} matches ` +
      `and ${maxOutputBytes} bytes are returned, and a search stops after ${timeLimitMs / 1000} s: a note says so; ` +
      "narrow `path`, `glob` or the pattern then. Escape regex characters to search for them literally " +
      "(\"foo\\\\(\" for \"foo(\"). Use glob to find files by name.",
    inputSchema: {
      type: "object",
      properties: {
        pattern: { type: "string", minLength: 1, description: 'JavaScript regular expression, e.g. "function\\\\s+\\\\w+" or "TODO|FIXME".' },
        path: { type: "string", description: 'File or directory to search, relative to the workspace root. Default ".".' },
        glob: { type: "string", minLength: 1, description: 'Only search files matching this glob, e.g. "*.py" or "src/**/*.ts".' },
        case_insensitive: { type: "boolean", description: "Ignore letter case. Default false." },
        context: {
          type: "integer",
          minimum: 0,
          maximum: maxContextLines,
          description: `Lines of context to show before and after each match (0 to ${maxContextLines}). Default 0.`,
        },
      },
      required: ["pattern"],
      additionalProperties: false,
    },
    async execute(args, context) {
      const pattern = args.pattern as string;
      const regex = compile(pattern, args.case_insensitive === true);
      const contextLines = Math.min(Math.max(0, (args.context as number | undefined) ?? 0), maxContextLines);
      const glob = args.glob as string | undefined;
      const fileFilter = glob === undefined ? () => true : picomatch(glob, { dot: true, basename: !glob.includes("/") });

      const workspace = await resolveInWorkspace(context.workspace, ".");
      const target = await resolveInWorkspace(context.workspace, (args.path as string | undefined) ?? ".");
      const shown = await workspaceRelative(context.workspace, target);
      const info = await fsCall(shown, () => stat(target));
      if (!info.isDirectory() && !info.isFile()) throw new Error(`${shown} is neither a file nor a directory`);

      const search = new Search(limits, { regex, context: contextLines }, context.signal);
      try {
        if (info.isFile()) {
          await search.file({ relative: shown, real: target }, true);
        } else {
          const below = shown === "." ? "" : `${shown}/`;
          const summary = await walkFiles({
            workspace,
            start: target,
            signal: context.signal,
            maxEntries: limits.maxEntries,
            keepGoing: () => search.running,
            onFile: (file) => (fileFilter(file.relative.slice(below.length)) ? search.file(file, false) : search.running),
          });
          if (summary.incomplete) search.incompleteWalk = true;
        }
        await search.flush();
      } catch (error) {
        context.signal.throwIfAborted();
        if (!search.timedOut) throw error;
      } finally {
        search.stop();
      }
      context.signal.throwIfAborted();
      return search.report(pattern, shown);
    },
  };
}

/** The model's pattern as a RegExp: with the "u" flag when it allows (\p{L}, astral characters), else without. */
function compile(pattern: string, caseInsensitive: boolean): { source: string; flags: string } {
  const flags = caseInsensitive ? "i" : "";
  try {
    return { source: new RegExp(pattern, `${flags}u`).source, flags: `${flags}u` };
  } catch {
    // Without "u", JavaScript accepts more escapes ("\-", "\_"), as most regex dialects do.
  }
  try {
    return { source: new RegExp(pattern, flags).source, flags };
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(
      `invalid regular expression ${JSON.stringify(pattern)}: ${reason}. Write a JavaScript regex; escape ` +
        "( ) [ ] { } . * + ? ^ $ | \\ with a backslash to match them literally",
    );
  }
}

/** One grep call: batches file texts to the worker, gathers its lines, enforces the caps and the clock. */
class Search {
  running = true;
  timedOut = false;
  incompleteWalk = false;
  private worker: Worker | undefined;
  private readonly lines: string[] = [];
  private matches = 0;
  /** Output bytes gathered so far, to stop early once the output cap is reached. */
  private bytes = 0;
  private bigFiles = 0;
  private binaryFiles = 0;
  private batch: Array<{ path: string; text: string }> = [];
  private batchBytes = 0;
  private readonly timer: NodeJS.Timeout;
  private readonly onAbort = () => this.stop();
  /** Rejects the batch in flight when the worker is terminated (time limit, abort) or dies. */
  private pending: { resolve: () => void; reject: (error: Error) => void } | undefined;

  constructor(
    private readonly limits: GrepToolLimits,
    private readonly options: GrepSearch,
    private readonly signal: AbortSignal,
  ) {
    this.timer = setTimeout(() => {
      this.timedOut = true;
      this.stop();
    }, limits.timeLimitMs);
    signal.addEventListener("abort", this.onAbort, { once: true });
  }

  /** Reads one file and queues it; returns whether the walk should go on. */
  async file(file: WalkedFile, named: boolean): Promise<boolean> {
    if (!this.running) return false;
    const text = await this.read(file, named);
    if (text === undefined) return this.running;
    this.batch.push({ path: file.relative, text });
    this.batchBytes += text.length;
    if (this.batchBytes >= BATCH_BYTES || this.batch.length >= BATCH_FILES) await this.flush();
    return this.running;
  }

  /** The file's text, or undefined when it is skipped (too big, binary, unreadable). */
  private async read(file: WalkedFile, named: boolean): Promise<string | undefined> {
    let handle;
    try {
      handle = await open(file.real, "r");
      const info = await handle.stat();
      if (!info.isFile()) return undefined;
      if (info.size > this.limits.maxFileBytes) {
        this.bigFiles++;
        if (named) throw new Error(`${file.relative} is ${info.size} bytes, over grep's limit of ${this.limits.maxFileBytes} bytes`);
        return undefined;
      }
      const bytes = await handle.readFile({ signal: this.signal });
      if (bytes.subarray(0, SNIFF_BYTES).includes(0)) {
        this.binaryFiles++;
        return undefined;
      }
      return bytes.toString("utf8");
    } catch (error) {
      if (named || this.signal.aborted) throw error;
      return undefined;
    } finally {
      await handle?.close();
    }
  }

  /** Sends the queued files to the worker and waits for its lines. */
  async flush(): Promise<void> {
    if (this.batch.length === 0 || !this.running) return;
    const files = this.batch;
    this.batch = [];
    this.batchBytes = 0;
    const worker = this.worker ?? this.start();
    await new Promise<void>((resolve, reject) => {
      this.pending = { resolve, reject };
      worker.postMessage({ files });
    });
    this.pending = undefined;
    if (this.matches >= this.limits.maxMatches || this.bytes > this.limits.maxOutputBytes) this.running = false;
  }

  private start(): Worker {
    const { regex, context } = this.options;
    // execArgv []: the worker needs no TypeScript loader, and does not pay for loading one.
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      execArgv: [],
      workerData: { source: regex.source, flags: regex.flags, context, maxMatches: this.limits.maxMatches, maxLineChars: this.limits.maxLineChars },
      resourceLimits: { maxOldGenerationSizeMb: WORKER_HEAP_MB },
    });
    worker.on("message", (message: WorkerMessage) => {
      if ("line" in message) {
        this.lines.push(message.line);
        this.bytes += Buffer.byteLength(message.line, "utf8") + 1;
      } else {
        this.matches = message.total;
        this.pending?.resolve();
      }
    });
    worker.on("error", (error) => this.pending?.reject(new Error(`grep failed: ${error.message}`)));
    worker.on("exit", () => this.pending?.reject(new Error(this.timedOut ? "grep timed out" : "grep was stopped")));
    this.worker = worker;
    return worker;
  }

  /** Ends the search: the worker is killed mid-regex if need be. Safe to call more than once. */
  stop(): void {
    this.running = false;
    clearTimeout(this.timer);
    this.signal.removeEventListener("abort", this.onAbort);
    const worker = this.worker;
    if (worker) void worker.terminate();
  }

  report(pattern: string, shown: string): string {
    const { maxMatches, maxOutputBytes, timeLimitMs, maxEntries, maxFileBytes } = this.limits;
    const lines: string[] = [];
    let bytes = 0;
    let cut = false;
    for (const line of this.lines) {
      const size = Buffer.byteLength(line, "utf8") + 1;
      if (bytes + size > maxOutputBytes) {
        cut = true;
        break;
      }
      lines.push(line);
      bytes += size;
    }
    const notes: string[] = [];
    if (cut) notes.push(`[output cut at ${maxOutputBytes} bytes; narrow the pattern, \`path\` or \`glob\`]`);
    else if (this.matches >= maxMatches) notes.push(`[stopped at ${maxMatches} matches; there may be more: narrow the pattern, \`path\` or \`glob\`]`);
    if (this.timedOut) {
      notes.push(
        `[the search was stopped after its time limit of ${timeLimitMs / 1000} s, so results are incomplete: the regex may ` +
          "backtrack catastrophically (nested quantifiers such as (a+)+), or the tree is large; simplify the pattern or narrow `path`/`glob`]",
      );
    }
    if (this.incompleteWalk) notes.push(`[the search stopped after ${maxEntries} directory entries; narrow \`path\` or \`glob\`]`);
    if (this.bigFiles > 0) notes.push(`[${this.bigFiles} file(s) over ${maxFileBytes} bytes were not searched]`);
    if (lines.length === 0) {
      const binary = this.binaryFiles > 0 ? ` (${this.binaryFiles} binary file(s) skipped)` : "";
      return [`no matches for /${pattern}/ in ${shown}${binary}`, ...notes].join("\n");
    }
    return [...lines, ...notes].join("\n");
  }
}
