import { priceOf, type Price } from "../llm/prices.js";
import { endWithError, startTurnSpan } from "../agent/tracing.js";
import type { Span } from "@opentelemetry/api";
import { Observable } from "rxjs";
import type { CancelReason } from "../agent/cancellation.js";
import { runTurn, type ToolRunner } from "../agent/loop.js";
import type { TurnContext } from "../agent/turn-context.js";
import { AgentdError, invalidArgument, resourceExhausted } from "../errors.js";
import { isTerminal, type SessionEvent, type TurnEvent } from "../events/types.js";
import type { Logger } from "../logging.js";
import type { Session } from "../session/session.js";
import { ToolExecutor } from "../tools/executor.js";
import type { Toolset } from "../tools/toolset.js";
import type { RuleSet } from "../policy/rules.js";
import type { ModelClients } from "./model-clients.js";
import type { LlmClient } from "../llm/types.js";
import type { SuspendedTurn } from "../session/restore.js";
import { policyGate } from "../policy/gate.js";
import type { WorkspacePolicy } from "./workspace-policy.js";
import type { ContextService } from "../context/service.js";
import { checkPricedForBudget } from "../costs/priced-model.js";

/** A running turn, as its caller holds it. */
export interface TurnHandle {
  turnId: string;
  /**
   * The turn's events and the session-level events around them, ending with the turn's terminal
   * event. The turn starts on the next microtask: subscribe in the same tick as startTurn.
   */
  events: Observable<SessionEvent>;
  /** Aborts this turn (not a later one); false when it has already ended. */
  cancel(reason: CancelReason): boolean;
}

export interface StartTurnOptions {
  /** Used for this turn only, never stored. */
  apiKey?: string;
  /** Epoch milliseconds after which the turn is cancelled with reason `deadline_exceeded`. */
  deadlineMs?: number;
}

/** What a session's turn gets from its skills, MCP servers and tool selection. */
export interface SessionCapabilities {
  /** The tools the session's model is offered now. */
  toolset(session: Session): Toolset;
  /** The session's system prompt with the catalogue of what it can use (skills, subagents). */
  systemPrompt(session: Session): string;
  /** The permission rules for a call of this turn (a skill the model read may allow more). */
  rules(session: Session, turnId: string): RuleSet;
  turnEnded(session: Session, turnId: string): void;
}

export interface TurnRunnerDeps {
  models: ModelClients;
  capabilities: SessionCapabilities;
  /** Compaction before model calls; without it, turns send the history as it is. */
  context?: ContextService;
  workspaces: WorkspacePolicy;
  maxConcurrentTurnsPerOwner: number;
  logger: Logger;
  /** The operator's prices by "provider/model", over the list prices (src/llm/prices.ts). */
  prices?: Readonly<Record<string, Price>>;
  /** Budgets per owner; none: no owner has one. */
  ownerBudgets?: {
    /** Rejects (RESOURCE_EXHAUSTED) once the owner has spent their budget. */
    check(owner: string): Promise<void>;
    /** US dollars per period; 0: none. */
    budgetOf(owner: string): number;
  };
  /** Whether turns make trace spans (tracing.enabled): without it they cost nothing on the turn's path. */
  tracing?: boolean;
  /** Record prompts and model outputs in the trace spans (tracing.recordContent). */
  traceContent?: boolean;
}

/** Prepares and starts turns: the model client, the toolset, the turn's context, and its log line. */
export class TurnRunner {
  /** Running turns per owner, for the per-owner limit. */
  private readonly running = new Map<string, number>();
  /** Keys given with a running turn, lent to its subagents' turns; never stored. */
  private readonly turnKeys = new Map<string, string>();

  constructor(private readonly deps: TurnRunnerDeps) {}

  start(session: Session, prompt: string, options: StartTurnOptions = {}): TurnHandle {
    if (prompt.trim() === "") throw invalidArgument("prompt must not be empty");
    this.checkTurnLimit(session.owner);
    this.deps.context?.checkTurnMayStart(session);
    // While the store fails, events wait in memory for it; a new turn would only add to them.
    if (session.persistenceError !== "") {
      throw new AgentdError("unavailable", `session ${session.id} cannot be written to the store (see its persistence_error); no new turn starts until it can: try again later`);
    }
    const budgets = this.deps.ownerBudgets;
    if (budgets) checkPricedForBudget(session.config.model, session.owner, budgets.budgetOf(session.owner), this.deps.prices ?? {});
    // Resolved before the state changes, so a missing model or key is a clear status, not a failed turn.
    const llm = this.deps.models.clientFor(session, options.apiKey ?? "");
    return this.launch(session, prompt, llm, options);
  }

