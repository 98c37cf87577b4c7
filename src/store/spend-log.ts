import { mkdir, readFile } from "node:fs/promises";
import path from "node:path";
import type { UsageTotals } from "../session/types.js";
import { syncDirectory, writeFileAtomic, writeFileSynced } from "./files.js";
import { parseSpendRow, SpendTotals, type SpendLedger, type SpendRow } from "./spend.js";

/**
 * The file store's spend ledger: one JSON line per owner and day added, appended and fsynced, and
 * added up in memory when first read. When the lines outnumber the owner-days they add up to (or
 * a crash tore the last one), loading rewrites the file as one line per owner and day.
 */
export class SpendLog implements SpendLedger {
  private totals = new SpendTotals();
  private loaded: Promise<void> | null = null;
  /** Appends one after another, so that lines never interleave. */
  private appending: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly file: string,
    private readonly warn: (location: string, error: string) => void = () => {},
  ) {}

  async addSpend(rows: readonly SpendRow[]): Promise<void> {
    if (rows.length === 0) return;
    await this.load();
    const text = rows.map((row) => `${JSON.stringify(row)}\n`).join("");
    const append = this.appending.then(() => writeFileSynced(this.file, text, "a"));
    this.appending = append.catch(() => {});
    await append;
    // Counted once stored: a failed append is retried by the caller, and must not count twice.
    for (const row of rows) this.totals.add(row);
  }

  async spendOf(owner: string, fromDay: string): Promise<UsageTotals> {
    await this.load();
    return this.totals.sum(owner, fromDay);
  }

  /** Lets go of what was read; the next call reads the file again. */
  async close(): Promise<void> {
    await this.appending;
    this.loaded = null;
  }

  private load(): Promise<void> {
    this.loaded ??= this.read().catch((error: unknown) => {
      this.loaded = null;
      throw error;
    });
    return this.loaded;
  }

  private async read(): Promise<void> {
    await mkdir(path.dirname(this.file), { recursive: true, mode: 0o700 });
    const text = await readFile(this.file, "utf8").catch((error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT") return "";
      throw error;
    });
    const totals = new SpendTotals();
    let lines = 0;
    let bad = 0;
    for (const line of text.split("\n")) {
      if (line === "") continue;
      lines++;
      let row: SpendRow | null = null;
      try {
        row = parseSpendRow(JSON.parse(line));
      } catch {
        row = null;
      }
      if (row) totals.add(row);
      else bad++;
    }
    this.totals = totals;
    const torn = text !== "" && !text.endsWith("\n");
    if (bad > 0) this.warn(this.file, `skipped ${bad} unreadable line(s) of the spend ledger${torn ? " (a write cut off by a crash)" : ""}`);
    if (torn || bad > 0 || lines > 2 * totals.size + 64) {
      await writeFileAtomic(this.file, totals.rows().map((row) => `${JSON.stringify(row)}\n`).join(""));
      await syncDirectory(path.dirname(this.file));
    }
  }
}
