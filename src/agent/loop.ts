import { randomUUID } from "node:crypto";
import { Observable } from "rxjs";
import { AgentdError, isAbortError, type ErrorKind } from "../errors.js";
import type { StopReason, TurnEvent, TurnResult } from "../events/types.js";
import type { LlmClient, LlmMessage, LlmRequest, LlmToolCall, LlmToolDefinition } from "../llm/types.js";
import { tokenCount } from "../llm/usage.js";
import { costOf, type Price } from "../llm/prices.js";
import { endWithError, inToolSpan, startModelSpan, type TraceContext } from "./tracing.js";
import type { ToolOutput } from "../tools/types.js";
import type { Message, SessionLimits, UsageTotals } from "../session/types.js";
import { cancelReasonOf } from "./cancellation.js";
import type { TurnContext } from "./turn-context.js";

/** What the loop needs from the session it runs in. */
export interface TurnHost {
  /** The conversation so far, in the model's terms (the session's own list: not to be changed). */
  history(): readonly LlmMessage[];
  appendMessage(message: Omit<Message, "id" | "createdAt" | "turnId">): void;
  /** Adds a model call's usage to the session and returns the session's new totals; `rolledUp`: a subagent's, reported by its own session already. */
  addUsage(usage: UsageTotals, rolledUp?: boolean): UsageTotals;
  /** What the session has spent so far, in US dollars. */
  spentUsd(): number;
  /** Resolves at once unless the session is paused; rejects when the turn is cancelled. */
  waitIfPaused(signal: AbortSignal): Promise<void>;
  /**
   * A tool call id no other call of this session has used: `proposed` when it is new, another id
   * otherwise. A tool result's call id must name one call for the life of the session.
   */
  claimCallId(proposed: string): string;
}

/**
 * Keeps a turn's model calls within the model's context window (src/context implements it): it may
 * compact the session's context before a call, and once after a call that overflowed.
 */
export interface ContextGuard {
  /** Before each model call: compacts first when the context is past its threshold, and says so with `emit`. */
  beforeModelCall(call: { systemPrompt: string; tools: LlmToolDefinition[] }, emit: (event: TurnEvent) => void): Promise<void>;
  /** After a model call that succeeded, with the input tokens it reported (0 when it did not). */
  afterModelCall(inputTokens: number): void;
  /** A model call failed before answering: true when the context was compacted because of it, so the call is tried once more. */
  compactAfterError(error: unknown, call: { systemPrompt: string; tools: LlmToolDefinition[] }, emit: (event: TurnEvent) => void): Promise<boolean>;
}

export interface ToolRunner {
  definitions(): LlmToolDefinition[];
  execute(call: LlmToolCall, context: TurnContext): Promise<ToolOutput>;
}

/** Whether a tool call runs: a gate may refuse it, or wait for a person, or let it run with edited arguments. */
export type Admission = { run: true; call: LlmToolCall } | { run: false; output: string };

/** Decides each tool call before it runs; the permission policy lives behind it. */
export interface ToolGate {
  /** May wait (for a person); rejects with an AbortError when the turn is cancelled meanwhile. */
  admit(call: LlmToolCall, context: TurnContext, emit: (event: TurnEvent) => void): Promise<Admission>;
}

/** Lets every call run: for turns without a policy (tests of the loop, internal uses). */
export const OPEN_GATE: ToolGate = { admit: async (call) => ({ run: true, call }) };

/**
 * The most text and tool arguments one model call may produce: far beyond what models answer, and
 * small enough that every message fits in a reply and a record stays cheap to write.
 */
export const MAX_ANSWER_BYTES = 1024 * 1024;

const answerTooLong = () =>
  new AgentdError(
    "resource_exhausted",
    `the model's answer passed ${MAX_ANSWER_BYTES} bytes and was cut there; lower config.model.max_output_tokens or ask for a shorter answer`,
  );

/**
 * Thrown by a gate when the server shuts down while a call waits for a person: the turn stops
 * without answering its remaining calls, so that it can be resumed, still waiting, after a restart.
 */