  /** A subagent's turn, with the key its parent's turn was given, if any. */
  startChild(child: Session, prompt: string, parentTurnId: string): TurnHandle {
    const apiKey = this.turnKeys.get(parentTurnId);
    return this.start(child, prompt, apiKey === undefined ? {} : { apiKey });
  }

  /**
   * Resumes, after a restart, a turn that waited for a person: it asks again (same confirmation,
   * same deadline; one that passed meanwhile applies its action at once), then goes on. Its events
   * reach whoever watches the session's turn (WatchTurn).
   */
  resume(session: Session, suspended: SuspendedTurn): TurnHandle {
    const prompt = session.lastUserText();
    // The model is needed only after the calls: a missing key then fails the turn, not the restore.
    const llm: LlmClient = { provider: "resumed", stream: (request, context) => this.deps.models.clientFor(session, "").stream(request, context) };
    return this.launch(session, prompt, llm, { turnId: suspended.confirmation.turnId }, suspended);
  }

  /** Whether an owner may start one more turn; a resumed turn was already counted before the restart. */
  private checkTurnLimit(owner: string): void {
    const running = this.running.get(owner) ?? 0;
    if (running >= this.deps.maxConcurrentTurnsPerOwner) {
      throw resourceExhausted(
        `owner "${owner}" has ${running} turns running, the limit (limits.maxConcurrentTurnsPerOwner = ${this.deps.maxConcurrentTurnsPerOwner}); wait for one to end`,
      );
    }
  }

  private launch(session: Session, prompt: string, llm: LlmClient, options: StartTurnOptions & { turnId?: string }, suspended?: SuspendedTurn): TurnHandle {
    const owner = session.owner;
    const { turnId, signal, host } = session.beginTurn({ deadlineMs: options.deadlineMs, turnId: options.turnId });
    this.running.set(owner, (this.running.get(owner) ?? 0) + 1);
    if (options.apiKey) this.turnKeys.set(turnId, options.apiKey);
    const config = session.config;
    const capabilities = this.deps.capabilities;
    const tools = this.toolsFor(session, config.limits.toolTimeoutMs);
    const context: TurnContext = {
      sessionId: session.id,
      turnId,
      signal,
      logger: this.deps.logger.child({ sessionId: session.id, turnId }),
    };
    const startedAt = performance.now();
    const modelName = config.model ? config.model.model : "none";
    const turnSpan = this.deps.tracing ? startTurnSpan({ sessionId: session.id, turnId, model: modelName }) : null;
    if (turnSpan && this.deps.traceContent) turnSpan.span.addEvent("gen_ai.user.message", { "gen_ai.prompt": prompt });
    queueMicrotask(() =>
      runTurn({
        prompt,
        resume: suspended ? { calls: suspended.calls } : undefined,
        systemPrompt: capabilities.systemPrompt(session),
        limits: config.limits,
        price: priceOf(config.model, this.deps.prices ?? {}),
        ownerBudget: this.deps.ownerBudgets ? () => this.deps.ownerBudgets!.check(owner) : undefined,
        trace: turnSpan ? { context: turnSpan.context, provider: config.model?.provider ?? "none", model: modelName, recordContent: this.deps.traceContent === true } : undefined,
        temperature: config.model?.temperature,
        maxOutputTokens: config.model?.maxOutputTokens,
        llm,
        tools,
        gate: policyGate({
          sessionId: session.id,
          workspace: session.workspace,
          rules: () => capabilities.rules(session, turnId),
          settings: () => session.config.confirmation,
          book: session.confirmations,
          isReadOnly: (name) => tools.current().get(name)?.readOnly === true,
          isOffered: (name) => tools.current().get(name) !== undefined,
          restored: suspended?.confirmation,
        }),
        host,
        context,
        contextGuard: this.deps.context?.guard(session, llm, context),
      }).subscribe((event) => {
        // The owner's slot is free before the terminal event goes out, so a client that starts the
        // next turn when it sees the end is not refused.
        if (isTerminal(event)) {
          this.release(owner);
          this.turnKeys.delete(turnId);
          capabilities.turnEnded(session, turnId);
        }
        session.recordTurnEvent(turnId, event);
        if (isTerminal(event)) {
          logTurnEnd(context.logger, event, performance.now() - startedAt);
          if (turnSpan) endTurnSpan(turnSpan.span, event);
        }
      }),
    );
    return { turnId, events: turnEvents(session, turnId), cancel: (reason) => session.cancelTurn(reason, turnId) !== null };
  }

