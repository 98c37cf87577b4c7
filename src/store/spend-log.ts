import { createReadStream } from "node:fs";
import { mkdir, stat } from "node:fs/promises";
import path from "node:path";
import { createInterface } from "node:readline";
import type { UsageTotals } from "../session/types.js";
import { syncDirectory, writeFileAtomic, writeFileSynced } from "./files.js";
import { parseSpendMark, parseSpendRow, SpendTotals, type SpendLedger, type SpendMark, type SpendRow } from "./spend.js";

/**
 * The file store's spend ledger: one JSON line per write, `{"rows": [...], "marks": [...]}`
 * (owner-days added, sessions' marks raised: a line is whole or, torn by a crash, dropped whole),
 * appended and fsynced, and added up in memory when first read. Once the lines outnumber the
 * owner-days and marks they add up to (or a crash tore the last one), the file is rewritten with one
 * line for each, so its size follows the owners, days and sessions, not the model calls.
 */
export class SpendLog implements SpendLedger {
  private totals = new SpendTotals();
  /** Lines in the file, and its length: an append that failed halfway is cut off by the next one. */
  private lines = 0;
  private bytes = 0;
  private loaded = false;
  /** Reads, appends and rewrites one after another, so that lines never interleave or land in a file being replaced. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly file: string,
    private readonly warn: (location: string, error: string) => void = () => {},
    /** How the file is replaced whole (tests make it fail). */
    private readonly replace: (file: string, data: string) => Promise<number> = writeFileAtomic,
    /** Whether a session's mark is still needed (its record exists); a rewrite drops the others. */
    private readonly keepsMark: (sessionId: string) => boolean = () => true,
  ) {}

  addSpend(rows: readonly SpendRow[], marks: readonly SpendMark[] = []): Promise<void> {
    if (rows.length === 0 && marks.length === 0) return Promise.resolve();
    return this.inTurn(async () => {
      await this.load();
      const created = this.bytes === 0;
      this.bytes += await writeFileSynced(this.file, `${JSON.stringify({ rows, marks })}\n`, "a", this.bytes);
      if (created) await syncDirectory(path.dirname(this.file));
      this.lines += 1;
      // Counted once stored: a failed append is retried by the caller, and must not count twice.
      for (const row of rows) this.totals.add(row);
      for (const mark of marks) this.totals.mark(mark);
      // Stored and counted: a failed tidy-up must not fail the addition (it would be added again).
      if (this.lines > 2 * this.totals.size + 64) await this.tidy();
    });
  }

  async spendOf(owner: string, fromDay: string): Promise<UsageTotals> {
    if (!this.loaded) await this.inTurn(() => this.load());
    return this.totals.sum(owner, fromDay);
  }

  async marksOf(sessionIds: readonly string[]): Promise<Map<string, SpendMark>> {
    if (!this.loaded) await this.inTurn(() => this.load());
    return this.totals.marksOf(sessionIds);
  }

  /** Lets go of what was read; the next call reads the file again. */
  close(): Promise<void> {
    return this.inTurn(async () => {
      this.loaded = false;
    });
  }

  private inTurn<T>(step: () => Promise<T>): Promise<T> {
    const run = this.queue.then(step);
    this.queue = run.catch(() => {});
    return run;
  }

  private async load(): Promise<void> {
    if (this.loaded) return;
    await mkdir(path.dirname(this.file), { recursive: true, mode: 0o700 });
    const totals = new SpendTotals();
    let lines = 0;
    let bad = 0;
    const size = await stat(this.file).then(
      (found) => found.size,
      (error: NodeJS.ErrnoException) => {
        if (error.code === "ENOENT") return 0;
        throw error;
      },
    );
    let torn = false;
    let lastLine = "";
    if (size > 0) {
      // Line by line: the file may be larger than one string can be.
      const reader = createInterface({ input: createReadStream(this.file, { encoding: "utf8" }), crlfDelay: Infinity });
      for await (const line of reader) {
        lastLine = line;
        if (line === "") continue;
        lines++;
        const entry = parseLine(line);
        if (!entry) {
          bad++;
          continue;
        }
        for (const row of entry.rows) totals.add(row);
        for (const mark of entry.marks) totals.mark(mark);
      }
      torn = !(await endsWithNewline(this.file, size));
    }
    this.totals = totals;
    this.lines = lines;
    // A torn last line is cut off by the next append, should the rewrite below fail.
    this.bytes = torn ? size - Buffer.byteLength(lastLine) : size;
    this.loaded = true;
    if (bad > 0) this.warn(this.file, `skipped ${bad} unreadable line(s) of the spend ledger${torn ? " (a write cut off by a crash)" : ""}`);
    if (torn || bad > 0 || lines > 2 * totals.size + 64) await this.tidy();
  }

  /** Rewrites the file, or leaves it as it is (still right, only longer) and says why. */
  private async tidy(): Promise<void> {
    await this.rewrite().catch((error: unknown) => this.warn(this.file, `could not rewrite the spend ledger compactly (it stays as it is): ${(error as Error).message}`));
  }

  /** The file as one line per owner-day and per live session's mark, replacing it whole (a crash leaves the old one or the new one). */
  private async rewrite(): Promise<void> {
    for (const id of [...this.totals.marks.keys()]) if (!this.keepsMark(id)) this.totals.marks.delete(id);
    const lines = [...this.totals.rows().map((row) => ({ rows: [row], marks: [] })), ...[...this.totals.marks.values()].map((mark) => ({ rows: [], marks: [mark] }))];
    this.bytes = await this.replace(this.file, lines.map((line) => `${JSON.stringify(line)}\n`).join(""));
    await syncDirectory(path.dirname(this.file));
    this.lines = lines.length;
  }
}

/** One write's line, or null when any of it is unreadable (the whole line is dropped, as it was never acknowledged). */
function parseLine(line: string): { rows: SpendRow[]; marks: SpendMark[] } | null {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return null;
  }
  const entry = value as { rows?: unknown; marks?: unknown } | null;
  if (typeof entry !== "object" || entry === null || !Array.isArray(entry.rows) || !Array.isArray(entry.marks)) return null;
  const rows = entry.rows.map(parseSpendRow);
  const marks = entry.marks.map(parseSpendMark);
  if (rows.includes(null) || marks.includes(null)) return null;
  return { rows: rows as SpendRow[], marks: marks as SpendMark[] };
}

async function endsWithNewline(file: string, size: number): Promise<boolean> {
  const stream = createReadStream(file, { start: size - 1, end: size - 1 });
  for await (const chunk of stream as AsyncIterable<Buffer>) return chunk[0] === 0x0a;
  return false;
}
