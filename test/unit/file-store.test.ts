import { mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { FileSessionStore } from "../../src/store/file-store.js";
import { makeTempDir, removeTempDirs } from "../helpers/harness.js";
import { sessionRecord } from "../helpers/records.js";
import { messages, recordWith } from "../store/builders.js";

afterAll(removeTempDirs);

const record = (id: string) => sessionRecord(id);

describe("FileSessionStore", () => {
  it("saves, loads back in a new process, deletes, and leaves no temp files", async () => {
    const dir = await makeTempDir();
    const store = new FileSessionStore(dir);
    await store.save(record("a"), []);
    await store.save({ ...record("a"), lastSequence: 9 }, []);
    await store.save(record("b"), []);
    // A second store on the same folder is a restart (after a crash: the first one was never closed).
    const { records, failures } = await new FileSessionStore(dir).loadAll();
    expect(failures).toEqual([]);
    expect(records.map((r) => [r.id, r.lastSequence])).toEqual([
      ["a", 9],
      ["b", 3],
    ]);
    const again = new FileSessionStore(dir);
    await again.loadAll();
    await again.delete("a");
    await again.close();
    expect((await new FileSessionStore(dir).loadAll()).records.map((r) => r.id)).toEqual(["b"]);
    const files = await readdir(path.join(dir, "sessions"), { recursive: true });
    expect(files.filter((f) => f.endsWith(".tmp"))).toEqual([]);
    expect(files).not.toContain("a");
  });

  it("keeps everything readable by the server's user only", async () => {
    const dir = await makeTempDir();
    const store = new FileSessionStore(dir);
    await store.save(recordWith("private", messages(2)), []);
    const sessions = path.join(dir, "sessions");
    const [segment] = await readdir(path.join(sessions, "wal.d"));
    expect((await stat(path.join(sessions, "wal.d", segment!))).mode & 0o777).toBe(0o600);
    await store.close();
    for (const folder of [sessions, path.join(sessions, "wal.d"), path.join(sessions, "private")]) {
      expect((await stat(folder)).mode & 0o777, folder).toBe(0o700);
    }
    for (const file of await readdir(path.join(sessions, "private"))) {
      expect((await stat(path.join(sessions, "private", file))).mode & 0o777, file).toBe(0o600);
    }
  });

  it("reports unreadable files without touching them", async () => {
    const dir = await makeTempDir();
    const store = new FileSessionStore(dir);
    await store.save(record("good"), []);
    await store.close();
    const sessions = path.join(dir, "sessions");
    await writeFile(path.join(sessions, "bad.json"), "{");
    await writeFile(path.join(sessions, "renamed.json"), JSON.stringify(record("other")));
    await writeFile(path.join(sessions, "noise.txt"), "ignored");
    await mkdir(path.join(sessions, "damaged"));
    await writeFile(path.join(sessions, "damaged", "snapshot.json"), '{"format":"agentd-session-snapshot","vers');
    const { records, failures } = await new FileSessionStore(dir).loadAll();
    expect(records.map((r) => r.id)).toEqual(["good"]);
    expect(failures.map((f) => path.basename(f.location))).toEqual(["bad.json", "renamed.json", "damaged"]);
    expect(failures[1]!.error).toContain("holds session other");
    expect(await readFile(path.join(sessions, "bad.json"), "utf8")).toBe("{");
    expect(await readFile(path.join(sessions, "damaged", "snapshot.json"), "utf8")).toBe('{"format":"agentd-session-snapshot","vers');
    expect(await readFile(path.join(sessions, "noise.txt"), "utf8")).toBe("ignored");
  });

  it("refuses ids that would name a path outside its directory", async () => {
    const store = new FileSessionStore(await makeTempDir());
    await expect(store.save(record("../escape"), [])).rejects.toThrow("invalid session id");
    await expect(store.delete("../escape")).rejects.toThrow("invalid session id");
  });
});
