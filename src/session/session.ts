import { randomUUID } from "node:crypto";
import { Subject, type Observable } from "rxjs";
import { TurnAbortedError, type CancelReason } from "../agent/cancellation.js";
import { isTerminalPayload, type AgentEvent, type EventPayload } from "../agent/events.js";
import type { TurnHost } from "../agent/loop.js";
import { SessionState } from "../gen/agentd/v1/runtime.js";
import type { LlmMessage } from "../llm/types.js";
import { PauseGate } from "./pause-gate.js";
import { nextState, type SessionAction } from "./state-machine.js";
import type { SessionConfig, SessionRecord, SessionStateName, StoredMessage, UsageTotals } from "./types.js";

interface ActiveTurn {
  id: string;
  controller: AbortController;
  /** Resolves when the turn has emitted its terminal event. */
  finished: Promise<void>;
}

/** A turn whose state change is done but whose loop has not started, so a caller can subscribe first. */
export interface PreparedTurn {
  turnId: string;
  start(): void;
}

/**
 * One agent session: its conversation, configuration, lifecycle state and event stream. Every event
 * passes through emit(), which assigns the session's next sequence number, so numbers are strictly
 * increasing across turns, session-level events and restarts.
 */
export class Session {
  readonly id: string;
  readonly createdAt: string;
  readonly ephemeral: boolean;
  owner: string;
  parentId: string | null;
  config: SessionConfig;
  workspace: string;
  labels: Record<string, string>;
  updatedAt: string;
  usage: UsageTotals;
  lastSequence: number;
  persistenceError = "";
  private messages: StoredMessage[];
  private stateName: SessionStateName;
  private turn: ActiveTurn | null = null;
  private readonly gate = new PauseGate();
  private readonly events = new Subject<AgentEvent>();

  /** Every event of this session: turn events and session-level ones. Completes when the session closes. */
  readonly events$: Observable<AgentEvent> = this.events.asObservable();

  constructor(
    record: SessionRecord,
    /** Called after every mutation; the persister uses it to schedule a background write. */
    private readonly onChange: (session: Session) => void,
  ) {
    this.id = record.id;
    this.owner = record.owner;
    this.parentId = record.parentId;
    this.config = record.config;
    this.workspace = record.workspace;
    this.ephemeral = record.ephemeral;
    this.labels = record.labels;
    this.createdAt = record.createdAt;
    this.updatedAt = record.updatedAt;
    this.usage = record.usage;
    this.lastSequence = record.lastSequence;
    this.messages = record.messages;
    this.stateName = record.state === "paused" ? "paused" : "idle";
    if (this.stateName === "paused") this.gate.pause();
  }

  get state(): SessionStateName {
    return this.stateName;
  }

  get activeTurnId(): string | null {
    return this.turn?.id ?? null;
  }

  get messageCount(): number {
    return this.messages.length;
  }

  messagesPage(offset: number, limit: number): StoredMessage[] {
    return this.messages.slice(offset, offset + limit);
  }

  /**
   * Moves to `running` and returns a turn that starts when asked. `run` builds the turn's event
   * stream from the host interface and the turn's signal.
   */
  prepareTurn(run: (turnId: string, host: TurnHost, signal: AbortSignal) => Observable<EventPayload>): PreparedTurn {
    this.transition("start_turn");
    const turnId = randomUUID();
    const controller = new AbortController();
    let markFinished: () => void = () => {};
    const finished = new Promise<void>((resolve) => (markFinished = resolve));
    this.turn = { id: turnId, controller, finished };
    const host = this.hostFor(turnId);
    return {
      turnId,
      start: () => {
        run(turnId, host, controller.signal).subscribe({
          next: (payload) => {
            // The state changes before the terminal event goes out, so a client that reacts to it
            // by starting the next turn finds the session ready.
            if (isTerminalPayload(payload)) this.finishTurn(turnId);
            this.emit(turnId, payload);
          },
          complete: markFinished,
        });
      },
    };
  }

