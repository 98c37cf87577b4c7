import { readFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConfirmDecision } from "../src/gen/agentd/v1/runtime.js";
import { cases, collect, makeTempDir, removeTempDirs, scripted, startTestServer, waitFor } from "./helpers/harness.js";

afterAll(removeTempDirs);

const steps = [{ toolCalls: [{ id: "w1", name: "write_file", arguments: { path: "kept.txt", content: "after the restart" } }] }, { text: "written" }];

describe("a confirmation survives a restart", () => {
  it("the session comes back waiting on the same confirmation; approving it runs the tool and finishes the turn", async () => {
    const dataDir = await makeTempDir();
    let t = await startTestServer({ dataDir });
    const { session } = await t.client.createSession({ config: { model: scripted(steps), confirmation: { enabled: true, timeoutMs: 0 } } });
    const id = session!.id;
    const first = collect(t.client.streamGenerate({ sessionId: id, prompt: "write it" })).catch(() => []);
    const pending = await waitFor(async () => (await t.client.listPendingConfirmations({ sessionId: id })).confirmations[0]);
    await t.stop();
    // The client that started the turn sees it end for the shutdown.
    expect(cases(await first).at(-1)).toBe("cancelled");

    t = await startTestServer({ dataDir });
    try {
      const again = await waitFor(async () => (await t.client.listPendingConfirmations({ sessionId: id })).confirmations[0]);
      expect(again).toMatchObject({ id: pending.id, callId: "w1", turnId: pending.turnId, toolName: "write_file" });
      expect((await t.client.getSession({ sessionId: id })).session!.activeTurnId).toBe(pending.turnId);
      const watched = collect(t.client.watchTurn({ sessionId: id }));
      await t.client.confirmToolCall({ sessionId: id, confirmationId: pending.id, decision: ConfirmDecision.CONFIRM_DECISION_APPROVE });
      const events = await watched;
      // (The resumed turn's first events may reach the watcher too: they wait until the restarted
      // session's sequence reservation is stored.)
      const seen = cases(events);
      expect(seen.slice(seen.indexOf("confirmationResolved"))).toEqual(["confirmationResolved", "toolResult", "textDelta", "usage", "turnCompleted"]);
      expect(await readFile(path.join(session!.workspace, "kept.txt"), "utf8")).toBe("after the restart");
      const { messages } = await t.client.getMessages({ sessionId: id });
      // One user message, the call, its one result, the answer: nothing repeated, nothing lost.
      expect(messages.map((m) => m.role)).toEqual([1, 2, 3, 2]);
    } finally {
      await t.stop();
    }
  });

  it("a deadline that passed while the server was down applies its action at start-up", async () => {
    const dataDir = await makeTempDir();
    let t = await startTestServer({ dataDir });
    const { session } = await t.client.createSession({ config: { model: scripted(steps), confirmation: { enabled: true, timeoutMs: 400 } } });
    const id = session!.id;
    void collect(t.client.streamGenerate({ sessionId: id, prompt: "write it" })).catch(() => []);
    await waitFor(async () => (await t.client.listPendingConfirmations({ sessionId: id })).confirmations[0]);
    await t.stop();
    await new Promise((resolve) => setTimeout(resolve, 500));
    t = await startTestServer({ dataDir });
    try {
      const { messages } = await waitFor(async () => {
        const page = await t.client.getMessages({ sessionId: id });
        return page.messages.at(-1)?.text === "written" ? page : undefined;
      });
      expect(messages.find((m) => m.toolResult)!.toolResult).toMatchObject({ isError: true, output: "not run: nobody confirmed it in time: no answer within 400 ms" });
      await expect(readFile(path.join(session!.workspace, "kept.txt"))).rejects.toThrow();
    } finally {
      await t.stop();
    }
  });
});
