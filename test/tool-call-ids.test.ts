import { Role } from "../src/gen/agentd/v1/runtime.js";
import { afterAll, describe, expect, it } from "vitest";
import { makeTempDir, removeTempDirs, scripted, startTestServer, type TestServer } from "./helpers/harness.js";

afterAll(removeTempDirs);

async function history(t: TestServer, sessionId: string) {
  const { messages } = await t.client.getMessages({ sessionId, pageSize: 1000 });
  return {
    callIds: messages.flatMap((m) => m.toolCalls.map((c) => c.id)),
    resultIds: messages.flatMap((m) => (m.toolResult ? [m.toolResult.callId] : [])),
    finalTexts: messages.filter((m) => m.role === Role.ROLE_ASSISTANT && m.toolCalls.length === 0).map((m) => m.text),
  };
}

describe("tool call ids and the script's position", () => {
  it("survive a restart and a ConfigureSession that keeps the model: the script goes on, ids never repeat", async () => {
    const dataDir = await makeTempDir();
    // Each turn: a tool call (generated id), then an answer naming the step.
    const model = scripted([
      { toolCalls: [{ name: "list_dir", arguments: {} }] },
      { text: "answer 1" },
      { toolCalls: [{ name: "list_dir", arguments: {} }] },
      { text: "answer 2" },
      { toolCalls: [{ name: "list_dir", arguments: {} }] },
      { text: "answer 3" },
    ]);
    let t = await startTestServer({ dataDir });
    const { session } = await t.client.createSession({ config: { model } });
    const id = session!.id;
    expect((await t.client.generate({ sessionId: id, prompt: "one" })).result!.text).toBe("answer 1");

    await t.stop();
    t = await startTestServer({ dataDir });
    expect((await t.client.generate({ sessionId: id, prompt: "two" })).result!.text).toBe("answer 2");

    await t.client.configureSession({ sessionId: id, config: { systemPrompt: "be brief" } });
    expect((await t.client.generate({ sessionId: id, prompt: "three" })).result!.text).toBe("answer 3");

    const { callIds, resultIds } = await history(t, id);
    expect(callIds).toHaveLength(3);
    expect(new Set(callIds).size).toBe(3);
    expect(resultIds).toEqual(callIds);
    await t.stop();
  });

  it("a new model starts its script over, and ids the model repeats are made unique within the session", async () => {
    const t = await startTestServer();
    // The script names its call "call_1" every time, as a model with a counter of its own might.
    const model = scripted([{ toolCalls: [{ id: "call_1", name: "list_dir", arguments: {} }] }, { text: "done" }], true);
    const { session } = await t.client.createSession({ config: { model } });
    const id = session!.id;
    await t.client.generate({ sessionId: id, prompt: "a" });
    await t.client.generate({ sessionId: id, prompt: "b" });
    await t.client.configureSession({ sessionId: id, config: { model: scripted([{ toolCalls: [{ name: "list_dir", arguments: {} }] }, { text: "again" }]) } });
    expect((await t.client.generate({ sessionId: id, prompt: "c" })).result!.text).toBe("again");

    const { callIds, resultIds, finalTexts } = await history(t, id);
    expect(callIds).toEqual(["call_1", "call_1_2", "scripted_call_1_1"]);
    expect(resultIds).toEqual(callIds);
    expect(finalTexts).toEqual(["done", "done", "again"]);

    // A later script whose generated id collides with one already in the history.
    await t.client.configureSession({ sessionId: id, config: { model: scripted([{ toolCalls: [{ name: "list_dir", arguments: {} }] }, { text: "x" }]) } });
    await t.client.generate({ sessionId: id, prompt: "d" });
    expect((await history(t, id)).callIds.at(-1)).toBe("scripted_call_1_1_2");
    await t.stop();
  });
});