export class TurnSuspended extends Error {
  constructor() {
    super("the turn is suspended at a confirmation until the server restarts");
    this.name = "TurnSuspended";
  }
}

export interface TurnInput {
  prompt: string;
  /**
   * Resumes a turn that was suspended at a confirmation: no new user message and no model call
   * first; these calls (the last assistant message's unanswered ones) are run, then the loop goes on.
   */
  resume?: { calls: LlmToolCall[] };
  systemPrompt: string;
  limits: SessionLimits;
  temperature?: number;
  maxOutputTokens?: number;
  llm: LlmClient;
  tools: ToolRunner;
  /** Default: every call runs. */
  gate?: ToolGate;
  host: TurnHost;
  context: TurnContext;
  /** Default: no compaction; the history goes to the model as it is. */
  contextGuard?: ContextGuard;
  /** The model's price, for each call's cost; none: costs are 0. */
  price?: Price | null;
  /** Rejects (RESOURCE_EXHAUSTED) when the session's owner has spent their budget; asked before each model call. */
  ownerBudget?: () => Promise<void>;
  /** The turn's trace span, parent of its model and tool call spans (a no-op without tracing). */
  trace?: { context: TraceContext; provider: string; model: string; recordContent?: boolean };
}

/** Throws RESOURCE_EXHAUSTED once a session has spent its budget (config.limits.budget_usd; absent or 0: none). */
export function checkSessionBudget(budgetUsd: number | undefined, spentUsd: number): void {
  const budget = budgetUsd ?? 0;
  if (budget > 0 && spentUsd >= budget) {
    throw new AgentdError(
      "resource_exhausted",
      `the session has spent its budget (config.limits.budget_usd = ${budget} USD; spent ${spentUsd.toFixed(6)} USD): raise it with ConfigureSession to go on`,
    );
  }
}

/**
 * Runs one turn: call the model, run the tools it asks for, feed the results back, until the model
 * answers without tool calls or the round limit is reached. The returned Observable emits turn
 * events and always ends with exactly one terminal event (turn_completed, turn_failed or
 * turn_cancelled); it never errors. Cancellation is the context's signal, owned by the session.
 */
export function runTurn(input: TurnInput): Observable<TurnEvent> {
  return new Observable<TurnEvent>((subscriber) => {
    void new TurnRun(input, (event) => subscriber.next(event)).run().then(() => subscriber.complete());
  });
}

class TurnRun {
  private readonly turnUsage: UsageTotals = { inputTokens: 0, outputTokens: 0 };
  /** Tool calls the model asked for whose results are not in the history yet. */
  private unanswered: LlmToolCall[] = [];
  /** The model's text of the current call, in the pieces it streamed (joined once, not per delta). */
  private textPieces: string[] = [];
  private toolRounds = 0;
  /** The last model call's usage, for its span. */
  private lastStep: UsageTotals = { inputTokens: 0, outputTokens: 0 };

  constructor(
    private readonly input: TurnInput,
    private readonly emit: (event: TurnEvent) => void,
  ) {}

  async run(): Promise<void> {
    const { host, prompt, context, resume } = this.input;
    if (!resume) host.appendMessage({ role: "user", text: prompt, toolCalls: [] });
    this.emit({ type: "turn_started", prompt });
    try {
      // The turn's first event leaves before the model call is prepared (prompt, tools, context size).
      await new Promise((resolve) => setImmediate(resolve));
      const result = await this.loop(resume?.calls);
      this.emit({ type: "turn_completed", result });
    } catch (error) {
      if (error instanceof TurnSuspended) {
        // The waiting call and those after it stay unanswered in the history, to be resumed.
        this.emit({ type: "turn_cancelled", reason: "shutdown" });
        return;
      }
      this.closeDanglingWork(error);
      if (isAbortError(error, context.signal)) {
        this.emit({ type: "turn_cancelled", reason: cancelReasonOf(context.signal) });
      } else {
        this.emit({ type: "turn_failed", error: this.describeFailure(error) });
      }
    }
  }

