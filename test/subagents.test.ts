import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { status } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { events } from "../src/client/client.js";
import { ConfirmDecision, Scope, type AgentEvent, type ModelConfig } from "../src/gen/agentd/v1/runtime.js";
import { collect, grpcError, waitFor, type ScriptStep, serversStoppedAfterAll } from "./helpers/harness.js";

const start = serversStoppedAfterAll();

function script(steps: ScriptStep[], agents: Record<string, ScriptStep[]>): ModelConfig {
  const agentScripts = Object.fromEntries(Object.entries(agents).map(([name, s]) => [name, { steps: s }]));
  return { provider: "scripted", model: "script", baseUrl: "", apiKeyEnv: "", scriptPath: "", scriptJson: JSON.stringify({ steps, agents: agentScripts }) };
}

const REVIEWER = `---
name: reviewer
description: Reviews a file and reports problems
tools: read_file, list_dir
---
You are a careful reviewer.
`;

type Sub = { childSessionId: string; agent: string; event: AgentEvent };
const subagentEvents = (all: AgentEvent[]): Sub[] =>
  all.filter((e) => e.payload?.$case === "subagent").map((e) => (e.payload as { subagent: Sub }).subagent);

const KEEP = { config: { subagents: { maxDepth: 2, maxTasksPerTurn: 16, keepSessions: true } } };

