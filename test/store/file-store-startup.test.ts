import { appendFileSync, cpSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { FileSessionStore } from "../../src/store/file-store.js";
import { forEachFolder, type FolderReads } from "../../src/store/folder-reads.js";
import type { LoadResult } from "../../src/store/types.js";
import { makeTempDir, removeTempDirs } from "../helpers/harness.js";
import { events, messages, recordWith } from "./builders.js";

afterAll(removeTempDirs);

const TEMPLATE = "s000";
const id = (n: number) => `s${String(n).padStart(3, "0")}`;

/**
 * A data directory of `count` sessions copied from one saved through the store, with one folder in
 * each way start-up has to deal with (the cases named below).
 */
async function seeded(count: number): Promise<string> {
  const dir = await makeTempDir();
  const store = new FileSessionStore(dir);
  await store.save({ ...recordWith(TEMPLATE, messages(3), 5), owner: "o0" }, events(TEMPLATE, 1, 5));
  await store.close();
  const sessions = path.join(dir, "sessions");
  const template = path.join(sessions, TEMPLATE);
  for (let n = 1; n < count; n++) {
    const folder = path.join(sessions, id(n));
    mkdirSync(folder);
    for (const name of readdirSync(template)) {
      writeFileSync(path.join(folder, name), readFileSync(path.join(template, name), "utf8").replaceAll(TEMPLATE, id(n)).replaceAll('"owner":"o0"', `"owner":"o${n % 7}"`));
    }
  }
  const at = (n: number, name: string) => path.join(sessions, id(n), name);
  const snapshot = (n: number) => JSON.parse(readFileSync(at(n, "snapshot.json"), "utf8")) as Record<string, unknown>;
  // A damaged messages line, and a messages file that is gone.
  writeFileSync(at(10, "messages.1.jsonl"), readFileSync(at(10, "messages.1.jsonl"), "utf8").replace(/\n[^\n]*\n/, "\n{damaged\n"));
  rmSync(at(11, "messages.1.jsonl"));
  // A torn append to an events file, and whole events appended after the snapshot was written.
  appendFileSync(at(20, "events.1.jsonl"), '{"sessionId":"s020","seq');
  appendFileSync(at(21, "events.1.jsonl"), events(id(21), 6, 7).map((e) => `${JSON.stringify(e)}\n`).join(""));
  // Leftovers of interrupted writes.
  writeFileSync(at(30, "snapshot.json.1234.tmp"), "partial");
  writeFileSync(at(31, "messages.9.jsonl"), "{}\n");
  // A snapshot of another session, one that cannot be read, and a folder without one.
  writeFileSync(at(40, "snapshot.json"), readFileSync(at(41, "snapshot.json")));
  writeFileSync(at(42, "snapshot.json"), "{not json");
  rmSync(at(43, "snapshot.json"));
  // A snapshot whose fields come in another order (the workers do not recognise its head).
  const reordered = snapshot(50);
  writeFileSync(at(50, "snapshot.json"), JSON.stringify({ record: reordered.record, ...reordered }));
  // No messages counted, and no events file at all.
  writeFileSync(at(60, "snapshot.json"), JSON.stringify({ ...snapshot(60), messages: { generation: 1, count: 0 } }));
  rmSync(at(61, "events.1.jsonl"));
  writeFileSync(at(61, "snapshot.json"), JSON.stringify({ ...snapshot(61), events: { generation: 1 } }));
  // An entry with a session's name that is not a folder, and a folder holding another session's files.
  renameSync(path.join(sessions, id(70)), path.join(sessions, "gone"));
  writeFileSync(path.join(sessions, id(70)), "not a folder");
  return dir;
}

/** What a load gave, with the directory's own path taken out of locations. */
function portable(dir: string, result: LoadResult) {
  const relative = (failure: { location: string; error: string }) => ({
    location: path.relative(dir, failure.location),
    error: failure.error.replaceAll(dir, "<dir>"),
  });
  return { records: result.records, failures: result.failures.map(relative), warnings: (result.warnings ?? []).map(relative) };
}

/** Every file left under the sessions folder, with its contents. */
function files(dir: string): Record<string, string> {
  const sessions = path.join(dir, "sessions");
  const all: Record<string, string> = {};
  for (const name of readdirSync(sessions, { recursive: true, encoding: "utf8" })) {
    const file = path.join(sessions, name);
    if (statSync(file).isFile()) all[name] = readFileSync(file, "utf8");
  }
  return all;
}

describe("start-up with worker threads reading the session folders ahead", () => {
  it("loads exactly what the main thread alone loads, damage, leftovers and failures included", async () => {
    const original = await seeded(700);
    const copy = await makeTempDir();
    cpSync(original, copy, { recursive: true });
    const alone = new FileSessionStore(original, { startupThreads: 0 });
    const threaded = new FileSessionStore(copy, { startupThreads: 2 });
    const [a, b] = [portable(original, await alone.loadAll()), portable(copy, await threaded.loadAll())];
    // Not s040 and s042 (they fail), s043 (no snapshot: removed), s070 (not a folder; its files moved to "gone", which fails).
    expect(a.records).toHaveLength(696);
    expect(b).toEqual(a);
    expect(a.failures.map((f) => f.location).sort()).toEqual(["sessions/gone", "sessions/s040", "sessions/s042"]);
    expect(a.records.find((r) => r.id === id(10))!.messages).toEqual(messages(1));
    expect(a.records.find((r) => r.id === id(11))!.messages).toEqual([]);
    expect(a.records.find((r) => r.id === id(60))!.messages).toEqual([]);
    expect((await threaded.readEvents(id(21), 0, 100)).events.map((e) => e.sequence)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    await Promise.all([alone.close(), threaded.close()]);
    expect(files(copy)).toEqual(files(original));
  });
});

describe("forEachFolder", () => {
  /** What each folder's reads give, as the store asks for them. */
  async function readAll(dir: string, ids: string[], threads: number, mainReads: boolean) {
    const seen: unknown[] = [];
    const ask = (reads: FolderReads, name: string, how: "file" | "size") => {
      try {
        return how === "file" ? (reads.file(name)?.toString("utf8") ?? null) : reads.size(name);
      } catch (error) {
        return `throws ${(error as NodeJS.ErrnoException).code}`;
      }
    };
    let prefetched = 0;
    let withoutConfig = 0;
    await forEachFolder(path.join(dir, "sessions"), ids, { threads, mainReads, minFolders: 1 }, (folderId, folder, reads) => {
      if (reads.constructor.name !== "DirectReads") prefetched++;
      // A worker's snapshot text whose config it left out (the main thread parses each config text once).
      if (((reads as unknown as { data?: { config: number } }).data?.config ?? -1) >= 0) withoutConfig++;
      try {
        seen.push([folderId, folder, reads.snapshot(), reads.listing().sort()]);
      } catch (error) {
        seen.push([folderId, `throws ${(error as NodeJS.ErrnoException).code}`]);
        return;
      }
      for (const name of ["messages.1.jsonl", "messages.9.jsonl", "events.1.jsonl", "nothing"]) seen.push(ask(reads, name, "file"), ask(reads, name, "size"));
    });
    return { seen, prefetched, withoutConfig };
  }

  it("gives the same reads whether a worker or the main thread made them", async () => {
    const dir = await seeded(300);
    const ids = [...readdirSync(path.join(dir, "sessions")).filter((name) => name !== "wal.d").sort(), "missing"];
    const direct = await readAll(dir, ids, 0, true);
    const workers = await readAll(dir, ids, 2, false);
    expect(direct.prefetched).toBe(0);
    // Every folder the workers could read came from them (not the one that is gone, nor the file).
    expect(workers.prefetched).toBe(ids.length - 2);
    // Snapshots as encodeSnapshot writes them match the workers' pattern: a change of that layout
    // would silently turn the shortcut off.
    expect(workers.withoutConfig).toBeGreaterThan((ids.length - 2) / 2);
    expect(workers.seen).toEqual(direct.seen);
  });
});
