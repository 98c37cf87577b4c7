import { status } from "@grpc/grpc-js";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ConfirmDecision,
  ConfirmationOutcome,
  Decision,
  TimeoutAction,
  type AgentEvent,
  type PendingConfirmation,
  type SessionConfig,
} from "../src/gen/agentd/v1/runtime.js";
import type { DeepPartial } from "../src/gen/agentd/v1/runtime.js";
import { cases, collect, grpcError, removeTempDirs, scripted, startTestServer, waitFor, type ScriptStep, type TestServer } from "./helpers/harness.js";

/**
 * The human in the loop, over a real port: rules decide each tool call, and a call that asks waits
 * for a person (any client of the owner), the timeout, or the turn's end.
 */

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t.stop();
  await removeTempDirs();
});

const write = (file: string, content: string) => ({ name: "write_file", arguments: { path: file, content } });

async function sessionWith(steps: ScriptStep[], config: DeepPartial<SessionConfig> = {}) {
  const { session } = await t.client.createSession({
    config: { model: scripted(steps), confirmation: { enabled: true, timeoutMs: 0 }, ...config },
  });
  return session!;
}

/** Starts a turn and waits for its first confirmation. */
async function turnWaiting(sessionId: string, prompt = "go") {
  const call = t.client.streamGenerate({ sessionId, prompt });
  const received: AgentEvent[] = [];
  const done = new Promise<AgentEvent[]>((resolve, reject) => {
    call.on("data", (message: { event?: AgentEvent }) => message.event && received.push(message.event));
    call.on("end", () => resolve(received));
    call.on("error", reject);
  });
  const pending = await waitFor(async () => (await t.client.listPendingConfirmations({ sessionId })).confirmations[0]);
  return { pending, done, call, received };
}

const payloads = (events: AgentEvent[], kind: string) => events.filter((e) => e.payload?.$case === kind).map((e) => e.payload as Record<string, unknown>);