describe("subagents: the task tool", () => {
  it("runs a child with the definition's narrower tools, relays its events tagged with its id, and adds up usage", async () => {
    const t = await start(KEEP);
    const usageParent = { inputTokens: 10, outputTokens: 1 };
    const usageChild = { inputTokens: 100, outputTokens: 5 };
    const { session } = await t.client.createSession({
      config: {
        model: script(
          [
            { toolCalls: [{ name: "task", arguments: { agent: "reviewer", prompt: "review a.txt" } }], usage: usageParent },
            { text: "parent got: {{last_tool_result}}", usage: usageParent },
          ],
          {
            reviewer: [
              { toolCalls: [{ name: "read_file", arguments: { path: "a.txt" } }], usage: usageChild },
              { toolCalls: [{ name: "bash", arguments: { command: "rm a.txt" } }], usage: usageChild },
              { text: "review done; my prompt: {{system_prompt}}", usage: usageChild },
            ],
          },
        ),
      },
    });
    const id = session!.id;
    await mkdir(session!.workspace, { recursive: true });
    await writeFile(path.join(session!.workspace, "a.txt"), "hello");
    const loaded = await t.client.loadAgent({ sessionId: id, source: { $case: "content", content: REVIEWER } });
    expect(loaded.agent).toMatchObject({ name: "reviewer", scope: Scope.SCOPE_SESSION, tools: ["read_file", "list_dir"], allTools: false });
    expect((await t.client.listTools({ sessionId: id })).tools.map((tool) => tool.name)).toContain("task");

    const all = await collect(t.client.streamGenerate({ sessionId: id, prompt: "get a review" }));
    const relayed = subagentEvents(all);
    expect(relayed.length).toBeGreaterThan(3);
    const childId = relayed[0]!.childSessionId;
    expect(relayed.every((r) => r.childSessionId === childId && r.agent === "reviewer" && r.event.sessionId === childId)).toBe(true);
    // Parent sequence numbers keep increasing through the relayed events.
    const sequences = all.map((e) => e.sequence);
    expect(sequences).toEqual([...sequences].sort((a, b) => a - b));

    const childResults = relayed.filter((r) => r.event.payload?.$case === "toolResult").map((r) => (r.event.payload as { toolResult: { name: string; output: string; isError: boolean } }).toolResult);
    expect(childResults[0]).toMatchObject({ name: "read_file", isError: false });
    expect(childResults[1]!.name).toBe("bash");
    expect(childResults[1]!.isError).toBe(true);
    expect(childResults[1]!.output).toContain("unknown tool");

    const done = all.at(-1)!.payload;
    if (done?.$case !== "turnCompleted") throw new Error(`turn ended with ${done?.$case}`);
    expect(done.turnCompleted.result!.text).toContain("review done");
    expect(done.turnCompleted.result!.text).toContain("You are a careful reviewer.");
    expect(done.turnCompleted.result!.usage).toMatchObject({ inputTokens: 320, outputTokens: 17 });

    const child = (await t.client.getSession({ sessionId: childId })).session!;
    expect(child).toMatchObject({ parentId: id, agent: "reviewer" });
    expect(child.config!.tools!.allow).toEqual(["read_file", "list_dir"]);
    expect(child.usage).toMatchObject({ inputTokens: 300, outputTokens: 15 });
    expect((await t.client.getSession({ sessionId: id })).session!.usage).toMatchObject({ inputTokens: 320, outputTokens: 17 });
    expect((await t.client.listChildSessions({ sessionId: id })).sessions.map((s) => s.id)).toEqual([childId]);
  });

  it("cancelling the parent's turn cancels the child's", async () => {
    const t = await start(KEEP);
    const { session } = await t.client.createSession({
      config: {
        model: script([{ toolCalls: [{ name: "task", arguments: { agent: "reviewer", prompt: "take your time" } }], usage: { inputTokens: 1, outputTokens: 0 } }, { text: "never" }], {
          reviewer: [
            { toolCalls: [{ name: "list_dir", arguments: {} }], usage: { inputTokens: 7, outputTokens: 2 } },
            { text: "thinking very slowly", chunkSize: 1, delayMs: 200 },
          ],
        }),
      },
    });
    const id = session!.id;
    await t.client.loadAgent({ sessionId: id, source: { $case: "content", content: REVIEWER } });
    const call = t.client.streamGenerate({ sessionId: id, prompt: "go" });
    const seen: AgentEvent[] = [];
    for await (const event of events(call)) {
      seen.push(event);
      if (event.payload?.$case === "subagent" && event.payload.subagent.event?.payload?.$case === "textDelta") {
        await t.client.cancel({ sessionId: id });
      }
    }
    expect(seen.at(-1)!.payload?.$case).toBe("cancelled");
    const childId = subagentEvents(seen)[0]!.childSessionId;
    const messages = await waitFor(async () => {
      const child = (await t.client.getSession({ sessionId: childId })).session!;
      return child.turnActive ? undefined : child;
    });
    expect(messages.turnActive).toBe(false);
    // What the child spent before the cancel is still the parent session's.
    const { session: parent } = await t.client.getSession({ sessionId: id });
    expect(parent!.usage).toMatchObject({ inputTokens: 8, outputTokens: 2 });
  });

  it("a child's confirmation reaches the parent's stream and is answered through the parent", async () => {
    const t = await start();
    const { session } = await t.client.createSession({
      config: {
        confirmation: { enabled: true, timeoutMs: 10_000 },
        model: script([{ toolCalls: [{ name: "task", arguments: { agent: "writer", prompt: "write it" } }] }, { text: "{{last_tool_result}}" }], {
          writer: [{ toolCalls: [{ name: "write_file", arguments: { path: "out.txt", content: "from the child" } }] }, { text: "written" }],
        }),
      },
    });
    const id = session!.id;
    await t.client.loadAgent({ sessionId: id, source: { $case: "content", content: "---\nname: writer\ndescription: Writes files\ntools: [write_file]\n---\nWrite what you are told.\n" } });
    const call = t.client.streamGenerate({ sessionId: id, prompt: "go" });
    let asked = 0;
    const seen: AgentEvent[] = [];
    for await (const event of events(call)) {
      seen.push(event);
      const inner = event.payload?.$case === "subagent" ? event.payload.subagent.event : undefined;
      if (inner?.payload?.$case === "confirmationRequired") {
        asked++;
        const confirmation = inner.payload.confirmationRequired.confirmation!;
        expect(confirmation.sessionId).toBe(inner.sessionId);
        const pending = await t.client.listPendingConfirmations({ sessionId: id, includeDescendants: true });
        expect(pending.confirmations.map((c) => c.id)).toEqual([confirmation.id]);
        // Answered through the parent's id: the person sees the parent's stream.
        await t.client.confirmToolCall({ sessionId: id, confirmationId: confirmation.id, decision: ConfirmDecision.CONFIRM_DECISION_APPROVE });
      }
    }
    expect(asked).toBe(1);
    const done = seen.at(-1)!.payload;
    expect(done?.$case === "turnCompleted" && done.turnCompleted.result!.text).toContain("written");
    // By default a subagent's session goes with its task: tasks do not use up the owner's sessions.
    await waitFor(async () => ((await t.client.listChildSessions({ sessionId: id })).sessions.length === 0 ? true : undefined));
  });

  it("holds the depth limit and refuses unknown definitions", async () => {
    const t = await start({ config: { subagents: { maxDepth: 1, maxTasksPerTurn: 1, keepSessions: false } } });
    const { session } = await t.client.createSession({
      config: {
        model: script(
          [
            { toolCalls: [{ name: "task", arguments: { agent: "nobody", prompt: "x" } }] },
            { toolCalls: [{ name: "task", arguments: { agent: "nested", prompt: "delegate further" } }] },
            { toolCalls: [{ name: "task", arguments: { agent: "nested", prompt: "once more" } }] },
            { text: "{{last_tool_result}}" },
          ],
          { nested: [{ toolCalls: [{ name: "task", arguments: { agent: "nested", prompt: "deeper" } }] }, { text: "child: {{last_tool_result}}" }] },
        ),
      },
    });
    const id = session!.id;
    await t.client.loadAgent({ sessionId: id, source: { $case: "content", content: "---\nname: nested\ndescription: Delegates again\n---\nDelegate.\n" } });
    const all = await collect(t.client.streamGenerate({ sessionId: id, prompt: "go" }));
    const parentResults = all.filter((e) => e.payload?.$case === "toolResult").map((e) => (e.payload as { toolResult: { output: string; isError: boolean } }).toolResult);
    expect(parentResults[0]!.isError).toBe(true);
    expect(parentResults[0]!.output).toContain('no subagent named "nobody"');
    expect(parentResults[2]!.isError).toBe(true);
    expect(parentResults[2]!.output).toContain("at most 1 tasks");
    const childResults = subagentEvents(all)
      .filter((r) => r.event.payload?.$case === "toolResult")
      .map((r) => (r.event.payload as { toolResult: { output: string; isError: boolean } }).toolResult);
    // One level only: the child is not offered the task tool.
    expect(childResults[0]!.isError).toBe(true);
    expect(childResults[0]!.output).toContain("unknown tool");

    const bad = await grpcError(t.client.loadAgent({ sessionId: id, source: { $case: "content", content: "---\nname: x\n---\nbody\n" } }));
    expect(bad.code).toBe(status.INVALID_ARGUMENT);
    expect((await t.client.listAgents({ sessionId: id })).agents.map((a) => a.name)).toEqual(["nested"]);
  });

  it("gives a budgeted session's subagent what is left of the budget, not a budget of its own", async () => {
    const prices = { "scripted/script": { inputPerMillion: 1_000_000, outputPerMillion: 0 } };
    const t = await start({ config: { ...KEEP.config, prices } });
    // 1 USD per input token: the parent spends 1 of its 3, the subagent may spend the other 2.
    const { session } = await t.client.createSession({
      config: {
        model: script(
          [
            { toolCalls: [{ name: "task", arguments: { agent: "reviewer", prompt: "go on and on" } }], usage: { inputTokens: 1, outputTokens: 0 } },
            { text: "parent again", usage: { inputTokens: 1, outputTokens: 0 } },
          ],
          { reviewer: Array.from({ length: 5 }, () => ({ toolCalls: [{ name: "list_dir", arguments: {} }], usage: { inputTokens: 1, outputTokens: 0 } })) },
        ),
        limits: { budgetUsd: 3 },
      },
    });
    const id = session!.id;
    await t.client.loadAgent({ sessionId: id, source: { $case: "content", content: REVIEWER } });
    const all = await collect(t.client.streamGenerate({ sessionId: id, prompt: "delegate" })).catch(() => []);
    const child = subagentEvents(all)[0]!.childSessionId;
    expect((await t.client.getSession({ sessionId: child })).session!.config!.limits!.budgetUsd).toBe(2);
    // The subagent stopped at its budget; the parent then found its own spent and stopped too.
    const { session: parent } = await t.client.getSession({ sessionId: id });
    expect(parent!.usage!.costUsd).toBe(3);
    expect(all.at(-1)?.payload?.$case).toBe("error");
    // The owner paid each model call once: the subagent's calls are not counted again through the parent.
    expect(parent!.ownerUsage!.usage!.costUsd).toBe(3);
    expect(parent!.ownerUsage!.usage!.inputTokens).toBe(3);
  });
});