  private async loop(resumed?: LlmToolCall[]): Promise<TurnResult> {
    const { host, limits, context } = this.input;
    let pending = resumed;
    for (;;) {
      await host.waitIfPaused(context.signal);
      let text = "";
      let toolCalls: LlmToolCall[];
      if (pending) {
        toolCalls = pending;
        pending = undefined;
      } else {
        const answer = await this.callModel();
        ({ text, toolCalls } = answer);
        host.appendMessage({ role: "assistant", text, toolCalls });
        this.textPieces = [];
        if (toolCalls.length === 0) return this.result(text, answer.stopReason === "max_tokens" ? "max_tokens" : "end_turn");
      }
      this.unanswered = [...toolCalls];
      if (this.toolRounds >= limits.maxToolRounds) {
        this.answerUnanswered(`not run: the turn reached its limit of ${limits.maxToolRounds} tool rounds`);
        return this.result(text, "max_tool_rounds");
      }
      this.toolRounds++;
      for (const call of toolCalls) {
        await host.waitIfPaused(context.signal);
        this.emit({ type: "tool_call", call });
        const outcome: ToolOutput = await inToolSpan(
          this.input.trace?.context,
          call,
          async () => {
            const admission = await (this.input.gate ?? OPEN_GATE).admit(call, context, this.emit);
            return admission.run ? await this.input.tools.execute(admission.call, context) : { output: admission.output, isError: true };
          },
          (result) => result.isError === true,
        );
        // A subagent's model calls count toward this turn (and session), like this turn's own.
        if (outcome.usage) {
          const spent = outcome.usage.costUsd;
          this.reportUsage({
            inputTokens: tokenCount(outcome.usage.inputTokens),
            outputTokens: tokenCount(outcome.usage.outputTokens),
            ...(typeof spent === "number" && Number.isFinite(spent) && spent > 0 ? { costUsd: spent } : {}),
          }, true);
        }
        const result = { callId: call.id, name: call.name, output: outcome.output, isError: outcome.isError };
        host.appendMessage({ role: "tool", text: "", toolCalls: [], toolResult: result });
        this.unanswered.shift();
        this.emit({ type: "tool_result", result });
      }
    }
  }

  private async callModel() {
    const { host, contextGuard: guard } = this.input;
    checkSessionBudget(this.input.limits.budgetUsd, host.spentUsd());
    await this.input.ownerBudget?.();
    const call = { systemPrompt: this.input.systemPrompt, tools: this.input.tools.definitions() };
    await guard?.beforeModelCall(call, this.emit);
    const request = { ...call, messages: host.history(), temperature: this.input.temperature, maxOutputTokens: this.input.maxOutputTokens };
    const traced = this.input.trace;
    const span = traced ? startModelSpan(traced.context, traced.provider, traced.model) : null;
    try {
      const answer = await this.callModelOnce(request, call);
      span?.setAttributes({
        "gen_ai.usage.input_tokens": this.lastStep.inputTokens,
        "gen_ai.usage.output_tokens": this.lastStep.outputTokens,
        "gen_ai.response.finish_reasons": [answer.stopReason ?? "end_turn"],
      });
      if (traced?.recordContent) {
        span?.addEvent("gen_ai.choice", { "gen_ai.completion": answer.text, "gen_ai.tool_calls": JSON.stringify(answer.toolCalls.map((c) => ({ name: c.name, arguments: c.argumentsJson }))) });
      }
      return answer;
    } catch (error) {
      if (span) endWithError(span, error);
      throw error;
    } finally {
      span?.end();
    }
  }

  private async callModelOnce(request: LlmRequest, call: { systemPrompt: string; tools: LlmToolDefinition[] }) {
    const { host, contextGuard: guard } = this.input;
    try {
      return await this.streamAnswer(request);
    } catch (error) {
      // An overflow before any answer: compacted once, the call is made again; a second failure stands.
      const answered = this.textPieces.length > 0 || isAbortError(error, this.input.context.signal);
      if (!guard || answered || !(await guard.compactAfterError(error, call, this.emit))) throw error;
      return this.streamAnswer({ ...request, messages: host.history() });
    }
  }

