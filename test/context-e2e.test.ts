import { status, type ClientReadableStream } from "@grpc/grpc-js";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { AgentdClient } from "../src/client/client.js";
import {
  CompactionMethod,
  CompactionTrigger,
  ContextChangeKind,
  MessageKind,
  Role,
  type AgentEvent,
  type Message,
  type SessionConfig,
  type SubscribeResponse,
} from "../src/gen/agentd/v1/runtime.js";
import { hashToken, newToken } from "../src/server/auth/tokens.js";
import { spawnServer, type ServerProcess } from "./helpers/crash-server.js";
import { collect, grpcError, makeTempDir, removeTempDirs, scripted, startTestServer, waitFor, type ScriptStep, type TestServer } from "./helpers/harness.js";

/**
 * Context accounting, compaction, clear, rewind and fork over a real port, with the scripted model
 * quoting what it was sent ({{message_count}}, {{history}}, {{system_prompt}}).
 */

let t: TestServer;

beforeEach(async () => {
  t = await startTestServer();
});
afterEach(() => t.stop());
afterAll(removeTempDirs);

const answer = (text: string, inputTokens = 10): ScriptStep => ({ text, usage: { inputTokens, outputTokens: 5 } });
const COUNT: ScriptStep = { text: "count={{message_count}}" };
const HISTORY: ScriptStep = { text: "count={{message_count}}\n{{history}}" };

async function sessionWith(steps: ScriptStep[], config: Partial<SessionConfig> = {}, contextWindow?: number) {
  const model = { ...scripted(steps), ...(contextWindow === undefined ? {} : { contextWindow }) };
  const { session } = await t.client.createSession({ config: { ...config, model } });
  return session!;
}

async function turn(sessionId: string, prompt: string, client = t.client) {
  const events = await collect(client.streamGenerate({ sessionId, prompt }));
  const last = events.at(-1)!;
  if (last.payload?.$case !== "turnCompleted") throw new Error(`the turn did not complete: ${JSON.stringify(last.payload)}`);
  return { events, turnId: last.turnId, text: last.payload.turnCompleted.result!.text };
}

async function allMessages(client: AgentdClient, sessionId: string): Promise<Message[]> {
  return (await client.getMessages({ sessionId, pageSize: 1000 })).messages;
}

const compactions = (events: AgentEvent[]) => events.flatMap((e) => (e.payload?.$case === "contextCompacted" ? [e.payload.contextCompacted] : []));
const contextChanges = (events: AgentEvent[]) => events.flatMap((e) => (e.payload?.$case === "contextChanged" ? [e.payload.contextChanged] : []));

/** Reads a Subscribe stream until `done` holds for the events so far, then leaves it. */
async function eventsUntil(call: ClientReadableStream<SubscribeResponse>, done: (events: AgentEvent[], caughtUp: boolean) => boolean): Promise<AgentEvent[]> {
  const events: AgentEvent[] = [];
  let caughtUp = false;
  for await (const message of call as AsyncIterable<SubscribeResponse>) {
    if (message.event) events.push(message.event);
    if (message.caughtUp) caughtUp = true;
    if (done(events, caughtUp)) break;
  }
  call.cancel();
  return events;
}

/** Every event a session has stored, replayed from the start. */
const storedEvents = (client: AgentdClient, sessionId: string) => eventsUntil(client.subscribe({ sessionId, afterSequence: 0 }), (_, caughtUp) => caughtUp);

