import { describe, expect, it } from "vitest";
import { ContextService } from "../../src/context/service.js";
import type { TokenCounter } from "../../src/context/tokens.js";
import { TRUNCATION_NOTE } from "../../src/context/view.js";
import type { TurnEvent } from "../../src/events/types.js";
import { failedPrecondition } from "../../src/errors.js";
import { ScriptedClient } from "../../src/llm/scripted.js";
import type { LlmClient } from "../../src/llm/types.js";
import { createLogger } from "../../src/logging.js";
import { DEFAULT_CONFIRMATION, DEFAULT_PERMISSIONS } from "../../src/policy/types.js";
import { newSessionRecord } from "../../src/session/new-session.js";
import { Session } from "../../src/session/session.js";
import type { Message, SessionConfig } from "../../src/session/types.js";
import { turnContext } from "../helpers/turn-context.js";
import { exchange } from "./messages.js";

const logger = createLogger("silent");

function sessionWith(messages: Message[], config: Partial<SessionConfig> = {}): Session {
  const record = newSessionRecord({
    id: "s1",
    owner: "o",
    parentId: null,
    workspace: "/tmp",
    ephemeral: true,
    labels: {},
    config: {
      model: { provider: "scripted", model: "script", baseUrl: "", apiKeyEnv: "", scriptPath: "", scriptJson: "", contextWindow: 1_000 },
      systemPrompt: "be brief",
      limits: { maxToolRounds: 5, toolTimeoutMs: 0 },
      permissions: DEFAULT_PERMISSIONS,
      confirmation: DEFAULT_CONFIRMATION,
      tools: null,
      ...config,
    },
  });
  return new Session({ ...record, messages: structuredClone(messages) }, () => {});
}

function service(clientFor: () => LlmClient): ContextService {
  return new ContextService({ clientFor, environment: () => ({ systemPrompt: "be brief", tools: [] }), logger });
}

const environment = { systemPrompt: "be brief", tools: [] };

describe("the context service", () => {
  it("drops the oldest turns when the session has no usable model, and says why", async () => {
    const session = sessionWith(["t1", "t2", "t3"].flatMap(exchange));
    const report = await service(() => {
      throw failedPrecondition("no API key for provider");
    }).compact(session, { instructions: "", apiKey: "" });
    expect(report).toMatchObject({ method: "truncation", trigger: "manual", messagesBefore: 6, messagesAfter: 5, summaryMessageId: "" });
    expect(report.reason).toContain("no usable model (no API key for provider)");
    expect(session.transcript()).toHaveLength(6);
    expect(session.context.compacting).toBe(false);
  });

  it("blocks turns while a CompactSession summarises", async () => {
    const session = sessionWith(["t1", "t2", "t3"].flatMap(exchange));
    const slow = new ScriptedClient({ steps: [{ text: "summary", delayMs: 50 }], repeat: false });
    const contexts = service(() => slow);
    const compaction = contexts.compact(session, { instructions: "", apiKey: "" });
    expect(() => contexts.checkTurnMayStart(session)).toThrow("compacting");
    await expect(contexts.clear(session)).rejects.toThrow("compacting");
    expect((await compaction).method).toBe("summary");
    expect(() => contexts.checkTurnMayStart(session)).not.toThrow();
  });

  it("guards a turn: compacts past the threshold with the turn's model, and records each call's size", async () => {
    const session = sessionWith(["t1", "t2", "t3"].flatMap(exchange));
    const llm = new ScriptedClient({ steps: [{ text: "the summary" }], repeat: false });
    const guard = service(() => llm).guard(session, llm, turnContext());
    const events: TurnEvent[] = [];
    session.context.recordCall(100, session.messageCount);
    await guard.beforeModelCall(environment, (e) => events.push(e));
    expect(events).toEqual([]);
    session.context.recordCall(850, session.messageCount);
    await guard.beforeModelCall(environment, (e) => events.push(e));
    expect(events).toEqual([{ type: "context_compacted", report: expect.objectContaining({ trigger: "automatic", method: "summary", tokensBefore: 850 }) }]);
    expect(session.context.modelMessages(session.transcript()).map((m) => m.kind ?? m.text)).toEqual(["summary", "t2 prompt", "t2 answer", "t3 prompt", "t3 answer"]);
  });

  it("retries after an overflow only when auto_compact is on", async () => {
    const overflow = failedPrecondition("context_length_exceeded");
    const llm = new ScriptedClient({ steps: [{ text: "the summary" }], repeat: false });
    const off = sessionWith(["t1", "t2"].flatMap(exchange), { context: { autoCompact: false } });
    expect(await service(() => llm).guard(off, llm, turnContext()).compactAfterError(overflow, environment, () => {})).toBe(false);
    const on = sessionWith(["t1", "t2"].flatMap(exchange));
    const guard = service(() => llm).guard(on, llm, turnContext());
    expect(await guard.compactAfterError(new Error("boom"), environment, () => {})).toBe(false);
    expect(await guard.compactAfterError(overflow, environment, () => {})).toBe(true);
  });

  it("counts each message's tokens once, however often the usage is asked for after changes", async () => {
    const session = sessionWith(["t1", "t2", "t3"].flatMap(exchange));
    const counted: string[] = [];
    const counter: TokenCounter = {
      method: "counting",
      count: (text) => {
        counted.push(text);
        return Math.ceil(text.length / 4);
      },
    };
    const contexts = new ContextService({
      clientFor: () => {
        throw failedPrecondition("no model");
      },
      environment: () => environment,
      logger,
      tokenCounter: async () => counter,
    });
    const first = await contexts.usage(session);
    await contexts.usage(session);
    // After each change the whole context is counted: from what was counted before.
    await contexts.rewind(session, "t3");
    expect((await contexts.usage(session)).tokens).toBeLessThan(first.tokens);
    await contexts.compact(session, { instructions: "", apiKey: "" });
    await contexts.usage(session);
    await contexts.usage(session);
    expect(counted.sort()).toEqual([TRUNCATION_NOTE, "be brief", "t1 answer", "t1 prompt", "t2 answer", "t2 prompt", "t3 answer", "t3 prompt"].sort());
  });

  it("forks the history before a turn with new ids and the context operations recorded before it", async () => {
    const session = sessionWith(["t1", "t2", "t3"].flatMap(exchange));
    await service(() => {
      throw new Error("unused");
    }).clear(session);
    const seed = service(() => {
      throw new Error("unused");
    }).forkSeed(session, "t3");
    expect(seed.messages.map((m) => m.text)).toEqual(["t1 prompt", "t1 answer", "t2 prompt", "t2 answer"]);
    expect(seed.messages[0]!.id).not.toBe(session.transcript()[0]!.id);
    expect(seed.context).toBeUndefined(); // the clear came after t3 started
  });
});
