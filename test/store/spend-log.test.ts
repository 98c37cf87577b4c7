import { appendFile, readFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { SpendLog } from "../../src/store/spend-log.js";
import { makeTempDir, removeTempDirs } from "../helpers/harness.js";

afterAll(removeTempDirs);

const row = (owner: string, day: string, costUsd: number) => ({ owner, day, inputTokens: 1, outputTokens: 2, costUsd });
const lines = async (file: string) => (await readFile(file, "utf8")).split("\n").filter((line) => line !== "");

describe("the file store's spend ledger", () => {
  it("drops a line a crash cut off (never acknowledged), keeps the rest and rewrites the file whole", async () => {
    const file = path.join(await makeTempDir(), "sessions", "spend.log");
    const first = new SpendLog(file);
    await first.addSpend([row("alice", "2026-11-01", 0.5)]);
    await first.addSpend([row("alice", "2026-11-02", 0.25)]);
    await first.close();
    await appendFile(file, '{"owner":"alice","day":"2026-11-02","inputTo');

    const warnings: string[] = [];
    const second = new SpendLog(file, (_location, error) => warnings.push(error));
    expect(await second.spendOf("alice", "")).toEqual({ inputTokens: 2, outputTokens: 4, costUsd: 0.75 });
    expect(warnings).toEqual(["skipped 1 unreadable line(s) of the spend ledger (a write cut off by a crash)"]);
    expect((await readFile(file, "utf8")).endsWith("\n")).toBe(true);
    // Appends after the repair are whole lines again.
    await second.addSpend([row("alice", "2026-11-02", 0.25)]);
    expect(await new SpendLog(file).spendOf("alice", "2026-11-02")).toEqual({ inputTokens: 2, outputTokens: 4, costUsd: 0.5 });
  });

  it("stays one line per owner and day, give or take, however many model calls are added", async () => {
    const file = path.join(await makeTempDir(), "spend.log");
    const log = new SpendLog(file);
    // Two owner-days: past 2 x 2 + 64 lines the file is rewritten as two, while it runs.
    for (let i = 0; i < 100; i++) await log.addSpend([row(i % 2 === 0 ? "a" : "b", "2026-11-01", 0.5)]);
    expect(await lines(file)).toHaveLength(100 - 69 + 2);
    expect(await log.spendOf("a", "")).toEqual({ inputTokens: 50, outputTokens: 100, costUsd: 25 });
    await log.close();

    const again = new SpendLog(file);
    expect(await again.spendOf("a", "")).toEqual({ inputTokens: 50, outputTokens: 100, costUsd: 25 });
    expect(await again.spendOf("b", "2026-11-01")).toEqual({ inputTokens: 50, outputTokens: 100, costUsd: 25 });
  });

  it("an append that failed halfway is cut off by the next one, which is kept whole", async () => {
    const dir = await makeTempDir();
    const file = path.join(dir, "spend.log");
    const log = new SpendLog(file);
    await log.addSpend([row("alice", "2026-11-01", 1)]);
    // What a write cut short by a full disk leaves: part of a line, never acknowledged.
    await appendFile(file, '{"owner":"alice","day":"2026-11-01","inputTok');
    await log.addSpend([row("alice", "2026-11-01", 2)]);
    const warnings: string[] = [];
    expect(await new SpendLog(file, (_location, error) => warnings.push(error)).spendOf("alice", "")).toEqual({ inputTokens: 2, outputTokens: 4, costUsd: 3 });
    expect(warnings).toEqual([]);
  });

  it("a rewrite that fails changes nothing: no addition counted twice, no torn line left in the way", async () => {
    const file = path.join(await makeTempDir(), "spend.log");
    const warnings: string[] = [];
    const failing = async () => {
      throw new Error("no space left on device (simulated)");
    };
    const log = new SpendLog(file, (_location, error) => warnings.push(error), failing);
    // Past 2 x 1 + 64 lines a rewrite is due, and fails: each addition still counts once.
    for (let i = 0; i < 70; i++) await log.addSpend([row("a", "2026-11-01", 1)]);
    expect(await log.spendOf("a", "")).toMatchObject({ costUsd: 70 });
    expect(warnings.at(-1)).toMatch(/could not rewrite the spend ledger compactly \(it stays as it is\): no space left/);
    await log.close();

    // A torn last line and a failing rewrite at load: the next append cuts the torn part off.
    await appendFile(file, '{"owner":"a","day":"2026-11-01","inputTo');
    const reloaded = new SpendLog(file, () => {}, failing);
    await reloaded.addSpend([row("a", "2026-11-01", 5)]);
    expect(await new SpendLog(file).spendOf("a", "")).toMatchObject({ costUsd: 75 });
  });
});