describe("GetContextUsage", () => {
  it("counts the last call's reported input plus what came since, against the configured window", async () => {
    const session = await sessionWith([answer("first answer", 100), answer("second answer", 180)], {}, 10_000);
    await turn(session.id, "hello");
    const first = (await t.client.getContextUsage({ sessionId: session.id })).usage!;
    // 100 reported + the answer and its framing, estimated at 4 characters a token.
    expect(first.tokens).toBeGreaterThan(100);
    expect(first.tokens).toBeLessThan(120);
    expect(first).toMatchObject({ contextWindow: 10_000, contextWindowSource: "config", autoCompact: true, autoCompactThreshold: 0.8 });
    expect(first.fraction).toBeCloseTo(first.tokens / 10_000, 6);
    expect(first).toMatchObject({ contextMessageCount: 2, transcriptMessageCount: 2, countMethod: "reported+estimate", lastCompactTime: undefined });

    await turn(session.id, "again");
    const second = (await t.client.getContextUsage({ sessionId: session.id })).usage!;
    expect(second.tokens).toBeGreaterThan(180);
    expect(second).toMatchObject({ contextMessageCount: 4, transcriptMessageCount: 4 });
  });

  it("says when the window is unknown, and then never compacts automatically", async () => {
    const session = await sessionWith([answer("hi")]);
    const usage = (await t.client.getContextUsage({ sessionId: session.id })).usage!;
    expect(usage).toMatchObject({ contextWindow: 0, contextWindowSource: "", fraction: 0, autoCompact: false, countMethod: "estimate" });
    expect(usage.tokens).toBeGreaterThan(0); // the system prompt and the tools
    expect(usage.note).toContain("config.model.context_window");
  });

  it("knows the windows of well-known models, and checks the settings", async () => {
    const { session } = await t.client.createSession({ config: { model: { provider: "openai", model: "gpt-4o-mini" } } });
    const usage = (await t.client.getContextUsage({ sessionId: session!.id })).usage!;
    expect(usage).toMatchObject({ contextWindow: 128_000, contextWindowSource: "known_model", autoCompact: true, countMethod: "o200k_base" });

    const bad = await grpcError(t.client.createSession({ config: { autoCompactThreshold: 1.5 } }));
    expect(bad.code).toBe(status.INVALID_ARGUMENT);
    expect(bad.details).toContain("auto_compact_threshold");
    const negative = await grpcError(t.client.createSession({ config: { model: { ...scripted([COUNT]), contextWindow: -1 } } }));
    expect(negative.code).toBe(status.INVALID_ARGUMENT);
  });

  it("carries the settings to children", async () => {
    const parent = await sessionWith([COUNT], { autoCompact: false, autoCompactThreshold: 0.5 });
    expect(parent.config).toMatchObject({ autoCompact: false, autoCompactThreshold: 0.5 });
    const { session: child } = await t.client.createChildSession({ parentId: parent.id });
    expect(child!.config).toMatchObject({ autoCompact: false, autoCompactThreshold: 0.5 });
    const { session: changed } = await t.client.configureSession({ sessionId: child!.id, config: { autoCompact: true } });
    expect(changed!.config).toMatchObject({ autoCompact: true, autoCompactThreshold: 0.5 });
  });
});