  private async streamAnswer(request: LlmRequest) {
    const { host, context, llm } = this.input;
    const toolCalls: LlmToolCall[] = [];
    const step: UsageTotals = { inputTokens: 0, outputTokens: 0 };
    let stopReason = "end_turn";
    let answerBytes = 0;
    for await (const chunk of llm.stream(request, context)) {
      switch (chunk.type) {
        case "text":
          answerBytes += Buffer.byteLength(chunk.delta, "utf8");
          if (answerBytes > MAX_ANSWER_BYTES) throw answerTooLong();
          this.textPieces.push(chunk.delta);
          this.emit({ type: "text_delta", text: chunk.delta });
          break;
        case "tool_call":
          answerBytes += Buffer.byteLength(chunk.call.argumentsJson, "utf8");
          if (answerBytes > MAX_ANSWER_BYTES) throw answerTooLong();
          toolCalls.push({ ...chunk.call, id: host.claimCallId(chunk.call.id || `call_${randomUUID()}`) });
          break;
        case "usage":
          step.inputTokens = tokenCount(step.inputTokens + tokenCount(chunk.usage.inputTokens));
          step.outputTokens = tokenCount(step.outputTokens + tokenCount(chunk.usage.outputTokens));
          break;
        case "done":
          stopReason = chunk.stopReason;
          break;
      }
    }
    context.signal.throwIfAborted();
    this.input.contextGuard?.afterModelCall(step.inputTokens);
    this.lastStep = step;
    const cost = costOf(step, this.input.price ?? null);
    this.reportUsage(cost > 0 ? { ...step, costUsd: cost } : step);
    return { text: this.textPieces.join(""), toolCalls, stopReason };
  }

  /** A model call's usage (or a subagent's, priced at its own model), with its cost. */
  private reportUsage(step: UsageTotals, subagent = false): void {
    this.turnUsage.inputTokens += step.inputTokens;
    this.turnUsage.outputTokens += step.outputTokens;
    if ((step.costUsd ?? 0) > 0) this.turnUsage.costUsd = (this.turnUsage.costUsd ?? 0) + step.costUsd!;
    const session = this.input.host.addUsage(step, subagent);
    this.emit({ type: "usage", step, turn: { ...this.turnUsage }, session, ...(subagent ? { subagent: true as const } : {}) });
  }

  private result(text: string, stopReason: StopReason): TurnResult {
    const turnId = this.input.context.turnId;
    return { turnId, text, stopReason, usage: { ...this.turnUsage }, toolRounds: this.toolRounds };
  }

  /**
   * Keeps the history well-formed after an interrupted turn: the text the client already saw is
   * kept, and every tool call the model made gets a result, because providers reject a
   * conversation with unanswered tool calls.
   */
  private closeDanglingWork(error: unknown): void {
    const partialText = this.textPieces.join("");
    if (partialText !== "") {
      this.input.host.appendMessage({ role: "assistant", text: partialText, toolCalls: [] });
      this.textPieces = [];
    }
    const why = isAbortError(error, this.input.context.signal) ? "cancelled before it finished" : "not run: the turn failed";
    this.answerUnanswered(why);
  }

  /** Domain errors are told as they are; anything else is a bug, logged here and not shown to the client. */
  private describeFailure(error: unknown): { kind: ErrorKind; message: string } {
    if (error instanceof AgentdError) return { kind: error.kind, message: error.message };
    this.input.context.logger.error({ err: error }, "unexpected error in a turn");
    return { kind: "internal", message: "the turn failed with an internal error; see the server log" };
  }

  private answerUnanswered(output: string): void {
    for (const call of this.unanswered) {
      this.input.host.appendMessage({
        role: "tool",
        text: "",
        toolCalls: [],
        toolResult: { callId: call.id, name: call.name, output, isError: true },
      });
    }
    this.unanswered = [];
  }
}


