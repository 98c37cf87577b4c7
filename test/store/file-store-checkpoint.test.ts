import { afterAll, describe, expect, it } from "vitest";
import { FileSessionStore } from "../../src/store/file-store.js";
import { makeTempDir, removeTempDirs } from "../helpers/harness.js";
import { events, message, messages, recordWith } from "./builders.js";

afterAll(removeTempDirs);

/**
 * A checkpoint that fails while saves go on, then one that succeeds: what a session owed the files
 * (its debt, grown in place by the saves) must all reach them, messages rewritten or appended.
 */
async function scenario(rewrite: boolean, failTwice: boolean) {
  const dir = await makeTempDir();
  const store = new FileSessionStore(dir, { checkpointIntervalMs: 60_000 });
  await store.save(recordWith("a", messages(2), 2), events("a", 1, 2));
  expect(await store.checkpoint()).toBe(true);
  await store.save(recordWith("a", messages(4), 4), events("a", 3, 4));
  const s = store as unknown as { writeSession: (...args: unknown[]) => Promise<void> };
  const original = s.writeSession.bind(store);
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let failures = failTwice ? 2 : 1;
  s.writeSession = async (...args: unknown[]) => {
    if (failures-- > 0) {
      await gate;
      throw new Error("disk full (simulated)");
    }
    return original(...args);
  };
  const failing = store.checkpoint();
  await new Promise((r) => setTimeout(r, 10));
  // Saves while the checkpoint runs.
  const list = rewrite ? [message(0), { ...message(1), id: "m1-rewritten" }] : messages(6);
  await store.save(recordWith("a", list, 6), events("a", 5, 6));
  release();
  expect(await failing).toBe(false);
  if (failTwice) expect(await store.checkpoint()).toBe(false);
  await store.save(recordWith("a", [...list, message(9)], 8), events("a", 7, 8));
  expect(await store.checkpoint()).toBe(true);
  await store.close();
  const again = new FileSessionStore(dir);
  const { records } = await again.loadAll();
  const read = await again.readEvents("a", 0, 100);
  return { ids: records[0]!.messages.map((m) => m.id), seqs: read.events.map((e) => e.sequence) };
}

describe("saves made while a checkpoint fails", () => {
  it("are all in the files after the next checkpoint: appended messages", async () => {
    expect(await scenario(false, false)).toEqual({ ids: ["m0", "m1", "m2", "m3", "m4", "m5", "m9"], seqs: [1, 2, 3, 4, 5, 6, 7, 8] });
  });
  it("rewritten messages", async () => {
    expect(await scenario(true, false)).toEqual({ ids: ["m0", "m1-rewritten", "m9"], seqs: [1, 2, 3, 4, 5, 6, 7, 8] });
  });
  it("appended messages, two checkpoints failing", async () => {
    expect(await scenario(false, true)).toEqual({ ids: ["m0", "m1", "m2", "m3", "m4", "m5", "m9"], seqs: [1, 2, 3, 4, 5, 6, 7, 8] });
  });
});