describe("CompactSession", () => {
  it("puts the model's summary in place of the older turns, keeps the last turns verbatim and the whole transcript", async () => {
    const session = await sessionWith([answer("a1"), answer("a2"), answer("a3"), answer("a4"), { text: "SUMMARY[{{system_prompt}}]" }, HISTORY]);
    for (const prompt of ["first prompt", "second prompt", "third prompt", "fourth prompt"]) await turn(session.id, prompt);
    const sequenceBefore = (await t.client.getSession({ sessionId: session.id })).session!.lastSequence;

    const { compaction, usage } = await t.client.compactSession({ sessionId: session.id, instructions: "keep the file names" });
    expect(compaction).toMatchObject({
      trigger: CompactionTrigger.COMPACTION_TRIGGER_MANUAL,
      method: CompactionMethod.COMPACTION_METHOD_SUMMARY,
      messagesBefore: 8,
      messagesAfter: 5,
      reason: "",
    });
    expect(compaction!.tokensBefore).toBeGreaterThan(0);
    expect(compaction!.tokensAfter).toBeGreaterThan(0);
    expect(usage!.lastCompactTime).toBeInstanceOf(Date);
    expect(usage).toMatchObject({ contextMessageCount: 5, transcriptMessageCount: 9 });

    // Nothing is lost: the transcript has every message, the summary appended and marked.
    const messages = await allMessages(t.client, session.id);
    expect(messages).toHaveLength(9);
    const summary = messages[8]!;
    expect(summary).toMatchObject({ id: compaction!.summaryMessageId, kind: MessageKind.MESSAGE_KIND_SUMMARY, role: Role.ROLE_USER, inContext: true });
    // The summariser was asked for goals, decisions, files and open tasks.
    for (const asked of ["User goals", "Decisions", "Files and artifacts", "Open tasks"]) expect(summary.text).toContain(asked);
    expect(messages.slice(0, 4).map((m) => m.inContext)).toEqual([false, false, false, false]);
    expect(messages.slice(4, 8).map((m) => m.inContext)).toEqual([true, true, true, true]);
    expect(messages.map((m) => m.contextStart)).toEqual([false, false, false, false, true, false, false, false, false]);
    expect(messages[4]!.text).toBe("third prompt");

    // The model's input is the summary, then the kept turns, then the new prompt.
    const fifth = await turn(session.id, "fifth prompt");
    const [count, ...lines] = fifth.text.split("\n");
    expect(count).toBe("count=6");
    expect(lines[0]).toMatch(/^user: \[This conversation was compacted/);
    expect(fifth.text).toContain("SUMMARY[You are compacting");
    expect(fifth.text).not.toContain("first prompt");
    expect(fifth.text).toContain("user: third prompt");
    expect(lines.at(-1)).toBe("user: fifth prompt");
    // A session-level event (context_compacted) said so, between the turns.
    expect((await t.client.getSession({ sessionId: session.id })).session!.lastSequence).toBeGreaterThan(sequenceBefore);
  });

  it("can be undone while only new messages came after it", async () => {
    const session = await sessionWith([answer("a1"), answer("a2"), answer("a3"), { text: "the summary" }, answer("a4"), COUNT]);
    for (const prompt of ["one", "two", "three"]) await turn(session.id, prompt);
    await t.client.compactSession({ sessionId: session.id });
    await turn(session.id, "four");
    const undone = await t.client.compactSession({ sessionId: session.id, undo: true });
    expect(undone).toMatchObject({ undone: true, compaction: undefined, usage: { contextMessageCount: 8, transcriptMessageCount: 9 } });
    expect((await turn(session.id, "five")).text).toBe("count=9");
    const again = await grpcError(t.client.compactSession({ sessionId: session.id, undo: true }));
    expect(again.code).toBe(status.FAILED_PRECONDITION);
    expect(again.details).toContain("RewindSession");
    const messages = await allMessages(t.client, session.id);
    expect(messages.find((m) => m.kind === MessageKind.MESSAGE_KIND_SUMMARY)!.inContext).toBe(false);
  });

  it("drops the oldest whole turns when the model fails to summarise, and says so", async () => {
    const session = await sessionWith([answer("a1"), answer("a2"), answer("a3"), { error: { code: "UNAVAILABLE", message: "summariser down" } }, HISTORY]);
    for (const prompt of ["one", "two", "three"]) await turn(session.id, prompt);
    const { compaction } = await t.client.compactSession({ sessionId: session.id });
    expect(compaction).toMatchObject({ method: CompactionMethod.COMPACTION_METHOD_TRUNCATION, summaryMessageId: "", messagesBefore: 6, messagesAfter: 5 });
    expect(compaction!.reason).toContain("summariser down");
    const next = await turn(session.id, "four");
    expect(next.text.split("\n")[0]).toBe("count=6");
    expect(next.text).toContain("left out to fit the model's context window");
    expect(next.text).not.toContain("user: one");
    expect(next.text).toContain("user: two");
    expect(await allMessages(t.client, session.id)).toHaveLength(8);
  });

  it("is refused while a turn runs, and when there is nothing older to compact", async () => {
    const session = await sessionWith([answer("a1"), { text: "slow", delayMs: 400 }]);
    const empty = await grpcError(t.client.compactSession({ sessionId: session.id }));
    expect(empty.code).toBe(status.FAILED_PRECONDITION);
    await turn(session.id, "one");
    const running = collect(t.client.streamGenerate({ sessionId: session.id, prompt: "two" }));
    await waitFor(async () => ((await t.client.getSession({ sessionId: session.id })).session!.turnActive ? true : undefined));
    for (const call of [
      t.client.compactSession({ sessionId: session.id }),
      t.client.clearContext({ sessionId: session.id }),
      t.client.rewindSession({ sessionId: session.id, turnId: "x" }),
    ]) {
      const error = await grpcError(call);
      expect(error.code).toBe(status.FAILED_PRECONDITION);
      expect(error.details).toContain("running a turn");
    }
    await running;
  });
});

describe("CompactSession on a session of one turn", () => {
  it("is refused: nothing is older than the turn kept verbatim, and the model is not asked", async () => {
    const session = await sessionWith([answer("a1"), answer("not a summary")]);
    await turn(session.id, "the only prompt");
    const error = await grpcError(t.client.compactSession({ sessionId: session.id }));
    expect(error.code).toBe(status.FAILED_PRECONDITION);
    expect(error.details).toContain("nothing old enough to compact: its context holds one turn");
    expect(error.details).toContain("keeps the newest turn verbatim");
    expect(await allMessages(t.client, session.id)).toHaveLength(2);
    expect((await t.client.getContextUsage({ sessionId: session.id })).usage).toMatchObject({ contextMessageCount: 2, lastCompactTime: undefined });
    // The script's next step is still there: no summary was asked for.
    expect((await turn(session.id, "next")).text).toBe("not a summary");
  });
});

describe("context events", () => {
  it("a compaction, its undo, a rewind and a clear are each a session-level event, in order", async () => {
    const session = await sessionWith([answer("a1"), answer("a2"), answer("a3"), { text: "the summary", usage: { inputTokens: 300, outputTokens: 40 } }]);
    await turn(session.id, "one");
    const two = await turn(session.id, "two");
    await turn(session.id, "three");
    const last = (await t.client.getSession({ sessionId: session.id })).session!.lastSequence;
    const seen = eventsUntil(t.client.subscribe({ sessionId: session.id, afterSequence: last }), (events) => events.length >= 4);

    const usageBefore = (await t.client.getSession({ sessionId: session.id })).session!.usage!;
    const { compaction } = await t.client.compactSession({ sessionId: session.id });
    // The summary's model call is accounted for, in the report and in the session's totals.
    expect(compaction!.summaryUsage).toEqual({ inputTokens: 300, outputTokens: 40, totalTokens: 340, costUsd: 0 });
    const usageAfter = (await t.client.getSession({ sessionId: session.id })).session!.usage!;
    expect(usageAfter.inputTokens - usageBefore.inputTokens).toBe(300);
    expect(usageAfter.outputTokens - usageBefore.outputTokens).toBe(40);
    const undone = await t.client.compactSession({ sessionId: session.id, undo: true });
    const rewound = await t.client.rewindSession({ sessionId: session.id, turnId: two.turnId });
    const cleared = await t.client.clearContext({ sessionId: session.id });

    const events = await seen;
    expect(events.map((e) => [e.payload?.$case, e.turnId])).toEqual([
      ["contextCompacted", ""],
      ["contextChanged", ""],
      ["contextChanged", ""],
      ["contextChanged", ""],
    ]);
    expect(compactions(events)).toEqual([compaction]);
    expect(contextChanges(events)).toEqual([
      { kind: ContextChangeKind.CONTEXT_CHANGE_KIND_UNDO_COMPACTION, messagesAffected: 2, turnId: "", messagesAfter: undone.usage!.contextMessageCount },
      { kind: ContextChangeKind.CONTEXT_CHANGE_KIND_REWIND, messagesAffected: rewound.messagesRewound, turnId: two.turnId, messagesAfter: rewound.usage!.contextMessageCount },
      { kind: ContextChangeKind.CONTEXT_CHANGE_KIND_CLEAR, messagesAffected: cleared.messagesCleared, turnId: "", messagesAfter: 0 },
    ]);
    expect([undone.usage!.contextMessageCount, rewound.messagesRewound, rewound.usage!.contextMessageCount, cleared.messagesCleared]).toEqual([6, 4, 2, 2]);
  });
});

describe("automatic compaction", () => {
  it("shows the model its summary first, in place of the older turns, though the transcript has it after the turn's prompt", async () => {
    const session = await sessionWith([answer("a1", 100), answer("a2", 900), { text: "the summary" }, HISTORY], { tools: { allow: ["none"] } }, 1_000);
    await turn(session.id, "one");
    await turn(session.id, "two");
    const third = await turn(session.id, "three");
    expect(compactions(third.events)).toHaveLength(1);
    // What the model was sent: the summary as the first (user) message, then the kept turn and the prompt.
    const [count, ...lines] = third.text.split("\n");
    expect(count).toBe("count=4");
    expect(lines[0]).toMatch(/^user: \[This conversation was compacted/);
    expect(lines.indexOf("the summary")).toBeGreaterThan(0);
    expect(lines.slice(lines.indexOf("the summary") + 1)).toEqual(["</summary>", "user: two", "assistant: a2", "user: three"]);
    // The transcript is in the order things happened: the summary was made once "three" was asked.
    const messages = await allMessages(t.client, session.id);
    expect(messages.map((m) => [m.kind === MessageKind.MESSAGE_KIND_SUMMARY ? "summary" : m.text.split("\n")[0], m.inContext])).toEqual([
      ["one", false],
      ["a1", false],
      ["two", true],
      ["a2", true],
      ["three", true],
      ["summary", true],
      ["count=4", true],
    ]);
    expect(messages[5]).toMatchObject({ role: Role.ROLE_USER, text: "the summary", turnId: third.turnId });
    expect(messages[2]!.contextStart).toBe(true);
  });

  it("compacts before a model call once the context passes the threshold, with its event", async () => {
    // No tools: what the model is sent is the short system prompt and the conversation, as the counts say.
    const session = await sessionWith([answer("a1", 100), answer("a2", 900), { text: "the summary" }, COUNT], { tools: { allow: ["none"] } }, 1_000);
    await turn(session.id, "one");
    const second = await turn(session.id, "two");
    expect(compactions(second.events)).toEqual([]);
    const third = await turn(session.id, "three");
    const [event] = compactions(third.events);
    expect(event).toMatchObject({
      trigger: CompactionTrigger.COMPACTION_TRIGGER_AUTOMATIC,
      method: CompactionMethod.COMPACTION_METHOD_SUMMARY,
      messagesBefore: 5,
      messagesAfter: 4,
    });
    expect(event!.tokensBefore).toBeGreaterThanOrEqual(900);
    expect(event!.tokensAfter).toBeLessThan(event!.tokensBefore);
    expect(third.text).toBe("count=4");
    const kinds = third.events.map((e) => e.payload?.$case);
    expect(kinds.indexOf("contextCompacted")).toBeLessThan(kinds.indexOf("textDelta"));
  });

  it("does nothing when auto_compact is off", async () => {
    const session = await sessionWith([answer("a1", 100), answer("a2", 900), COUNT], { autoCompact: false }, 1_000);
    for (const prompt of ["one", "two"]) await turn(session.id, prompt);
    const third = await turn(session.id, "three");
    expect(compactions(third.events)).toEqual([]);
    expect(third.text).toBe("count=5");
  });

  it("answers a provider's context overflow with one compaction and a retry", async () => {
    const session = await sessionWith([
      answer("a1"),
      answer("a2"),
      { error: { code: "INVALID_ARGUMENT", message: "context_length_exceeded: this model's maximum context length is 1000 tokens" } },
      { text: "the summary" },
      COUNT,
    ]);
    for (const prompt of ["one", "two"]) await turn(session.id, prompt);
    const third = await turn(session.id, "three");
    const [event] = compactions(third.events);
    expect(event).toMatchObject({ trigger: CompactionTrigger.COMPACTION_TRIGGER_OVERFLOW, method: CompactionMethod.COMPACTION_METHOD_SUMMARY });
    expect(third.text).toBe("count=4");
  });

  it("fails the turn when the retry overflows again", async () => {
    const overflow: ScriptStep = { error: { code: "INVALID_ARGUMENT", message: "prompt is too long: 300000 tokens > 200000 maximum" } };
    const session = await sessionWith([answer("a1"), answer("a2"), overflow, { text: "the summary" }, overflow]);
    for (const prompt of ["one", "two"]) await turn(session.id, prompt);
    const events = await collect(t.client.streamGenerate({ sessionId: session.id, prompt: "three" }));
    expect(compactions(events)).toHaveLength(1);
    expect(events.at(-1)!.payload).toMatchObject({ $case: "error", error: { code: "INVALID_ARGUMENT" } });
  });
});

describe("ClearContext", () => {
  it("starts the model's context afresh and keeps the transcript", async () => {
    const session = await sessionWith([answer("a1"), answer("a2"), HISTORY]);
    for (const prompt of ["one", "two"]) await turn(session.id, prompt);
    const { messagesCleared, usage } = await t.client.clearContext({ sessionId: session.id });
    expect(messagesCleared).toBe(4);
    expect(usage).toMatchObject({ contextMessageCount: 0, transcriptMessageCount: 4 });
    const next = await turn(session.id, "three");
    expect(next.text).toBe("count=1\nuser: three");
    const messages = await allMessages(t.client, session.id);
    expect(messages.map((m) => m.inContext)).toEqual([false, false, false, false, true, true]);
    expect(messages[4]!.contextStart).toBe(true);
  });
});

describe("RewindSession", () => {
  it("ends the model's context before a turn, marks the rewound part, and says files stay", async () => {
    const session = await sessionWith([
      answer("a1"),
      { text: "writing", toolCalls: [{ name: "write_file", arguments: { path: "notes.txt", content: "from turn two" } }] },
      answer("a2"),
      answer("a3"),
      HISTORY,
    ]);
    await turn(session.id, "one");
    const two = await turn(session.id, "two");
    await turn(session.id, "three");
    const reply = await t.client.rewindSession({ sessionId: session.id, turnId: two.turnId });
    expect(reply.messagesRewound).toBe(6); // two, its call, the result, its answer; three and its answer
    expect(reply.note).toContain("not restored");
    expect(reply.usage).toMatchObject({ contextMessageCount: 2, transcriptMessageCount: 8 });

    const next = await turn(session.id, "four");
    expect(next.text).toBe("count=3\nuser: one\nassistant: a1\nuser: four");
    const messages = await allMessages(t.client, session.id);
    expect(messages.map((m) => m.rewound)).toEqual([false, false, true, true, true, true, true, true, false, false]);
    expect(messages.map((m) => m.inContext)).toEqual([true, true, false, false, false, false, false, false, true, true]);

    const unknown = await grpcError(t.client.rewindSession({ sessionId: session.id, turnId: "no-such-turn" }));
    expect(unknown.code).toBe(status.NOT_FOUND);
    const missing = await grpcError(t.client.rewindSession({ sessionId: session.id, turnId: "" }));
    expect(missing.code).toBe(status.INVALID_ARGUMENT);
  });

  it("to a turn before a compaction gives back the context the model had then", async () => {
    const session = await sessionWith([answer("a1"), answer("a2"), answer("a3"), { text: "the summary" }, answer("a4"), HISTORY]);
    await turn(session.id, "one");
    const two = await turn(session.id, "two");
    await turn(session.id, "three");
    await t.client.compactSession({ sessionId: session.id });
    await turn(session.id, "four");
    await t.client.rewindSession({ sessionId: session.id, turnId: two.turnId });
    const next = await turn(session.id, "five");
    expect(next.text).toBe("count=3\nuser: one\nassistant: a1\nuser: five");
  });
});

describe("ForkSession", () => {
  it("makes a session with the history before a turn and the same configuration; both go on independently", async () => {
    const session = await sessionWith([answer("a1"), answer("a2"), answer("a3"), HISTORY, HISTORY], { systemPrompt: "be brief" });
    await turn(session.id, "one");
    await turn(session.id, "two");
    const three = await turn(session.id, "three");
    const { session: fork, messagesCopied, note } = await t.client.forkSession({ sessionId: session.id, turnId: three.turnId });
    expect(messagesCopied).toBe(4);
    expect(note).toContain("same workspace");
    expect(fork).toMatchObject({ owner: session.owner, workspace: session.workspace, messageCount: 4, labels: { "agentd.fork_of": session.id } });
    expect(fork!.id).not.toBe(session.id);
    expect(fork!.config).toEqual(session.config);

    const inFork = await turn(fork!.id, "three, differently");
    expect(inFork.text).toBe("count=5\nuser: one\nassistant: a1\nuser: two\nassistant: a2\nuser: three, differently");
    const inOriginal = await turn(session.id, "four");
    expect(inOriginal.text.split("\n")[0]).toBe("count=7");
    expect(await allMessages(t.client, fork!.id)).toHaveLength(6);
    expect(await allMessages(t.client, session.id)).toHaveLength(8);

    const whole = await t.client.forkSession({ sessionId: session.id });
    expect(whole.messagesCopied).toBe(8);
  });
});

describe("owners", () => {
  it("are checked: another owner's session is not found", async () => {
    await t.stop();
    const dir = await makeTempDir("agentd-context-auth-");
    const [alice, bob] = [newToken(), newToken()];
    const tokensFile = path.join(dir, "tokens.json");
    await writeFile(
      tokensFile,
      JSON.stringify({ tokens: [{ sha256: hashToken(alice), owner: "alice", role: "user" }, { sha256: hashToken(bob), owner: "bob", role: "user" }] }),
    );
    t = await startTestServer({ config: { auth: { tokensFile } } });
    const asAlice = new AgentdClient(t.server.address, { token: alice });
    const asBob = new AgentdClient(t.server.address, { token: bob });
    try {
      const { session } = await asAlice.createSession({ config: { model: scripted([answer("a1")]) } });
      const id = session!.id;
      for (const call of [
        asBob.getContextUsage({ sessionId: id }),
        asBob.compactSession({ sessionId: id }),
        asBob.clearContext({ sessionId: id }),
        asBob.rewindSession({ sessionId: id, turnId: "t" }),
        asBob.forkSession({ sessionId: id }),
      ]) {
        expect((await grpcError(call)).code).toBe(status.NOT_FOUND);
      }
      expect((await asAlice.clearContext({ sessionId: id })).messagesCleared).toBe(0);
    } finally {
      asAlice.close();
      asBob.close();
    }
  });
});

describe("durability", () => {
  it("a compaction, its undo, a rewind and a clear survive a kill -9 right after their reply, with their events", async () => {
    const dataDir = await makeTempDir("agentd-context-kill-");
    // No background write comes within the test: what is stored was stored for a reply.
    const configFile = path.join(dataDir, "config.json");
    await writeFile(configFile, JSON.stringify({ persistence: { debounceMs: 600_000 } }));
    let server: ServerProcess = await spawnServer(dataDir, ["--config", configFile]);
    let client = new AgentdClient(server.address);
    const killAndRestart = async () => {
      await server.kill();
      client.close();
      server = await spawnServer(dataDir, ["--config", configFile]);
      client = new AgentdClient(server.address);
    };
    const usage = async () => (await client.getContextUsage({ sessionId: id })).usage!;
    const lastStored = async () => (await storedEvents(client, id)).at(-1)?.payload;
    let id = "";
    try {
      const { session } = await client.createSession({ config: { model: scripted([answer("a1"), answer("a2"), answer("a3"), { text: "the summary" }]) } });
      id = session!.id;
      await turn(id, "one", client);
      const two = await turn(id, "two", client);
      await turn(id, "three", client);

      const { compaction } = await client.compactSession({ sessionId: id });
      await killAndRestart();
      expect(await usage()).toMatchObject({ contextMessageCount: 5, transcriptMessageCount: 7 });
      expect((await allMessages(client, id)).at(-1)).toMatchObject({ id: compaction!.summaryMessageId, kind: MessageKind.MESSAGE_KIND_SUMMARY });
      expect(await lastStored()).toEqual({ $case: "contextCompacted", contextCompacted: compaction });

      await client.compactSession({ sessionId: id, undo: true });
      await killAndRestart();
      expect(await usage()).toMatchObject({ contextMessageCount: 6 });
      expect(await lastStored()).toMatchObject({ $case: "contextChanged", contextChanged: { kind: ContextChangeKind.CONTEXT_CHANGE_KIND_UNDO_COMPACTION } });

      await client.rewindSession({ sessionId: id, turnId: two.turnId });
      await killAndRestart();
      expect(await usage()).toMatchObject({ contextMessageCount: 2 });
      expect(await lastStored()).toMatchObject({ $case: "contextChanged", contextChanged: { kind: ContextChangeKind.CONTEXT_CHANGE_KIND_REWIND, turnId: two.turnId } });

      await client.clearContext({ sessionId: id });
      await killAndRestart();
      expect(await usage()).toMatchObject({ contextMessageCount: 0 });
      expect(await lastStored()).toMatchObject({ $case: "contextChanged", contextChanged: { kind: ContextChangeKind.CONTEXT_CHANGE_KIND_CLEAR, messagesAffected: 2 } });
    } finally {
      client.close();
      await server.kill();
    }
  }, 60_000);
});

describe("persistence", () => {
  it("keeps compactions, clears, rewinds and the settings across a restart", async () => {
    const session = await sessionWith([answer("a1"), answer("a2"), answer("a3"), { text: "the summary" }, answer("a4"), HISTORY], { autoCompactThreshold: 0.6 }, 50_000);
    for (const prompt of ["one", "two", "three"]) await turn(session.id, prompt);
    await t.client.compactSession({ sessionId: session.id });
    const four = await turn(session.id, "four");
    await t.client.rewindSession({ sessionId: session.id, turnId: four.turnId });
    const before = await allMessages(t.client, session.id);
    const usageBefore = (await t.client.getContextUsage({ sessionId: session.id })).usage!;
    const dataDir = t.dataDir;
    await t.stop();

    t = await startTestServer({ dataDir });
    const after = await allMessages(t.client, session.id);
    expect(after).toEqual(before);
    expect(after.filter((m) => m.kind === MessageKind.MESSAGE_KIND_SUMMARY)).toHaveLength(1);
    const usageAfter = (await t.client.getContextUsage({ sessionId: session.id })).usage!;
    expect(usageAfter).toMatchObject({
      contextMessageCount: usageBefore.contextMessageCount,
      transcriptMessageCount: usageBefore.transcriptMessageCount,
      lastCompactTime: usageBefore.lastCompactTime,
      autoCompactThreshold: 0.6,
      contextWindow: 50_000,
    });
    const next = await turn(session.id, "five");
    expect(next.text.split("\n").slice(0, 2)).toEqual(["count=6", expect.stringMatching(/^user: \[This conversation was compacted/)]);
    expect(next.text).toContain("user: two");
    expect(next.text).not.toContain("user: four");
  });
});