  /** Aborts the running turn, if any. The turn itself reports the terminal `cancelled` event. */
  cancelTurn(reason: CancelReason, onlyTurnId?: string): string | null {
    const turn = this.turn;
    if (!turn || (onlyTurnId !== undefined && turn.id !== onlyTurnId)) return null;
    turn.controller.abort(new TurnAbortedError(reason));
    return turn.id;
  }

  /** Resolves when no turn is running any more. */
  async settled(): Promise<void> {
    await this.turn?.finished;
  }

  pause(): void {
    this.transition("pause");
    this.gate.pause();
    this.emitStateChanged();
  }

  resume(): void {
    this.transition("resume");
    this.gate.resume();
    this.emitStateChanged();
  }

  /** Cancels any running turn and ends the event stream; a closed session accepts nothing more. */
  async close(): Promise<void> {
    if (this.stateName === "closed") return;
    this.cancelTurn("session_destroyed");
    await this.settled();
    this.transition("close");
    this.emitStateChanged();
    this.events.complete();
  }

  configure(config: SessionConfig): void {
    this.config = config;
    this.touch();
  }

  /** Emits a session-level event (no turn), such as persistence_failed. */
  emitSessionEvent(payload: EventPayload): void {
    this.emit("", payload);
  }

  toRecord(): SessionRecord {
    return structuredClone({
      version: 1,
      id: this.id,
      owner: this.owner,
      parentId: this.parentId,
      state: this.stateName,
      config: this.config,
      workspace: this.workspace,
      ephemeral: this.ephemeral,
      labels: this.labels,
      createdAt: this.createdAt,
      updatedAt: this.updatedAt,
      usage: this.usage,
      lastSequence: this.lastSequence,
      messages: this.messages,
    });
  }

  touch(): void {
    this.updatedAt = new Date().toISOString();
    this.onChange(this);
  }

  private emit(turnId: string, payload: EventPayload): void {
    this.lastSequence++;
    const event: AgentEvent = { sessionId: this.id, sequence: this.lastSequence, time: new Date(), turnId, payload };
    this.touch();
    this.events.next(event);
  }

  private emitStateChanged(): void {
    this.emitSessionEvent({ $case: "stateChanged", stateChanged: { state: toProtoState(this.stateName) } });
  }

  private finishTurn(turnId: string): void {
    if (this.turn?.id !== turnId) return;
    this.turn = null;
    this.transition("end_turn");
  }

  private transition(action: SessionAction): void {
    this.stateName = nextState(this.id, this.stateName, action, this.turn !== null);
    this.touch();
  }

  private hostFor(turnId: string): TurnHost {
    return {
      history: () => toLlmHistory(this.messages),
      appendMessage: (message) => {
        this.messages.push({ ...message, id: randomUUID(), createdAt: new Date().toISOString(), turnId });
        this.touch();
      },
      addUsage: (usage) => {
        this.usage = {
          inputTokens: this.usage.inputTokens + usage.inputTokens,
          outputTokens: this.usage.outputTokens + usage.outputTokens,
        };
        this.touch();
        return { ...this.usage };
      },
      waitIfPaused: (signal) => this.gate.wait(signal),
    };
  }
}

export function toProtoState(state: SessionStateName): SessionState {
  switch (state) {
    case "idle":
      return SessionState.SESSION_STATE_IDLE;
    case "running":
      return SessionState.SESSION_STATE_RUNNING;
    case "paused":
      return SessionState.SESSION_STATE_PAUSED;
    case "closed":
      return SessionState.SESSION_STATE_CLOSED;
  }
}

function toLlmHistory(messages: StoredMessage[]): LlmMessage[] {
  return messages.map((message): LlmMessage => {
    if (message.role === "tool" && message.toolResult) {
      const { callId, name, output, isError } = message.toolResult;
      return { role: "tool", callId, name, output, isError };
    }
    if (message.role === "assistant") return { role: "assistant", text: message.text, toolCalls: message.toolCalls };
    return { role: "user", text: message.text };
  });
}
