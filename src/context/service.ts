import { randomUUID } from "node:crypto";
import type { ContextGuard } from "../agent/loop.js";
import type { TurnContext } from "../agent/turn-context.js";
import { AgentdError, errorMessage, failedPrecondition, isAbortError, notFound } from "../errors.js";
import { isContextOverflow } from "../llm/overflow.js";
import type { LlmClient, LlmToolDefinition } from "../llm/types.js";
import type { Logger } from "../logging.js";
import type { Session } from "../session/session.js";
import type { Message, UsageTotals } from "../session/types.js";
import type { ContextRecord } from "./types.js";
import { KEEP_TURNS, KEEP_WINDOW_SHARE, planCompaction } from "./plan.js";
import { contextSettingsOf } from "./settings.js";
import { summarize, summaryRequest } from "./summary.js";
import { cachedMessageTokens, environmentTokens, tokenCounterFor, type TokenCounter } from "./tokens.js";
import type { CompactionReport, CompactionTrigger, ContextChange, ContextOp, ContextUsage, MessageMark } from "./types.js";
import { contextIndexes, messageMarks } from "./view.js";
import { contextWindowOf } from "./windows.js";

/** What a session's model is sent besides the conversation. */
export interface ModelEnvironment {
  systemPrompt: string;
  tools: readonly LlmToolDefinition[];
}

export interface ContextServiceDeps {
  /** The session's model client; throws (FAILED_PRECONDITION) when it has no model or no key. */
  clientFor(session: Session, apiKey: string): LlmClient;
  /** The system prompt and tools the session's model would be sent now. */
  environment(session: Session): ModelEnvironment;
  logger: Logger;
  /** How long a summary may take outside a turn; default 5 minutes. */
  summaryTimeoutMs?: number;
  /** The token counter of a session's model; default tokenCounterFor (tests count the counting). */
  tokenCounter?: (model: Session["config"]["model"]) => Promise<TokenCounter>;
  /** What a summary call costs (the session's model's price); none: 0. */
  costOf?: (session: Session, usage: { inputTokens: number; outputTokens: number }) => number;
  /** Rejects (RESOURCE_EXHAUSTED) when the session or its owner has spent their budget: a summary is a paid model call. */
  checkBudget?: (session: Session) => Promise<void>;
}

/** What a summariser may be given, in characters, when the window is unknown. */
const UNKNOWN_WINDOW_INPUT_CHARS = 400_000;

export const WORKSPACE_NOT_RESTORED =
  "only the model's context was changed: files the session's tools wrote in its workspace are not restored";

/**
 * Context accounting and the operations on a session's model context: compaction (manual and
 * automatic), clear and rewind, and the guard that keeps a turn's model calls within the window.
 * The transcript is never changed: each operation is recorded in the session's context record, and
 * a compaction appends its summary as a new message.
 */
export class ContextService {
  constructor(private readonly deps: ContextServiceDeps) {}

  /** Refuses to start a turn while CompactSession summarises. */
  checkTurnMayStart(session: Session): void {
    if (session.context.compacting) {
      throw failedPrecondition(`session ${session.id} is compacting its context; start the turn once CompactSession has returned`);
    }
  }

  /** How full the context is. */
  async usage(session: Session): Promise<ContextUsage> {
    const model = session.config.model;
    const window = contextWindowOf(model);
    const settings = contextSettingsOf(session.config);
    const { tokens, method } = await this.tokens(session);
    const messages = session.transcript();
    const inContext = session.context.modelMessages(messages).length;
    const lastCompaction = session.context.operations.findLast((op) => op.type === "compact");
    const autoCompact = settings.autoCompact && window.tokens > 0;
    let note: string;
    if (!model) note = "the session has no model: no context window is known and nothing is compacted automatically";
    else if (window.tokens === 0) {
      note = `the context window of ${model.provider} model "${model.model}" is unknown: set config.model.context_window to enable automatic compaction`;
    } else if (!settings.autoCompact) note = "automatic compaction is off (config.auto_compact)";
    else note = `compacts automatically before a model call past ${Math.round(settings.autoCompactThreshold * 100)}% of the window`;
    return {
      tokens,
      contextWindow: window.tokens,
      windowSource: window.source,
      fraction: window.tokens > 0 ? tokens / window.tokens : 0,
      autoCompact,
      autoCompactThreshold: settings.autoCompactThreshold,
      contextMessages: inContext,
      transcriptMessages: messages.length,
      lastCompactedAtMs: lastCompaction?.atMs ?? 0,
      countMethod: method,
      note,
    };
  }

