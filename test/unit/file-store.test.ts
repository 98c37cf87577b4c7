import { readdir, readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { FileSessionStore } from "../../src/store/file-store.js";
import { makeTempDir, removeTempDirs } from "../helpers/harness.js";
import { sessionRecord } from "../helpers/records.js";

afterAll(removeTempDirs);

const record = (id: string) => sessionRecord(id);

describe("FileSessionStore", () => {
  it("saves atomically, loads back, and leaves no temp files", async () => {
    const store = new FileSessionStore(await makeTempDir());
    await store.save(record("a"));
    await store.save({ ...record("a"), lastSequence: 9 });
    await store.save(record("b"));
    expect((await readdir(store.directory)).sort()).toEqual(["a.json", "b.json"]);
    const { records, failures } = await store.loadAll();
    expect(failures).toEqual([]);
    expect(records.map((r) => [r.id, r.lastSequence])).toEqual([
      ["a", 9],
      ["b", 3],
    ]);
    await store.delete("a");
    expect(await readdir(store.directory)).toEqual(["b.json"]);
  });

  it("keeps records readable by the server's user only", async () => {
    const dir = await makeTempDir();
    const store = new FileSessionStore(dir);
    await store.save(record("private"));
    expect((await stat(path.join(dir, "sessions", "private.json"))).mode & 0o777).toBe(0o600);
    expect((await stat(path.join(dir, "sessions"))).mode & 0o777).toBe(0o700);
  });

  it("reports unreadable files without touching them", async () => {
    const store = new FileSessionStore(await makeTempDir());
    await store.save(record("good"));
    await writeFile(path.join(store.directory, "bad.json"), "{");
    await writeFile(path.join(store.directory, "renamed.json"), JSON.stringify(record("other")));
    await writeFile(path.join(store.directory, "noise.txt"), "ignored");
    const { records, failures } = await store.loadAll();
    expect(records.map((r) => r.id)).toEqual(["good"]);
    expect(failures.map((f) => path.basename(f.location))).toEqual(["bad.json", "renamed.json"]);
    expect(failures[1]!.error).toContain("holds session other");
    expect(await readFile(path.join(store.directory, "bad.json"), "utf8")).toBe("{");
  });

  it("refuses ids that would name a path outside its directory", async () => {
    const store = new FileSessionStore(await makeTempDir());
    await expect(store.save(record("../escape"))).rejects.toThrow("invalid session id");
  });
});
