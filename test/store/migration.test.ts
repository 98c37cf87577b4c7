import { cp, mkdir, readdir, readFile, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { FileSessionStore } from "../../src/store/file-store.js";
import { decodeRecord } from "../../src/store/record-codec.js";
import type { SessionRecord } from "../../src/store/record.js";
import { makeTempDir, removeTempDirs } from "../helpers/harness.js";
import { events } from "./builders.js";

afterAll(removeTempDirs);

const FIXTURES = fileURLToPath(new URL("../fixtures/session-records/v1/", import.meta.url));

/** A data dir holding a copy of every version-1 file, and the records those files hold. */
async function oldDataDir(): Promise<{ dir: string; expected: SessionRecord[] }> {
  const dir = await makeTempDir("agentd-migration-");
  await cp(FIXTURES, path.join(dir, "sessions"), { recursive: true, filter: (source) => !source.endsWith("README.md") });
  const names = (await readdir(FIXTURES)).filter((name) => name.endsWith(".json")).sort();
  const expected = await Promise.all(names.map(async (name) => decodeRecord(await readFile(path.join(FIXTURES, name), "utf8"))));
  return { dir, expected };
}

describe("conversion of version-1 data directories", () => {
  it("converts every file to the new layout, and the records come back exactly as the old files held them", async () => {
    const { dir, expected } = await oldDataDir();
    const store = new FileSessionStore(dir);
    const first = await store.loadAll();
    expect(first.failures).toEqual([]);
    expect(first.records).toEqual(expected);
    expect(first.warnings!.map((w) => w.error)).toEqual(["converted 10 session file(s) of the version-1 format"]);
    const names = await readdir(path.join(dir, "sessions"));
    expect(names.filter((name) => name.endsWith(".json"))).toEqual([]);
    expect(names.sort()).toEqual([...expected.map((r) => r.id), "wal.d"].sort());

    // They go on from there: a change is appended, and a restart reads the converted files.
    const [one] = expected;
    await store.save({ ...one!, labels: { changed: "yes" } }, events(one!.id, one!.lastSequence + 1, one!.lastSequence + 2));
    const again = await new FileSessionStore(dir).loadAll();
    expect(again.warnings).toEqual([]);
    expect(again.records).toEqual(expected.map((r) => (r.id === one!.id ? { ...r, labels: { changed: "yes" } } : r)));
  });

  it("finishes a conversion that was interrupted at any step", async () => {
    const { dir, expected } = await oldDataDir();
    const sessions = path.join(dir, "sessions");
    const [a, b, c] = expected.map((r) => r.id);
    // a: converted elsewhere, renamed into place, but the old file not yet removed.
    const done = await makeTempDir();
    await cp(path.join(sessions, `${a}.json`), path.join(done, "sessions", `${a}.json`));
    await new FileSessionStore(done).loadAll();
    await rename(path.join(done, "sessions", a!), path.join(sessions, a!));
    // b: a half-written conversion folder; c: a session folder without its snapshot yet.
    await mkdir(path.join(sessions, `${b}.migrating`));
    await writeFile(path.join(sessions, `${b}.migrating`, "messages.1.jsonl"), '{"id":"x"');
    await mkdir(path.join(sessions, c!));
    await writeFile(path.join(sessions, c!, "messages.1.jsonl"), "{}\n{}\n");

    const { records, failures } = await new FileSessionStore(dir).loadAll();
    expect(failures).toEqual([]);
    expect(records).toEqual(expected);
    const names = await readdir(sessions);
    expect(names.filter((name) => name.includes("."))).toEqual(["wal.d"]);
  });

  it("leaves a file it cannot read exactly as it is, and converts the others", async () => {
    const { dir, expected } = await oldDataDir();
    const broken = path.join(dir, "sessions", "0badf00d-dead-beef-0000-000000000000.json");
    await writeFile(broken, '{"version":1,"id":"0badf00d');
    const { records, failures } = await new FileSessionStore(dir).loadAll();
    expect(records).toEqual(expected);
    expect(failures.map((f) => f.location)).toEqual([broken]);
    expect(await readFile(broken, "utf8")).toBe('{"version":1,"id":"0badf00d');
  });
});