describe("permission rules and confirmations", () => {
  it("asks before write_file by default, and approving runs it", async () => {
    const session = await sessionWith([{ toolCalls: [{ id: "w1", ...write("a.txt", "hello") }] }, { text: "done" }]);
    const { pending, done } = await turnWaiting(session.id);
    // No rule matched: the default decision (ASK) asked.
    expect(pending).toMatchObject({ toolName: "write_file", callId: "w1", rule: "", readOnly: false, sessionId: session.id });
    expect(JSON.parse(pending.argumentsJson)).toEqual({ path: "a.txt", content: "hello" });
    const reply = await t.client.confirmToolCall({ sessionId: session.id, confirmationId: pending.id, decision: ConfirmDecision.CONFIRM_DECISION_APPROVE });
    expect(reply.resolution).toMatchObject({ outcome: ConfirmationOutcome.CONFIRMATION_OUTCOME_APPROVED, runs: true, resolvedBy: "client:admin" });
    const events = await done;
    expect(cases(events)).toEqual([
      "turnStarted",
      "usage",
      "toolCall",
      "confirmationRequired",
      "confirmationResolved",
      "toolResult",
      "textDelta",
      "usage",
      "turnCompleted",
    ]);
    expect(await readFile(path.join(session.workspace, "a.txt"), "utf8")).toBe("hello");
    // Reading needs no one.
    expect((await t.client.listPendingConfirmations({ sessionId: session.id })).confirmations).toEqual([]);
  });

  it("a rejection becomes an error result that says why, and the turn goes on", async () => {
    const session = await sessionWith([{ toolCalls: [write("b.txt", "x")] }, { text: "ok, I won't" }]);
    const { pending, done } = await turnWaiting(session.id);
    await t.client.confirmToolCall({
      sessionId: session.id,
      confirmationId: pending.id,
      decision: ConfirmDecision.CONFIRM_DECISION_REJECT,
      reason: "not that file",
    });
    const events = await done;
    const [result] = payloads(events, "toolResult") as Array<{ toolResult: { output: string; isError: boolean } }>;
    expect(result!.toolResult).toMatchObject({ isError: true, output: "not run: the user rejected it: not that file" });
    expect(events.at(-1)!.payload?.$case).toBe("turnCompleted");
    await expect(readFile(path.join(session.workspace, "b.txt"))).rejects.toThrow();
  });

  it("runs edited arguments, and keeps the confirmation pending when they do not fit the schema", async () => {
    const session = await sessionWith([{ toolCalls: [write("c.txt", "original")] }, { text: "done" }]);
    const { pending, done } = await turnWaiting(session.id);
    const bad = await grpcError(
      t.client.confirmToolCall({
        sessionId: session.id,
        confirmationId: pending.id,
        decision: ConfirmDecision.CONFIRM_DECISION_APPROVE,
        editedArgumentsJson: JSON.stringify({ path: 7 }),
      }),
    );
    expect(bad.code).toBe(status.INVALID_ARGUMENT);
    expect(bad.details).toContain("the confirmation is still pending");
    expect((await t.client.listPendingConfirmations({ sessionId: session.id })).confirmations.map((c) => c.id)).toEqual([pending.id]);
    await t.client.confirmToolCall({
      sessionId: session.id,
      confirmationId: pending.id,
      decision: ConfirmDecision.CONFIRM_DECISION_APPROVE,
      editedArgumentsJson: JSON.stringify({ path: "c.txt", content: "edited" }),
    });
    await done;
    expect(await readFile(path.join(session.workspace, "c.txt"), "utf8")).toBe("edited");
  });

  it("re-checks edited arguments against the rules: an edit cannot reach what a rule denies", async () => {
    const session = await sessionWith([{ toolCalls: [write("ok.txt", "x")] }, { text: "done" }], {
      permissions: { deny: ["write_file(secret.txt)"], allow: [], defaultDecision: Decision.DECISION_ASK },
    });
    const { pending, done } = await turnWaiting(session.id);
    const denied = await grpcError(
      t.client.confirmToolCall({
        sessionId: session.id,
        confirmationId: pending.id,
        decision: ConfirmDecision.CONFIRM_DECISION_APPROVE,
        editedArgumentsJson: JSON.stringify({ path: "secret.txt", content: "pwned" }),
      }),
    );
    expect(denied.code).toBe(status.PERMISSION_DENIED);
    expect(denied.details).toBe('the edited call is denied by the rule "write_file(secret.txt)"; the confirmation is still pending');
    await t.client.confirmToolCall({ sessionId: session.id, confirmationId: pending.id, decision: ConfirmDecision.CONFIRM_DECISION_REJECT });
    await done;
    await expect(readFile(path.join(session.workspace, "secret.txt"))).rejects.toThrow();
  });

  it("a child may tighten its parent's policy, never loosen it", async () => {
    const parent = await sessionWith([{ text: "p" }], { permissions: { deny: ["bash"], allow: ["read_file"], defaultDecision: Decision.DECISION_ASK } });
    const { session: child } = await t.client.createChildSession({
      parentId: parent.id,
      config: { permissions: { allow: ["bash", "write_file"], defaultDecision: Decision.DECISION_ALLOW }, confirmation: { enabled: false } },
    });
    const { permissions, confirmation } = child!.config!;
    expect(permissions!.deny).toEqual(["bash"]);
    expect(permissions!.defaultDecision).toBe(Decision.DECISION_ASK);
    expect(confirmation!.enabled).toBe(true);
  });

  it("remember adds an allow rule, so the next call of that tool is not asked; for bash, the command prefix", async () => {
    const session = await sessionWith([{ toolCalls: [write("d1.txt", "1")] }, { toolCalls: [write("d2.txt", "2")] }, { text: "both" }]);
    const { pending, done } = await turnWaiting(session.id);
    const reply = await t.client.confirmToolCall({
      sessionId: session.id,
      confirmationId: pending.id,
      decision: ConfirmDecision.CONFIRM_DECISION_APPROVE,
      remember: true,
    });
    expect(reply.rememberedRule).toBe("write_file");
    const events = await done;
    expect(payloads(events, "confirmationRequired")).toHaveLength(1);
    expect(await readFile(path.join(session.workspace, "d2.txt"), "utf8")).toBe("2");
    expect((await t.client.getSession({ sessionId: session.id })).session!.config!.permissions!.allow).toContain("write_file");
  });

  it("bash asks; 'always' remembers the command prefix, so the next command with it runs unasked", async () => {
    const bash = (command: string) => ({ name: "bash", arguments: { command } });
    const session = await sessionWith([{ toolCalls: [bash("ls -a")] }, { toolCalls: [bash("ls .")] }, { toolCalls: [bash("pwd")] }, { text: "done" }]);
    const { pending, done } = await turnWaiting(session.id);
    expect(pending.toolName).toBe("bash");
    const reply = await t.client.confirmToolCall({ sessionId: session.id, confirmationId: pending.id, decision: ConfirmDecision.CONFIRM_DECISION_APPROVE, remember: true });
    expect(reply.rememberedRule).toBe("bash(ls:*)");
    // "ls ." runs without a question; "pwd" is another command and asks.
    const third = await waitFor(async () => {
      const [next] = (await t.client.listPendingConfirmations({ sessionId: session.id })).confirmations;
      return next && next.id !== pending.id ? next : undefined;
    });
    expect(JSON.parse(third.argumentsJson)).toEqual({ command: "pwd" });
    await t.client.confirmToolCall({ sessionId: session.id, confirmationId: third.id, decision: ConfirmDecision.CONFIRM_DECISION_REJECT });
    const events = await done;
    const results = payloads(events, "toolResult") as Array<{ toolResult: { output: string; isError: boolean } }>;
    expect(results.map((r) => r.toolResult.isError)).toEqual([false, false, true]);
    expect(payloads(events, "confirmationRequired")).toHaveLength(2);
  });

  it("deny beats allow, and says which rule denied", async () => {
    const session = await sessionWith([{ toolCalls: [{ name: "read_file", arguments: { path: "secrets/.env" } }] }, { text: "fine" }], {
      permissions: { deny: ["read_file(**/*.env)"], allow: ["read_file"], defaultDecision: Decision.DECISION_ASK },
    });
    await mkdir(session.workspace, { recursive: true });
    await writeFile(path.join(session.workspace, "x.env"), "KEY=1");
    const events = await collect(t.client.streamGenerate({ sessionId: session.id, prompt: "read it" }));
    expect(payloads(events, "permissionDenied")).toEqual([
      { $case: "permissionDenied", permissionDenied: { callId: expect.any(String), toolName: "read_file", rule: "read_file(**/*.env)" } },
    ]);
    const [result] = payloads(events, "toolResult") as Array<{ toolResult: { output: string } }>;
    expect(result!.toolResult.output).toBe('not run: the permission rule "read_file(**/*.env)" denies it');
  });

  it("refuses invalid rules with INVALID_ARGUMENT naming the rule", async () => {
    const error = await grpcError(t.client.createSession({ config: { permissions: { allow: ["write_file(src/**"] } } }));
    expect(error.code).toBe(status.INVALID_ARGUMENT);
    expect(error.details).toContain('permission rule "write_file(src/**"');
    const empty = await grpcError(t.client.createSession({ config: { permissions: { deny: ["bash()"] } } }));
    expect(empty.details).toContain("empty pattern");
  });

  it("applies the timeout action: reject, or approve", async () => {
    for (const [action, runs] of [
      [TimeoutAction.TIMEOUT_ACTION_REJECT, false],
      [TimeoutAction.TIMEOUT_ACTION_APPROVE, true],
    ] as const) {
      const session = await sessionWith([{ toolCalls: [write("e.txt", "late")] }, { text: "done" }], {
        confirmation: { enabled: true, timeoutMs: 100, timeoutAction: action },
      });
      const events = await collect(t.client.streamGenerate({ sessionId: session.id, prompt: "go" }));
      const [resolved] = payloads(events, "confirmationResolved") as Array<{ confirmationResolved: Record<string, unknown> }>;
      expect(resolved!.confirmationResolved).toMatchObject({ outcome: ConfirmationOutcome.CONFIRMATION_OUTCOME_TIMED_OUT, runs, resolvedBy: "timeout" });
      expect(await readFile(path.join(session.workspace, "e.txt"), "utf8").catch(() => null)).toBe(runs ? "late" : null);
    }
  });

  it("Cancel and DestroySession resolve a waiting confirmation as cancelled; Pause leaves it pending", async () => {
    const cancelled = await sessionWith([{ toolCalls: [write("f.txt", "x")] }, { text: "done" }]);
    const first = await turnWaiting(cancelled.id);
    await t.client.pause({ sessionId: cancelled.id });
    expect((await t.client.listPendingConfirmations({ sessionId: cancelled.id })).confirmations).toHaveLength(1);
    await t.client.cancel({ sessionId: cancelled.id });
    const events = await first.done;
    const [resolved] = payloads(events, "confirmationResolved") as Array<{ confirmationResolved: Record<string, unknown> }>;
    expect(resolved!.confirmationResolved).toMatchObject({ outcome: ConfirmationOutcome.CONFIRMATION_OUTCOME_CANCELLED, runs: false });
    expect(events.at(-1)!.payload?.$case).toBe("cancelled");
    const late = await grpcError(
      t.client.confirmToolCall({ sessionId: cancelled.id, confirmationId: first.pending.id, decision: ConfirmDecision.CONFIRM_DECISION_APPROVE }),
    );
    expect(late.code).toBe(status.FAILED_PRECONDITION);
    expect(late.details).toBe(`confirmation ${first.pending.id} was already decided: cancelled by cancel`);

    const destroyed = await sessionWith([{ toolCalls: [write("g.txt", "x")] }, { text: "done" }]);
    const second = await turnWaiting(destroyed.id);
    await t.client.destroySession({ sessionId: destroyed.id });
    const after = await second.done;
    expect(cases(after).slice(-2)).toEqual(["confirmationResolved", "cancelled"]);
  });

  it("two clients racing to confirm: exactly one wins", async () => {
    const session = await sessionWith([{ toolCalls: [write("h.txt", "x")] }, { text: "done" }]);
    const { pending, done } = await turnWaiting(session.id);
    const answers = await Promise.allSettled([
      t.client.confirmToolCall({ sessionId: session.id, confirmationId: pending.id, decision: ConfirmDecision.CONFIRM_DECISION_APPROVE }),
      t.client.confirmToolCall({ sessionId: session.id, confirmationId: pending.id, decision: ConfirmDecision.CONFIRM_DECISION_REJECT }),
    ]);
    expect(answers.filter((a) => a.status === "fulfilled")).toHaveLength(1);
    const loser = answers.find((a) => a.status === "rejected") as PromiseRejectedResult;
    expect(loser.reason.code).toBe(status.FAILED_PRECONDITION);
    await done;
    expect(await grpcError(t.client.confirmToolCall({ sessionId: session.id, confirmationId: "conf_nope", decision: ConfirmDecision.CONFIRM_DECISION_APPROVE }))).toMatchObject({
      code: status.NOT_FOUND,
    });
  });

  it("lists a child's confirmations on its parent, and the tools a session sees", async () => {
    const parent = await sessionWith([{ text: "parent" }]);
    const { session: child } = await t.client.createChildSession({
      parentId: parent.id,
      config: { model: scripted([{ toolCalls: [write("i.txt", "x")] }, { text: "done" }]) },
    });
    const call = t.client.streamGenerate({ sessionId: child!.id, prompt: "go" });
    const done = collect(call);
    const listed: PendingConfirmation = await waitFor(
      async () => (await t.client.listPendingConfirmations({ sessionId: parent.id, includeDescendants: true })).confirmations[0],
    );
    expect(listed.sessionId).toBe(child!.id);
    expect((await t.client.listPendingConfirmations({ sessionId: parent.id })).confirmations).toEqual([]);
    await t.client.confirmToolCall({ sessionId: child!.id, confirmationId: listed.id, decision: ConfirmDecision.CONFIRM_DECISION_APPROVE });
    await done;

    const idle = await grpcError(collect(t.client.watchTurn({ sessionId: parent.id })));
    expect(idle.code).toBe(status.FAILED_PRECONDITION);
    expect(idle.details).toBe(`session ${parent.id} has no running turn to watch`);

    const { tools } = await t.client.listTools({ sessionId: parent.id });
    const byName = Object.fromEntries(tools.map((tool) => [tool.name, tool.readOnly]));
    expect(byName).toMatchObject({ read_file: true, list_dir: true, write_file: false });
    expect(JSON.parse(tools.find((tool) => tool.name === "write_file")!.inputSchemaJson).type).toBe("object");
  });
});
