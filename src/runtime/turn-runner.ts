import { filter, takeWhile, type Observable } from "rxjs";
import type { CancelReason } from "../agent/cancellation.js";
import { runTurn, type ToolRunner } from "../agent/loop.js";
import type { TurnContext } from "../agent/turn-context.js";
import { invalidArgument } from "../errors.js";
import { isTerminal, type SessionEvent, type TurnEvent } from "../events/types.js";
import type { Logger } from "../logging.js";
import type { Session } from "../session/session.js";
import type { ToolExecutor } from "../tools/executor.js";
import type { ToolRegistry } from "../tools/registry.js";
import type { ModelClients } from "./model-clients.js";

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

export interface TurnRunnerDeps {
  models: ModelClients;
  registry: ToolRegistry;
  executor: ToolExecutor;
  logger: Logger;
}

/** Prepares and starts turns: the model client, the toolset, the turn's context, and its log line. */
export class TurnRunner {
  constructor(private readonly deps: TurnRunnerDeps) {}

  start(session: Session, prompt: string, options: StartTurnOptions = {}): TurnHandle {
    if (prompt.trim() === "") throw invalidArgument("prompt must not be empty");
    // Resolved before the state changes, so a missing model or key is a clear status, not a failed turn.
    const llm = this.deps.models.clientFor(session, options.apiKey ?? "");
    const { turnId, signal, host } = session.beginTurn({ deadlineMs: options.deadlineMs });
    const config = session.config;
    const context: TurnContext = {
      sessionId: session.id,
      turnId,
      signal,
      logger: this.deps.logger.child({ sessionId: session.id, turnId }),
    };
    const startedAt = performance.now();
    queueMicrotask(() =>
      runTurn({
        prompt,
        systemPrompt: config.systemPrompt,
        limits: config.limits,
        temperature: config.model?.temperature,
        maxOutputTokens: config.model?.maxOutputTokens,
        llm,
        tools: this.toolsFor(session, config.limits.toolTimeoutMs),
        host,
        context,
      }).subscribe((event) => {
        session.recordTurnEvent(turnId, event);
        if (isTerminal(event)) logTurnEnd(context.logger, event, performance.now() - startedAt);
      }),
    );
    return { turnId, events: turnEvents(session, turnId), cancel: (reason) => session.cancelTurn(reason, turnId) !== null };
  }

  private toolsFor(session: Session, timeoutMs: number): ToolRunner {
    const { registry, executor } = this.deps;
    return {
      definitions: () => registry.definitions(),
      execute: (call, context) => executor.execute(call, { ...context, workspace: session.workspace, timeoutMs }),
    };
  }
}

/** A turn's own events and session-level ones (persistence failures, state changes), until its end. */
function turnEvents(session: Session, turnId: string): Observable<SessionEvent> {
  return session.events$.pipe(
    filter((event) => event.turnId === turnId || event.turnId === ""),
    takeWhile((event) => !(event.turnId === turnId && isTerminal(event.payload)), true),
  );
}

function logTurnEnd(logger: Logger, event: TurnEvent, durationMs: number): void {
  const error = event.type === "turn_failed" ? event.error : undefined;
  logger.info({ outcome: event.type, error, durationMs: Math.round(durationMs) }, "turn ended");
}