  /** How each message of a page of the transcript stands towards the context. */
  marks(session: Session, offset: number, count: number): MessageMark[] {
    return messageMarks(session.transcript(), session.context.view(), offset, count);
  }

  /** CompactSession: summarise the older part now (or drop it when no model can), between turns. */
  async compact(session: Session, options: { instructions: string; apiKey: string }): Promise<CompactionReport> {
    this.checkIdle(session, "compact its context");
    session.context.compacting = true;
    let report: CompactionReport | null;
    let stored: Promise<void>;
    try {
      let llm: LlmClient | null = null;
      let reason = "";
      try {
        llm = this.deps.clientFor(session, options.apiKey);
      } catch (error) {
        reason = `no usable model (${errorMessage(error)})`;
      }
      const signal = AbortSignal.timeout(this.deps.summaryTimeoutMs ?? 5 * 60_000);
      const context: TurnContext = { sessionId: session.id, turnId: "", signal, logger: this.deps.logger.child({ sessionId: session.id }) };
      report = await this.compactNow(session, { trigger: "manual", llm, reason, context, instructions: options.instructions, turnId: "" });
      if (!report) throw failedPrecondition(`session ${session.id} has nothing old enough to compact: ${whatIsKept(session)}`);
      // Stamped while turns are still held off, so that no turn's event comes before it.
      stored = session.emitDurably({ type: "context_compacted", report });
    } finally {
      session.context.compacting = false;
    }
    // The reply acknowledges the compaction: it waits until the store has it.
    await stored;
    return report;
  }

  /**
   * CompactSession with undo: the last compaction is undone when nothing but new messages came after
   * it, so the model sees again what its summary stood for (the summary stays in the transcript).
   */
  async undoCompaction(session: Session): Promise<number> {
    this.checkIdle(session, "undo a compaction");
    const last = session.context.operations.at(-1);
    if (last?.type !== "compact") {
      const what = last === undefined ? "the context was never compacted" : `the last change to the context was a ${last.type === "uncompact" ? "compaction undone already" : last.type}`;
      throw failedPrecondition(`session ${session.id} has no compaction to undo: ${what}; RewindSession to a turn before a compaction gives back the context of that time`);
    }
    const before = contextIndexes(session.transcript(), session.context.view()).length;
    session.context.apply({ type: "uncompact", at: session.messageCount, atMs: Date.now() });
    const restored = contextIndexes(session.transcript(), session.context.view()).length - before;
    await this.announce(session, { kind: "undo_compaction", messages: restored, turnId: "" });
    return restored;
  }

  /** ClearContext: the model's context starts afresh with the next message; returns how many messages left it. */
  async clear(session: Session): Promise<number> {
    this.checkIdle(session, "clear its context");
    const before = contextIndexes(session.transcript(), session.context.view()).length;
    session.context.apply({ type: "clear", at: session.messageCount, atMs: Date.now() });
    await this.announce(session, { kind: "clear", messages: before, turnId: "" });
    return before;
  }

  /**
   * RewindSession: the context becomes what the model had when that turn started, without that turn
   * and the ones after it. Returns how many messages of the transcript were rewound.
   */
  async rewind(session: Session, turnId: string): Promise<number> {
    this.checkIdle(session, "rewind");
    const from = turnStart(session.transcript(), turnId, session.id);
    session.context.apply({ type: "rewind", at: session.messageCount, from, turnId, atMs: Date.now() });
    const rewound = session.transcript().slice(from).filter((m) => m.kind !== "summary").length;
    await this.announce(session, { kind: "rewind", messages: rewound, turnId });
    return rewound;
  }

  /**
   * Publishes a clear, rewind or undo as a `context_changed` event, stamped now with the change so
   * that no other event comes between; resolves once the store has both (the reply acknowledges them).
   */
  private announce(session: Session, change: Omit<ContextChange, "messagesAfter">): Promise<void> {
    const messagesAfter = session.context.modelMessages(session.transcript()).length;
    return session.emitDurably({ type: "context_changed", change: { ...change, messagesAfter } });
  }

