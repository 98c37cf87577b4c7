import { mkdir, open, readdir, readFile, rename, rmdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { FileSessionStore, type FileStoreOptions } from "../../src/store/file-store.js";
import { encodeSnapshot } from "../../src/store/session-files.js";
import type { LoadFailure } from "../../src/store/types.js";
import { makeTempDir, removeTempDirs } from "../helpers/harness.js";
import { events, messages, recordWith } from "./builders.js";

afterAll(removeTempDirs);
afterEach(() => vi.restoreAllMocks());

/** A restart after a crash: a new store on the same folder, the old one never closed. */
const reopen = (dir: string, options: FileStoreOptions = {}) => new FileSessionStore(dir, options);
const noCheckpoints = { checkpointIntervalMs: 60_000 };

/** Replaces line `index` (0-based) of a file with `replace(line)`, keeping its newline. */
async function damageLine(file: string, index: number, replace: (line: string) => string): Promise<void> {
  const lines = (await readFile(file, "utf8")).split("\n");
  lines[index] = replace(lines[index]!);
  await writeFile(file, lines.join("\n"));
}

async function onlySegment(dir: string): Promise<string> {
  const segments = await readdir(path.join(dir, "sessions", "wal.d"));
  expect(segments).toHaveLength(1);
  return path.join(dir, "sessions", "wal.d", segments[0]!);
}

const sequences = async (store: FileSessionStore, id: string) => (await store.readEvents(id, 0, 100)).events.map((e) => e.sequence);

describe("a damaged entry in the middle of the write-ahead log", () => {
  // a: 2 messages, b: 1, a: 4, b: 2, a: 6; the third line (a's second save) is then damaged.
  async function walWithFiveSaves(): Promise<{ dir: string; segment: string }> {
    const dir = await makeTempDir();
    const store = new FileSessionStore(dir, noCheckpoints);
    await store.save(recordWith("a", messages(2)), []);
    await store.save(recordWith("b", messages(1)), []);
    await store.save(recordWith("a", messages(4)), []);
    await store.save(recordWith("b", messages(2)), []);
    await store.save(recordWith("a", messages(6)), []);
    return { dir, segment: await onlySegment(dir) };
  }

  it.each([
    ["its head readable", (line: string) => `${line.slice(0, 60)}\u0000\u0000${line.slice(70)}`],
    ["nothing readable", (line: string) => "\u0000".repeat(line.length)],
  ])("stops that session at its last consistent state, and applies the other sessions' entries (%s)", async (_case, replace) => {
    const { dir, segment } = await walWithFiveSaves();
    await damageLine(segment, 2, replace);

    const { records, failures, warnings } = await reopen(dir).loadAll();
    expect(failures).toEqual([]);
    expect(records.map((r) => [r.id, r.messages.length])).toEqual([
      ["a", 2],
      ["b", 2],
    ]);
    expect(records[0]!.messages).toEqual(messages(2));
    const about = warnings!.filter((w) => w.error.includes("session a"));
    expect(about).toHaveLength(1);
    expect(about[0]!.location).toBe(segment);
    // It names the session and the file, never what the entry held.
    for (const warning of warnings!) expect(warning.error).not.toContain("message ");
    // The session goes on from there, and comes back as it goes on.
    const restarted = reopen(dir);
    await restarted.loadAll();
    await restarted.save(recordWith("a", messages(3)), []);
    expect((await reopen(dir).loadAll()).records[0]!.messages).toEqual(messages(3));
  });

  it("reports an entry that cannot be read, and loads the store, when it is valid JSON of the wrong shape", async () => {
    const { dir, segment } = await walWithFiveSaves();
    await damageLine(segment, 2, (line) => line.replace(/"messages":\[/, '"messages":7,"x":['));
    const { records, failures, warnings } = await reopen(dir).loadAll();
    expect(failures).toEqual([]);
    expect(records.map((r) => [r.id, r.messages.length])).toEqual([
      ["a", 2],
      ["b", 2],
    ]);
    expect(warnings!.filter((w) => w.error.includes("session a"))).toHaveLength(1);
  });
});

describe("a damaged line in the middle of a session's files", () => {
  it("messages: the session keeps the messages before it, never the log's entries after a hole, and the file is kept aside", async () => {
    const dir = await makeTempDir();
    const store = new FileSessionStore(dir, noCheckpoints);
    await store.save(recordWith("a", messages(4)), []);
    await store.save(recordWith("b", messages(2)), []);
    await store.checkpoint();
    // Logged, not yet in the session's files.
    await store.save(recordWith("a", messages(6)), []);
    const folder = path.join(dir, "sessions", "a");
    await damageLine(path.join(folder, "messages.1.jsonl"), 1, (line) => `${line.slice(0, 20)}\u0000${line.slice(21)}`);

    const { records, failures, warnings } = await reopen(dir).loadAll();
    expect(failures).toEqual([]);
    expect(records.map((r) => [r.id, r.messages.length])).toEqual([
      ["a", 1],
      ["b", 2],
    ]);
    expect(records[0]!.messages).toEqual(messages(1));
    const damaged = warnings!.find((w) => path.basename(w.location) === "messages.1.jsonl");
    expect(damaged?.error).toMatch(/session a: line 2 of messages\.1\.jsonl/);
    // The rest of the file is kept for whoever repairs it; the session's files hold what it came back with.
    expect((await readdir(folder)).sort()).toEqual(["messages.1.jsonl.damaged", "messages.2.jsonl", "snapshot.json"]);
    const again = reopen(dir);
    const loaded = await again.loadAll();
    expect(loaded.warnings).toEqual([]);
    expect(loaded.records[0]!.messages).toEqual(messages(1));
    await again.save(recordWith("a", messages(3)), []);
    expect((await reopen(dir).loadAll()).records[0]!.messages).toEqual(messages(3));
  });

  it.each([
    ["read whole at start-up", undefined],
    ["read when first needed", "x".repeat(100_000)],
  ])("events: the newest events after it are kept (no gap in what is retained), and the file is rewritten without it (%s)", async (_case, text) => {
    const dir = await makeTempDir();
    const store = new FileSessionStore(dir, noCheckpoints);
    await store.save(recordWith("a", messages(2), 6), events("a", 1, 6, text));
    await store.close();
    const folder = path.join(dir, "sessions", "a");
    await damageLine(path.join(folder, "events.1.jsonl"), 2, (line) => line.slice(0, 30));

    const warnings: LoadFailure[] = [];
    const restarted = reopen(dir, { ...noCheckpoints, onWarning: (w) => warnings.push(w) });
    const loaded = await restarted.loadAll();
    expect(loaded.failures).toEqual([]);
    expect(loaded.records[0]!.messages).toEqual(messages(2));
    expect(await restarted.readEvents("a", 0, 100)).toEqual({ events: events("a", 4, 6, text), oldest: 4 });
    // Found at start-up (a small file is read whole) or when first read: said once either way.
    warnings.push(...loaded.warnings!);
    expect(warnings.map((w) => [path.basename(w.location), w.error])).toEqual([["events.1.jsonl", expect.stringMatching(/session a: line 3 of events\.1\.jsonl/)]]);

    await restarted.save(recordWith("a", messages(2), 8), events("a", 7, 8));
    await restarted.close();
    expect((await readdir(folder)).sort()).toEqual(["events.1.jsonl.damaged", "events.2.jsonl", "messages.1.jsonl", "snapshot.json"]);
    const again = reopen(dir, { onWarning: (w) => warnings.push(w) });
    expect((await again.loadAll()).warnings).toEqual([]);
    expect(await sequences(again, "a")).toEqual([4, 5, 6, 7, 8]);
    expect(warnings).toHaveLength(1);
  });
});

describe("failed writes", () => {
  it("a session deleted after its first write failed does not come back", async () => {
    const dir = await makeTempDir();
    const store = new FileSessionStore(dir, noCheckpoints);
    await store.save(recordWith("kept", messages(1)), []);
    // The first batch with "ghost" reaches the file, its fsync fails: the save is not acknowledged.
    const probe = await open(path.join(dir, "probe"), "w");
    const handles = Object.getPrototypeOf(probe) as { datasync: () => Promise<void> };
    await probe.close();
    vi.spyOn(handles, "datasync").mockRejectedValueOnce(Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" }));
    await expect(store.save(recordWith("ghost", messages(2)), [])).rejects.toThrow("EIO");
    await store.delete("ghost");

    expect((await reopen(dir).loadAll()).records.map((r) => r.id)).toEqual(["kept"]);
    await store.checkpoint();
    expect((await reopen(dir).loadAll()).records.map((r) => r.id)).toEqual(["kept"]);
    expect(await readdir(path.join(dir, "sessions"))).not.toContain("ghost");
  });

  it("a checkpoint that cannot write a session's files keeps the log that holds its changes", async () => {
    const dir = await makeTempDir();
    const warnings: LoadFailure[] = [];
    const store = new FileSessionStore(dir, { ...noCheckpoints, onWarning: (w) => warnings.push(w) });
    await store.save(recordWith("a", messages(2)), []);
    await store.save(recordWith("b", messages(1)), []);
    await store.checkpoint();
    await store.save(recordWith("a", messages(4)), []);
    await store.save(recordWith("b", messages(3)), []);
    // a's messages file cannot be written (a folder in its place).
    const file = path.join(dir, "sessions", "a", "messages.1.jsonl");
    await rename(file, `${file}.aside`);
    await mkdir(file);
    expect(await store.checkpoint()).toBe(false);
    expect(warnings.map((w) => path.basename(w.location))).toEqual(["a"]);
    expect(await readdir(path.join(dir, "sessions", "wal.d"))).not.toEqual([]);

    // Repaired, then a crash: the log still brings a's change back.
    await rmdir(file);
    await rename(`${file}.aside`, file);
    const restarted = reopen(dir);
    const { records } = await restarted.loadAll();
    expect(records.map((r) => [r.id, r.messages.length])).toEqual([
      ["a", 4],
      ["b", 3],
    ]);
    expect(await readdir(path.join(dir, "sessions", "wal.d"))).toEqual([]);
  });
});

describe("a session that cannot be restored", () => {
  const walLinesOf = async (dir: string, id: string) =>
    (await readFile(await onlySegment(dir), "utf8")).split("\n").filter((line) => line.startsWith("{") && line.includes(`"id":"${id}"`));

  it("keeps its write-ahead-log entries verbatim in its folder before the log lets them go, and the other sessions are restored", async () => {
    const dir = await makeTempDir();
    const store = new FileSessionStore(dir, noCheckpoints);
    await store.save(recordWith("a", messages(2)), []);
    await store.save(recordWith("b", messages(1)), []);
    await store.checkpoint();
    // Logged, not yet in the sessions' files; then a crash.
    await store.save(recordWith("a", messages(4), 3), events("a", 1, 3));
    await store.save(recordWith("b", messages(3)), []);
    await store.save(recordWith("a", messages(6)), []);
    await store.save(recordWith("c", messages(2)), []);
    const unapplied = await walLinesOf(dir, "a");
    expect(unapplied).toHaveLength(2);
    const folder = path.join(dir, "sessions", "a");
    await writeFile(path.join(folder, "snapshot.json"), '{"format":"agentd-session-snap');
    const before = (await readdir(folder)).sort();
    const snapshot = await readFile(path.join(folder, "snapshot.json"));
    const messagesBefore = await readFile(path.join(folder, "messages.1.jsonl"));

    const { records, failures, warnings } = await reopen(dir).loadAll();
    expect(failures.map((f) => f.location)).toEqual([folder]);
    expect(records.map((r) => [r.id, r.messages.length])).toEqual([
      ["b", 3],
      ["c", 2],
    ]);
    const side = path.join(folder, "unapplied-wal.1.jsonl");
    expect(await readFile(side, "utf8")).toBe(`${unapplied.join("\n")}\n`);
    expect(await readdir(path.join(dir, "sessions", "wal.d"))).toEqual([]);
    // The damaged session's files are left as they were.
    expect((await readdir(folder)).sort()).toEqual([...before, "unapplied-wal.1.jsonl"].sort());
    expect(await readFile(path.join(folder, "snapshot.json"))).toEqual(snapshot);
    expect(await readFile(path.join(folder, "messages.1.jsonl"))).toEqual(messagesBefore);
    // One warning names the session and the file, never what the entries held.
    const about = warnings!.filter((w) => w.error.includes("session a"));
    expect(about).toEqual([{ location: side, error: expect.stringContaining("unapplied-wal.1.jsonl") as string }]);
    for (const warning of warnings!) expect(warning.error).not.toContain("message ");

    // A second start-up: the same failure, nothing kept twice, nothing to repair.
    const again = await reopen(dir).loadAll();
    expect(again.failures).toEqual(failures);
    expect(again.warnings).toEqual([]);
    expect(again.records.map((r) => [r.id, r.messages.length])).toEqual([
      ["b", 3],
      ["c", 2],
    ]);
    expect((await readdir(folder)).sort()).toEqual([...before, "unapplied-wal.1.jsonl"].sort());
    expect(await readFile(side, "utf8")).toBe(`${unapplied.join("\n")}\n`);

    // Repaired by hand, the session loads; its checkpoints (a new generation here) leave the kept entries alone.
    const { messages: _none, ...fields } = recordWith("a", []);
    await writeFile(path.join(folder, "snapshot.json"), encodeSnapshot(1, { generation: 1, count: 2 }, { generation: 1 }, JSON.stringify(fields)));
    const repaired = reopen(dir);
    expect((await repaired.loadAll()).records[0]!.messages).toEqual(messages(2));
    await repaired.save(recordWith("a", [messages(3)[2]!]), []);
    await repaired.close();
    const last = await reopen(dir).loadAll();
    expect(last.warnings).toEqual([]);
    expect(last.records[0]!.messages).toEqual([messages(3)[2]]);
    expect((await readdir(folder)).sort()).toEqual(["messages.2.jsonl", "snapshot.json", "unapplied-wal.1.jsonl"]);
    expect(await readFile(side, "utf8")).toBe(`${unapplied.join("\n")}\n`);
  });

  it("keeps the entries of a session only the log holds, which comes back invalid, in a folder later start-ups keep", async () => {
    const dir = await makeTempDir();
    const store = new FileSessionStore(dir, noCheckpoints);
    await store.save(recordWith("a", messages(1)), []);
    await store.save({ ...recordWith("x", messages(2)), owner: 5 as unknown as string }, []);
    const unapplied = await walLinesOf(dir, "x");

    const { records, failures, warnings } = await reopen(dir).loadAll();
    const folder = path.join(dir, "sessions", "x");
    expect(records.map((r) => r.id)).toEqual(["a"]);
    expect(failures.map((f) => f.location)).toEqual([folder]);
    expect(warnings!.map((w) => path.relative(dir, w.location))).toEqual([path.join("sessions", "x", "unapplied-wal.1.jsonl")]);
    expect(await readdir(folder)).toEqual(["unapplied-wal.1.jsonl"]);
    expect(await readFile(path.join(folder, "unapplied-wal.1.jsonl"), "utf8")).toBe(`${unapplied.join("\n")}\n`);

    const again = await reopen(dir).loadAll();
    expect(again.records.map((r) => r.id)).toEqual(["a"]);
    expect(again.failures).toEqual([]);
    expect(again.warnings!.map((w) => [w.location, w.error])).toEqual([[folder, expect.stringContaining("unapplied-wal.1.jsonl")]]);
    expect(await readdir(folder)).toEqual(["unapplied-wal.1.jsonl"]);
  });

  it("keeps the log while its entries cannot be kept, and keeps them once they can", async () => {
    const dir = await makeTempDir();
    const store = new FileSessionStore(dir, noCheckpoints);
    await store.save(recordWith("a", messages(1)), []);
    await store.checkpoint();
    await store.save(recordWith("a", messages(2)), []);
    const unapplied = await walLinesOf(dir, "a");
    const folder = path.join(dir, "sessions", "a");
    await writeFile(path.join(folder, "snapshot.json"), "{");
    // In the way: a folder where the kept entries would be read.
    await mkdir(path.join(folder, "unapplied-wal.1.jsonl"));

    const first = await reopen(dir).loadAll();
    expect(first.warnings!.map((w) => [w.location, w.error])).toEqual([[folder, expect.stringContaining("the log keeps them")]]);
    expect(await readdir(path.join(dir, "sessions", "wal.d"))).toHaveLength(1);

    await rmdir(path.join(folder, "unapplied-wal.1.jsonl"));
    const second = await reopen(dir).loadAll();
    expect(second.warnings!.map((w) => path.basename(w.location))).toEqual(["unapplied-wal.1.jsonl"]);
    expect(await readFile(path.join(folder, "unapplied-wal.1.jsonl"), "utf8")).toBe(`${unapplied.join("\n")}\n`);
    expect(await readdir(path.join(dir, "sessions", "wal.d"))).toEqual([]);
  });
});

describe("a stored number too large to send", () => {
  it("is reported like any damage: that session is not restored, the others are", async () => {
    const dir = await makeTempDir();
    const store = new FileSessionStore(dir);
    await store.save(recordWith("a", messages(1)), []);
    await store.save(recordWith("b", messages(1)), []);
    await store.close();
    const snapshot = path.join(dir, "sessions", "a", "snapshot.json");
    await writeFile(snapshot, (await readFile(snapshot, "utf8")).replace(/("record":\{.*?"lastSequence":)\d+/, "$11e300"));

    const { records, failures } = await reopen(dir).loadAll();
    expect(records.map((r) => r.id)).toEqual(["b"]);
    expect(failures).toHaveLength(1);
    expect(failures[0]!.error).toContain("lastSequence must be an integer from 0 to 2^53 - 1");
  });
});

describe("an events file as its snapshot left it", () => {
  it("is not read at start-up, and later events follow it exactly", async () => {
    const dir = await makeTempDir();
    const first = new FileSessionStore(dir);
    await first.save(recordWith("a", messages(1), 3), events("a", 1, 3));
    await first.close();
    const snapshot = JSON.parse(await readFile(path.join(dir, "sessions", "a", "snapshot.json"), "utf8")) as { events: { bytes: number; lastSequence: number } };
    expect(snapshot.events.lastSequence).toBe(3);
    expect(snapshot.events.bytes).toBeGreaterThan(0);

    const second = reopen(dir);
    await second.loadAll();
    await second.save(recordWith("a", messages(1), 5), events("a", 4, 5));
    await second.close();
    const third = reopen(dir);
    await third.loadAll();
    expect(await sequences(third, "a")).toEqual([1, 2, 3, 4, 5]);
    await third.close();
  });
});
