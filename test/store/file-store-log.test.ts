import { appendFile, mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { FileSessionStore } from "../../src/store/file-store.js";
import { makeTempDir, removeTempDirs } from "../helpers/harness.js";
import { sessionRecord } from "../helpers/records.js";
import { event, events, message, messages, recordWith } from "./builders.js";

afterAll(removeTempDirs);

/** A restart after a crash: a new store on the same folder, the old one never closed. */
const reopen = (dir: string, options = {}) => new FileSessionStore(dir, options);

async function lines(file: string): Promise<string[]> {
  return (await readFile(file, "utf8")).split("\n").filter(Boolean);
}

describe("append-only storage", () => {
  it("a turn costs the same to store for a session of 10,000 messages as for one of 10", async () => {
    async function bytesPerTurn(size: number): Promise<number> {
      const dir = await makeTempDir();
      const store = new FileSessionStore(dir);
      const history = messages(size);
      let sequence = 1000;
      await store.save(recordWith("s", history, sequence), []);
      await store.checkpoint();
      const before = store.stats.wal.bytes + store.stats.checkpointBytes;
      const turns = 20;
      for (let turn = 0; turn < turns; turn++) {
        history.push(message(history.length));
        await store.save(recordWith("s", [...history], ++sequence), events("s", sequence - 5, sequence));
        history.push(message(history.length));
        sequence += 10;
        await store.save(recordWith("s", [...history], sequence), events("s", sequence - 9, sequence));
        if (turn % 5 === 4) await store.checkpoint();
      }
      const perTurn = (store.stats.wal.bytes + store.stats.checkpointBytes - before) / turns;
      await store.close();
      // And it all comes back.
      const [restored] = (await reopen(dir).loadAll()).records;
      expect(restored!.messages).toHaveLength(size + 2 * turns);
      return perTurn;
    }
    const small = await bytesPerTurn(10);
    const large = await bytesPerTurn(10_000);
    expect(large / small).toBeLessThan(1.2);
    expect(large).toBeLessThan(10_000);
  });

  it("many sessions saving at once share fsyncs (group commit)", async () => {
    const store = new FileSessionStore(await makeTempDir());
    await store.loadAll();
    await Promise.all(Array.from({ length: 100 }, (_, i) => store.save(recordWith(`s${i}`, messages(2)), events(`s${i}`, 1, 3))));
    expect(store.stats.wal.syncs).toBeLessThanOrEqual(3);
    const syncs = store.stats.wal.syncs;
    await Promise.all(Array.from({ length: 100 }, (_, i) => store.save(recordWith(`s${i}`, messages(4), 5), events(`s${i}`, 4, 5))));
    expect(store.stats.wal.syncs - syncs).toBeLessThanOrEqual(3);
  });

  it("stores the transcript as it was when save was called, though the session goes on appending to the same array", async () => {
    const dir = await makeTempDir();
    const store = new FileSessionStore(dir, { checkpointIntervalMs: 60_000 });
    const transcript = messages(2);
    const first = store.save(recordWith("a", transcript, 2), []);
    // Appended while the first save waits for the store to open and for its turn in the log.
    transcript.push(message(2));
    const second = store.save(recordWith("a", transcript, 3), []);
    transcript.push(message(3));
    await first;
    await second;

    const { records } = await reopen(dir).loadAll();
    expect(records[0]!.messages.map((m) => m.id)).toEqual(["m0", "m1", "m2"]);
    expect(records[0]!.lastSequence).toBe(3);
  });

  it("restores from the write-ahead log after a crash, before any checkpoint", async () => {
    const dir = await makeTempDir();
    const store = new FileSessionStore(dir, { checkpointIntervalMs: 60_000 });
    await store.save(recordWith("a", messages(3), 3), events("a", 1, 3));
    await store.save({ ...recordWith("a", messages(5), 8), labels: { k: "v" } }, events("a", 4, 8));
    await store.save(recordWith("b", messages(1), 1), []);
    expect(await readdir(path.join(dir, "sessions"))).toEqual(["wal.d"]);

    const restarted = reopen(dir);
    const { records, failures, warnings } = await restarted.loadAll();
    expect(failures).toEqual([]);
    expect(warnings).toEqual([]);
    expect(records.map((r) => [r.id, r.messages.length, r.lastSequence])).toEqual([
      ["a", 5, 8],
      ["b", 1, 1],
    ]);
    expect(records[0]).toEqual({ ...recordWith("a", messages(5), 8), labels: { k: "v" } });
    expect((await restarted.readEvents("a", 0, 100)).events.map((e) => e.sequence)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    // The restart checkpointed what the log held and let the log go.
    expect((await readdir(path.join(dir, "sessions"))).sort()).toEqual(["a", "b", "wal.d"]);
    expect(await readdir(path.join(dir, "sessions", "wal.d"))).toEqual([]);
  });

  it("drops a torn last log entry with a warning; everything acknowledged before it comes back", async () => {
    const dir = await makeTempDir();
    const store = new FileSessionStore(dir);
    await store.save(recordWith("a", messages(2), 2), events("a", 1, 2));
    await store.save(recordWith("a", messages(4), 4), events("a", 3, 4));
    const [segment] = await readdir(path.join(dir, "sessions", "wal.d"));
    await appendFile(path.join(dir, "sessions", "wal.d", segment!), '{"n":99,"op":"save","id":"a","set":{"lastSeq');

    const restarted = reopen(dir);
    const { records, failures, warnings } = await restarted.loadAll();
    expect(failures).toEqual([]);
    expect(warnings!.map((w) => w.error)).toEqual([expect.stringContaining("torn last entry")]);
    expect(records[0]!.messages).toEqual(messages(4));
    expect((await restarted.readEvents("a", 0, 10)).events.map((e) => e.sequence)).toEqual([1, 2, 3, 4]);
    // Writing goes on after the torn end.
    await restarted.save(recordWith("a", messages(6), 6), events("a", 5, 6));
    expect((await reopen(dir).loadAll()).records[0]!.messages).toEqual(messages(6));
  });

  it("drops a torn last line of a session's files with a warning", async () => {
    const dir = await makeTempDir();
    const store = new FileSessionStore(dir);
    await store.save(recordWith("a", messages(3), 3), events("a", 1, 3));
    await store.close();
    const folder = path.join(dir, "sessions", "a");
    // A crash in the middle of checkpoint appends: unfinished lines the snapshot does not count yet.
    await appendFile(path.join(folder, "messages.1.jsonl"), '{"id":"m3","role":"us');
    await appendFile(path.join(folder, "events.1.jsonl"), '{"sessionId":"a","sequence":4,"ti');

    const restarted = reopen(dir);
    const { records, warnings } = await restarted.loadAll();
    expect(records[0]!.messages).toEqual(messages(3));
    expect(warnings!.map((w) => [path.basename(w.location), w.error])).toEqual([["events.1.jsonl", expect.stringContaining("torn last line")]]);
    expect((await restarted.readEvents("a", 0, 10)).events.map((e) => e.sequence)).toEqual([1, 2, 3]);
    await restarted.save(recordWith("a", messages(5), 5), events("a", 4, 5));
    await restarted.close();
    // The torn ends were cut before appending: the files are whole lines again.
    expect((await lines(path.join(folder, "events.1.jsonl"))).map((l) => (JSON.parse(l) as { sequence: number }).sequence)).toEqual([1, 2, 3, 4, 5]);
    expect(await lines(path.join(folder, "messages.1.jsonl"))).toHaveLength(5);
    const again = reopen(dir);
    const loaded = await again.loadAll();
    expect(loaded.warnings).toEqual([]);
    expect(loaded.records[0]!.messages).toEqual(messages(5));
    expect((await again.readEvents("a", 0, 10)).events.map((e) => e.sequence)).toEqual([1, 2, 3, 4, 5]);
  });

  it("falls back to rewriting the messages when stored ones were changed", async () => {
    const dir = await makeTempDir();
    const store = new FileSessionStore(dir);
    await store.save(recordWith("a", messages(3)), []);
    await store.close();
    const changed = [message(0), { ...message(1), id: "replaced", text: "new" }];
    await store.save(recordWith("a", changed), []);
    expect((await reopen(dir).loadAll()).records[0]!.messages).toEqual(changed);
    const again = reopen(dir);
    await again.loadAll();
    await again.save(recordWith("a", [...changed, message(7)]), []);
    await again.close();
    expect((await reopen(dir).loadAll()).records[0]!.messages).toEqual([...changed, message(7)]);
    // The rewrite went to a new generation of the file; the old one is gone.
    expect((await readdir(path.join(dir, "sessions", "a"))).sort()).toEqual(["messages.2.jsonl", "snapshot.json"]);
  });

  it("logs only the fields that changed, and every field again after a failed write", async () => {
    const dir = await makeTempDir();
    const store = new FileSessionStore(dir);
    const base = { ...recordWith("a", messages(1)), agent: "reviewer" };
    await store.save(base, []);
    const bytes = store.stats.wal.bytes;
    await store.save({ ...base, state: "paused" }, []);
    await store.save({ ...base, state: "paused" }, []);
    expect(store.stats.wal.bytes - bytes).toBeLessThan(100);
    const { agent: _dropped, ...withoutAgent } = { ...base, state: "paused" as const };
    await store.save(withoutAgent, []);
    expect((await reopen(dir).loadAll()).records[0]).toEqual(withoutAgent);

    // The disk fails a write: the next one logs the whole record, replacing whatever the failed one left.
    await store.close();
    const wal = path.join(dir, "sessions", "wal.d");
    await rm(wal, { recursive: true });
    await writeFile(wal, "not a folder");
    await expect(store.save({ ...withoutAgent, labels: { half: "written" } }, [])).rejects.toThrow();
    await rm(wal);
    await mkdir(wal);
    await store.save({ ...withoutAgent, state: "idle" }, []);
    expect((await reopen(dir).loadAll()).records[0]).toEqual({ ...withoutAgent, state: "idle" });
  });

  it("stores each event once, by sequence", async () => {
    const dir = await makeTempDir();
    const store = new FileSessionStore(dir);
    await store.save(sessionRecord("a"), events("a", 1, 3));
    await store.save(sessionRecord("a"), events("a", 2, 5));
    await store.checkpoint();
    await store.save(sessionRecord("a"), events("a", 4, 6));
    expect((await store.readEvents("a", 0, 100)).events.map((e) => e.sequence)).toEqual([1, 2, 3, 4, 5, 6]);
    expect((await store.readEvents("a", 2, 2)).events.map((e) => e.sequence)).toEqual([3, 4]);
    expect((await store.readEvents("a", 6, 2)).events).toEqual([]);
    expect(await store.readEvents("nobody", 0, 2)).toEqual({ events: [], oldest: 0 });
    await store.close();
    expect((await reopen(dir).readEvents("a", 0, 100)).events).toEqual(events("a", 1, 6));
  });

  it("deletes durably: a deleted session does not come back, and its folder goes", async () => {
    const dir = await makeTempDir();
    const store = new FileSessionStore(dir);
    await store.save(recordWith("a", messages(2)), events("a", 1, 2));
    await store.save(recordWith("b", messages(2)), []);
    await store.checkpoint();
    await store.delete("a");
    await store.delete("never-stored");
    const restarted = reopen(dir);
    expect((await restarted.loadAll()).records.map((r) => r.id)).toEqual(["b"]);
    expect(await restarted.readEvents("a", 0, 10)).toEqual({ events: [], oldest: 0 });
    expect((await readdir(path.join(dir, "sessions"))).sort()).toEqual(["b", "wal.d"]);
  });
});

describe("event retention", () => {
  it("keeps the newest events within the count bound, says which is oldest, and trims the file in the background", async () => {
    const dir = await makeTempDir();
    const store = new FileSessionStore(dir, { retention: { maxEvents: 10 } });
    for (let from = 1; from <= 25; from += 5) await store.save(sessionRecord("a", from + 4), events("a", from, from + 4));
    expect(await store.readEvents("a", 0, 100)).toEqual({ events: events("a", 16, 25), oldest: 16 });
    expect(await store.readEvents("a", 20, 2)).toEqual({ events: events("a", 21, 22), oldest: 16 });
    await store.close();
    const [file] = (await readdir(path.join(dir, "sessions", "a"))).filter((name) => name.startsWith("events."));
    expect((await lines(path.join(dir, "sessions", "a", file!))).length).toBe(10);

    const restarted = reopen(dir, { retention: { maxEvents: 10 } });
    expect(await restarted.readEvents("a", 0, 100)).toEqual({ events: events("a", 16, 25), oldest: 16 });
    // Appends after a trim keep the bound; the file may run 25% over before the next rewrite.
    for (let from = 26; from <= 40; from += 3) await restarted.save(sessionRecord("a", from + 2), events("a", from, from + 2));
    await restarted.checkpoint();
    const result = await restarted.readEvents("a", 0, 100);
    expect(result.oldest).toBe(31);
    expect(result.events.map((e) => e.sequence)).toEqual(events("a", 31, 40).map((e) => e.sequence));
  });

  it("keeps the newest events within the byte bound", async () => {
    const dir = await makeTempDir();
    const big = "x".repeat(1000);
    const store = new FileSessionStore(dir, { retention: { maxBytes: 6_000 } });
    await store.save(sessionRecord("a"), events("a", 1, 20, big));
    const result = await store.readEvents("a", 0, 100);
    expect(result.events.map((e) => e.sequence)).toEqual([16, 17, 18, 19, 20]);
    expect(result.oldest).toBe(16);
    await store.close();
    expect((await reopen(dir, { retention: { maxBytes: 6_000 } }).readEvents("a", 0, 100)).oldest).toBe(16);
    // A single event larger than the bound is kept: the newest one always is.
    const tiny = new FileSessionStore(await makeTempDir(), { retention: { maxBytes: 10 } });
    await tiny.save(sessionRecord("b"), [event("b", 1, big), event("b", 2, big)]);
    expect(await tiny.readEvents("b", 0, 10)).toEqual({ events: [event("b", 2, big)], oldest: 2 });
  });
});

describe("start-up", () => {
  it("removes temp files, unfinished conversions and deletions, stray generations and folders without a snapshot", async () => {
    const dir = await makeTempDir();
    const store = new FileSessionStore(dir);
    await store.save(recordWith("a", messages(2)), events("a", 1, 2));
    await store.close();
    const sessions = path.join(dir, "sessions");
    const leftovers = [
      path.join(sessions, "a.json.1234abcd.tmp"),
      path.join(sessions, "wal.d", "0000000000000009.log.77.tmp"),
      path.join(sessions, "a", "snapshot.json.5678.tmp"),
      path.join(sessions, "a", "messages.7.jsonl"),
      path.join(sessions, "a", "events.3.jsonl"),
    ];
    for (const file of leftovers) await writeFile(file, "partial");
    for (const folder of ["b.migrating", "c.abcdef.deleted", "orphan"]) {
      await mkdir(path.join(sessions, folder));
      await writeFile(path.join(sessions, folder, "messages.1.jsonl"), "{}\n");
    }
    const restarted = reopen(dir);
    const { records, warnings } = await restarted.loadAll();
    expect(records.map((r) => r.id)).toEqual(["a"]);
    expect(warnings!.map((w) => path.relative(sessions, w.location)).sort()).toEqual(
      [...leftovers.map((file) => path.relative(sessions, file)), "b.migrating", "c.abcdef.deleted", "orphan"].sort(),
    );
    expect((await readdir(sessions)).sort()).toEqual(["a", "wal.d"]);
    expect((await readdir(path.join(sessions, "a"))).sort()).toEqual(["events.1.jsonl", "messages.1.jsonl", "snapshot.json"]);
    expect(await readdir(path.join(sessions, "wal.d"))).toEqual([]);
    expect(records[0]!.messages).toEqual(messages(2));
  });
});