  private release(owner: string): void {
    const left = (this.running.get(owner) ?? 1) - 1;
    if (left > 0) this.running.set(owner, left);
    else this.running.delete(owner);
  }

  /**
   * The turn's tools. The toolset is built when the model is called (so a server's new tools show up
   * on the next call) and used for the calls that answer it; a resumed turn builds one first.
   */
  private toolsFor(session: Session, timeoutMs: number): ToolRunner & { current(): Toolset } {
    const { capabilities, workspaces } = this.deps;
    let step: Toolset | null = null;
    const current = () => (step ??= capabilities.toolset(session));
    return {
      current,
      definitions: () => (step = capabilities.toolset(session)).definitions(),
      execute: async (call, context) => {
        const toolset = current();
        // A session restored from an older configuration may name a workspace no longer allowed.
        if (!(await workspaces.allows(session.workspace))) {
          return { output: `tool "${call.name}" not run: this session's workspace is outside the server's allowed workspace roots`, isError: true };
        }
        try {
          await workspaces.ensure(session.workspace);
        } catch (error) {
          return { output: `tool "${call.name}" not run: the session's workspace cannot be created (${(error as NodeJS.ErrnoException).code ?? "failed"})`, isError: true };
        }
        // A call that changes things is recorded, durably, before it starts: after a crash it comes
        // back "in doubt", never silently run a second time.
        const tool = toolset.get(call.name);
        if (tool && !tool.readOnly && !(await session.recordIntent({ callId: call.id, toolName: call.name, turnId: context.turnId }))) {
          return { output: `tool "${call.name}" not run: the server could not record that it was about to run it (the store is failing)`, isError: true };
        }
        return new ToolExecutor(toolset).execute(call, { ...context, workspace: session.workspace, timeoutMs });
      },
    };
  }
}

/** A turn's own events and session-level ones (persistence failures, state changes), until its end. */
export function turnEvents(session: Session, turnId: string): Observable<SessionEvent> {
  // One subscriber doing what filter and takeWhile(inclusive) would: a few of these per event of every turn.
  return new Observable<SessionEvent>((subscriber) =>
    session.events$.subscribe({
      next: (event) => {
        if (event.turnId !== turnId && event.turnId !== "") return;
        subscriber.next(event);
        if (event.turnId === turnId && isTerminal(event.payload)) subscriber.complete();
      },
      error: (error: unknown) => subscriber.error(error),
      complete: () => subscriber.complete(),
    }),
  );
}

function logTurnEnd(logger: Logger, event: TurnEvent, durationMs: number): void {
  const error = event.type === "turn_failed" ? event.error : undefined;
  logger.debug({ outcome: event.type, error, durationMs: Math.round(durationMs) }, "turn ended");
}

/** Ends a turn's span with its outcome: failed turns are errors; cancelled ones say why. */
function endTurnSpan(span: Span, event: TurnEvent): void {
  if (event.type === "turn_completed") {
    span.setAttributes({ "gen_ai.usage.input_tokens": event.result.usage.inputTokens, "gen_ai.usage.output_tokens": event.result.usage.outputTokens, "agentd.cost_usd": event.result.usage.costUsd ?? 0 });
  } else if (event.type === "turn_failed") {
    endWithError(span, new Error(`${event.error.kind}: ${event.error.message}`));
  } else if (event.type === "turn_cancelled") {
    span.setAttribute("agentd.cancel_reason", event.reason);
  }
  span.end();
}