  /**
   * What a fork of the session starts with: the transcript up to (not including) the turn, with
   * new ids, and the context operations recorded before it. `turnId` "" takes everything.
   */
  forkSeed(session: Session, turnId: string): { messages: Message[]; context: ContextRecord | undefined } {
    const messages = session.transcript();
    let end = messages.length;
    if (turnId === "") {
      if (session.activeTurnId !== null) throw failedPrecondition(`session ${session.id} is running a turn; name a finished turn to fork before, or wait for the turn to end`);
    } else {
      end = turnStart(messages, turnId, session.id);
    }
    const ops = session.context.operations.filter((op) => op.at <= end);
    return {
      messages: messages.slice(0, end).map((m) => ({ ...structuredClone(m), id: randomUUID() })),
      context: ops.length > 0 ? { ops: structuredClone(ops), lastCall: null } : undefined,
    };
  }

  /** The guard of one turn: compaction before a model call past the threshold, and once after an overflow. */
  guard(session: Session, llm: LlmClient, context: TurnContext): ContextGuard {
    return {
      beforeModelCall: async (environment, emit) => {
        const settings = contextSettingsOf(session.config);
        const window = contextWindowOf(session.config.model).tokens;
        if (!settings.autoCompact || window === 0) return;
        const { tokens } = await this.tokens(session, environment);
        if (tokens < settings.autoCompactThreshold * window) return;
        const report = await this.compactNow(session, { trigger: "automatic", llm, reason: "", context, instructions: "", turnId: context.turnId, environment, tokensBefore: tokens });
        if (report) emit({ type: "context_compacted", report });
        else context.logger.warn({ tokens, window }, "the context is past its compaction threshold, but holds nothing older to compact");
      },
      afterModelCall: (inputTokens) => session.context.recordCall(inputTokens, session.messageCount),
      compactAfterError: async (error, environment, emit) => {
        if (!isContextOverflow(error) || !contextSettingsOf(session.config).autoCompact) return false;
        context.logger.warn({ err: error }, "the model's context overflowed; compacting and trying once more");
        const report = await this.compactNow(session, { trigger: "overflow", llm, reason: "", context, instructions: "", turnId: context.turnId, environment });
        if (!report) return false;
        emit({ type: "context_compacted", report });
        return true;
      },
    };
  }

  /** Compacts the context; null when there is nothing to compact. Summarises when it can, else truncates. */
  private async compactNow(
    session: Session,
    options: {
      trigger: CompactionTrigger;
      llm: LlmClient | null;
      /** Why there is no model, when llm is null. */
      reason: string;
      context: TurnContext;
      instructions: string;
      turnId: string;
      environment?: ModelEnvironment;
      tokensBefore?: number;
    },
  ): Promise<CompactionReport | null> {
    const counter = await this.counterFor(session);
    const environment = options.environment ?? this.deps.environment(session);
    const messages = session.transcript();
    const view = session.context.view();
    const window = contextWindowOf(session.config.model).tokens;
    const tokensOf = (message: Message) => cachedMessageTokens(message, counter);
    const plan = planCompaction(messages, view, {
      keepTokens: window > 0 ? Math.floor(window * KEEP_WINDOW_SHARE) : null,
      tokensOf,
      // A turn may cut into its own long run of steps; CompactSession only when the newest turn alone is too big.
      wholeNewestTurn: options.trigger === "manual",
    });
    if (!plan) return null;
    const tokensBefore = options.tokensBefore ?? (await this.tokens(session, environment)).tokens;
    const messagesBefore = session.context.modelMessages(messages).length;
    // The preamble (an earlier summary, a truncation note) is part of what the new summary replaces.
    const preamble = session.context.modelMessages(messages)[0];
    const head = preamble?.kind === "summary" ? [preamble, ...plan.head] : plan.head;

    let summary: string | null = null;
    const summaryUsage: UsageTotals = { inputTokens: 0, outputTokens: 0 };
    let reason = options.reason;
    if (options.llm) {
      await this.deps.checkBudget?.(session);
      const maxChars = window > 0 ? Math.floor(window * 0.6) * 4 : UNKNOWN_WINDOW_INPUT_CHARS;
      const request = summaryRequest(head, { instructions: options.instructions, maxChars, maxOutputTokens: summaryOutputTokens(session, window) });
      try {
        const answer = await summarize(options.llm, request, options.context);
        summary = answer.summary;
        summaryUsage.inputTokens = answer.usage.inputTokens;
        summaryUsage.outputTokens = answer.usage.outputTokens;
        // The summary is a model call like a turn's: the session pays for it.
        const cost = this.deps.costOf?.(session, summaryUsage) ?? 0;
        if (cost > 0) summaryUsage.costUsd = cost;
        session.addUsage(summaryUsage);
      } catch (error) {
        if (isAbortError(error, options.context.signal) && options.trigger !== "manual") throw error;
        reason = isAbortError(error, options.context.signal) ? "the summary took too long" : `the model failed to summarise (${errorMessage(error)})`;
        options.context.logger.warn({ err: error }, "summarising the context failed; dropping the oldest messages instead");
      }
    }
    const atMs = Date.now();
    let summaryMessageId = "";
    let op: ContextOp;
    if (summary !== null) {
      const stored = session.appendContextMessage({ role: "user", text: summary, toolCalls: [], turnId: options.turnId, kind: "summary" });
      summaryMessageId = stored.id;
      const at = session.messageCount;
      op = { type: "compact", at, keepFrom: plan.keepFrom, summaryIndex: at - 1, method: "summary", trigger: options.trigger, atMs };
    } else {
      op = { type: "compact", at: session.messageCount, keepFrom: plan.keepFrom, summaryIndex: null, method: "truncation", trigger: options.trigger, atMs };
    }
    session.context.apply(op);
    const after = await this.tokens(session, environment);
    const report: CompactionReport = {
      trigger: options.trigger,
      method: op.method,
      tokensBefore,
      tokensAfter: after.tokens,
      messagesBefore,
      messagesAfter: session.context.modelMessages(session.transcript()).length,
      summaryMessageId,
      reason: summary === null ? reason : "",
      summaryUsage,
    };
    options.context.logger.info({ compaction: report }, "context compacted");
    return report;
  }

