/**
 * The owners' ledger is written in batches; what a crash keeps from it comes back from the sessions'
 * running totals (SessionRecord.spent) against the ledger's marks. The kill -9 runs are in
 * crash.test.ts; these are the cases a crash makes rare: a mark ahead of its record, a subagent's
 * session removed after its task.
 */
import { randomUUID } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { MemoryStore } from "../src/store/memory-store.js";
import { makeTempDir, removeTempDirs, startTestServer, waitFor } from "./helpers/harness.js";
import { sessionRecord } from "./helpers/records.js";

afterAll(removeTempDirs);

const prices = { "scripted/script": { inputPerMillion: 1_000_000, outputPerMillion: 0 } };
const totals = (inputTokens: number, costUsd: number) => ({ inputTokens, outputTokens: 0, costUsd });

describe("the owners' ledger after a crash", () => {
  it("adds what a session's record holds beyond its mark, and takes a mark ahead of its record as spent", async () => {
    const store = new MemoryStore();
    const behind = { ...sessionRecord(randomUUID()), owner: "alice", updatedAt: "2026-11-20T10:00:00.000Z", spent: totals(7, 7) };
    const ahead = { ...sessionRecord(randomUUID()), owner: "alice", spent: totals(2, 2) };
    await store.save(behind, []);
    await store.save(ahead, []);
    // The ledger had 3 of the first session's 7 (a crash kept the rest), and 5 of the second's 2 (its last save was lost).
    await store.addSpend([{ owner: "alice", day: "2026-11-20", inputTokens: 8, outputTokens: 0, costUsd: 8 }], [
      { sessionId: behind.id, ...totals(3, 3) },
      { sessionId: ahead.id, ...totals(5, 5) },
    ]);

    const t = await startTestServer({ dataDir: await makeTempDir(), store, config: { prices } });
    try {
      const usage = (await t.client.getOwnerUsage({ owner: "alice" })).ownerUsage!.usage!;
      expect(usage.costUsd).toBe(12);
    } finally {
      await t.stop();
    }
    // Written to the ledger on the day of the session's last change, with the marks raised.
    expect(await store.spendOf("alice", "2026-11-20")).toEqual(totals(12, 12));
    const marks = await store.marksOf([behind.id, ahead.id]);
    expect(marks.get(behind.id)).toMatchObject(totals(7, 7));
    expect(marks.get(ahead.id)).toMatchObject(totals(5, 5));
    // The second session goes on from what the ledger has of it: a later crash adds nothing twice.
    const records = (await store.loadAll()).records;
    expect(records.find((r) => r.id === ahead.id)!.spent).toEqual(totals(5, 5));
  });

  it("a subagent's session removed after its task leaves its spending in the ledger first", async () => {
    /** Notes what the ledger holds when each session's record is deleted. */
    class Watching extends MemoryStore {
      readonly atDelete: Array<{ id: string; ledger: number }> = [];
      override async delete(sessionId: string): Promise<void> {
        this.atDelete.push({ id: sessionId, ledger: (await this.spendOf("bob", "")).costUsd ?? 0 });
        await super.delete(sessionId);
      }
    }
    const store = new Watching();
    const t = await startTestServer({ dataDir: await makeTempDir(), store, config: { prices } });
    try {
      const scriptJson = JSON.stringify({
        steps: [{ toolCalls: [{ id: "t1", name: "task", arguments: { agent: "helper", prompt: "count" } }], usage: { inputTokens: 1, outputTokens: 0 } }, { text: "done", usage: { inputTokens: 1, outputTokens: 0 } }],
        agents: { helper: { steps: [{ text: "three", usage: { inputTokens: 3, outputTokens: 0 } }] } },
      });
      const { session } = await t.client.createSession({ owner: "bob", config: { model: { provider: "scripted", model: "script", scriptJson } } });
      await t.client.loadAgent({ sessionId: session!.id, source: { $case: "content", content: "---\nname: helper\ndescription: Counts\n---\nCount.\n" } });
      expect((await t.client.generate({ sessionId: session!.id, prompt: "delegate" })).result!.usage!.costUsd).toBe(5);
      // Its record (and running total) is deleted only once the ledger has what it spent: a crash then loses nothing.
      const deleted = await waitFor(() => store.atDelete[0]);
      expect(deleted.id).not.toBe(session!.id);
      expect(deleted.ledger).toBeGreaterThanOrEqual(4);
    } finally {
      await t.stop();
    }
  });
});