  /**
   * What the model's next call would take: the last call's reported input tokens plus the messages
   * added since, when no operation changed the context in between; otherwise everything counted.
   */
  private async tokens(session: Session, environment?: ModelEnvironment): Promise<{ tokens: number; method: string }> {
    const counter = await this.counterFor(session);
    const messages = session.transcript();
    const last = session.context.lastCall;
    if (last && last.ops === session.context.operations.length && last.at <= messages.length) {
      const added = contextIndexes(messages, session.context.view()).filter((i) => i >= last.at);
      return { tokens: last.inputTokens + sum(added.map((i) => cachedMessageTokens(messages[i]!, counter))), method: `reported+${counter.method}` };
    }
    return { tokens: fullCount(session, environment ?? this.deps.environment(session), counter), method: counter.method };
  }

  private counterFor(session: Session): Promise<TokenCounter> {
    return (this.deps.tokenCounter ?? tokenCounterFor)(session.config.model);
  }

  private checkIdle(session: Session, what: string): void {
    if (session.activeTurnId !== null) throw failedPrecondition(`session ${session.id} is running a turn; ${what} once it has ended (or Cancel it)`);
    if (session.context.compacting) throw failedPrecondition(`session ${session.id} is compacting its context; ${what} once CompactSession has returned`);
  }
}

function fullCount(session: Session, environment: ModelEnvironment, counter: TokenCounter): number {
  const messages = session.context.modelMessages(session.transcript());
  return environmentTokens(environment, counter) + sum(messages.map((m) => cachedMessageTokens(m, counter)));
}

/** Why a CompactSession found nothing old enough: what its context holds, and what is kept. */
function whatIsKept(session: Session): string {
  const messages = session.transcript();
  const turns = contextIndexes(messages, session.context.view()).filter((i) => messages[i]!.role === "user").length;
  const holds = turns === 0 ? "its context holds no turn" : `its context holds ${turns === 1 ? "one turn" : `${turns} turns`}`;
  return `${holds}, and a compaction keeps the newest turn verbatim (up to ${KEEP_TURNS} turns); compact again after more turns`;
}

/** A summary may take up to a tenth of the window, within 1,000 to 8,000 tokens and the session's own output limit. */
function summaryOutputTokens(session: Session, window: number): number | undefined {
  const own = session.config.model?.maxOutputTokens;
  const share = window > 0 ? Math.min(8_000, Math.max(1_000, Math.floor(window / 10))) : undefined;
  if (own === undefined) return share;
  return share === undefined ? own : Math.min(own, share);
}

/** The index of a turn's first message; NOT_FOUND when the session has no such turn. */
function turnStart(messages: readonly Message[], turnId: string, sessionId: string): number {
  if (turnId === "") throw new AgentdError("invalid_argument", "turn_id is required");
  const index = messages.findIndex((m) => m.turnId === turnId && m.kind !== "summary");
  if (index < 0) throw notFound(`turn ${turnId} not found in session ${sessionId}`);
  return index;
}

const sum = (values: number[]) => values.reduce((total, value) => total + value, 0);
