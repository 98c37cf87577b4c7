import { randomUUID } from "node:crypto";
import { Subject, type Observable } from "rxjs";
import { TurnAbortedError, type CancelReason } from "../agent/cancellation.js";
import type { TurnHost } from "../agent/loop.js";
import { isTerminal, type EventPayload, type SessionEvent, type SessionLevelEvent, type TurnEvent } from "../events/types.js";
import { RecentEvents } from "../events/log.js";
import type { LlmMessage, ModelProgress } from "../llm/types.js";
import type { SessionRecord } from "../store/record.js";
import { withPolicyDefaults } from "./config-merge.js";
import { SessionContext } from "../context/session-context.js";
import { PauseGate } from "./pause-gate.js";
import { ConfirmationBook } from "../policy/confirmations.js";
import { RuleSet } from "../policy/rules.js";
import { SessionExtensions } from "./extensions.js";
import { nextState, type SessionAction } from "./state-machine.js";
import type { Message, SessionConfig, SessionStateName, UsageTotals } from "./types.js";

/** What everything outside the core may read of a session; changes go through the runtime. */
export interface SessionView {
  readonly id: string;
  readonly owner: string;
  readonly parentId: string | null;
  readonly state: SessionStateName;
  readonly config: Readonly<SessionConfig>;
  readonly workspace: string;
  readonly ephemeral: boolean;
  readonly labels: Readonly<Record<string, string>>;
  readonly createdAt: string;
  readonly updatedAt: string;
  readonly usage: Readonly<UsageTotals>;
  readonly lastSequence: number;
  /** The last failed write's message; "" once the store is up to date again. */
  readonly persistenceError: string;
  readonly messageCount: number;
  readonly activeTurnId: string | null;
  /** The subagent definition this session runs; "" unless the task tool created it. */
  readonly agent: string;
}

/** The running turn's hold on its session, for the turn runner. */
export interface TurnSlot {
  turnId: string;
  signal: AbortSignal;
  host: TurnHost;
}

const MAX_TIMER_MS = 2 ** 31 - 1;
/** How far ahead sequence numbers are reserved in the stored record. */
/** While a model streams text, its deltas are handed to the store at least every this many events. */
const DELTAS_PER_WRITE = 512;
const SEQUENCE_BLOCK = 100_000;

interface ActiveTurn {
  id: string;
  controller: AbortController;
  deadline: NodeJS.Timeout | undefined;
  /** Resolves when the turn has recorded its terminal event. */
  finished: Promise<void>;
  markFinished: () => void;
}

/**
 * One agent session: its conversation, configuration, lifecycle state and event stream. Every event
 * passes through emit(), which assigns the session's next sequence number, so numbers are strictly
 * increasing across turns, session-level events and restarts. Every change calls `onChange`, which
 * schedules a background write.
 */
export class Session implements SessionView {
  readonly id: string;
  readonly createdAt: string;
  readonly ephemeral: boolean;
  private ownerName: string;
  private parent: string | null;
  private currentConfig: SessionConfig;
  private readonly workspacePath: string;
  private readonly labelMap: Record<string, string>;
  /** When the session last changed, in ms: formatted only when asked for, as changes come per event. */
  private updatedMs: number;
  private totals: UsageTotals;
  private sequence: number;
  private scriptSteps: number;
  /** The model changed while a turn ran: its script starts over once that turn, still on the old one, ends. */
  private scriptResetPending = false;
  /** A changing tool call that has started and has no result yet. */
  private inFlight: { callId: string; toolName: string; turnId: string } | null = null;
  private writeError = "";
  private readonly messages: Message[];
  /** Every tool call id in the history, built on first use. */
  private callIds: Set<string> | null = null;
  private stateName: SessionStateName;
  private turn: ActiveTurn | null = null;
  private readonly gate = new PauseGate();
  /** The tool calls waiting for a person. */
  readonly confirmations = new ConfirmationBook();
  /** Skills, subagent definitions and MCP servers added to this session. */
  readonly extensions: SessionExtensions;
  readonly agent: string;
  /** What the model's context holds of the transcript: compactions, clears, rewinds. */
  readonly context: SessionContext;
  private compiledRules: RuleSet | null = null;
  private readonly events = new Subject<SessionEvent>();
  /** Recent events, for clients that re-attach (Subscribe). */
  readonly recentEvents: RecentEvents;
  /** Events the store has not been handed yet; the persister takes them with the record. */
  private unpersisted: SessionEvent[] = [];
  /**
   * Events stamped but not yet published: while an acknowledgement waits for the disk (a turn's
   * terminal event), the events after it wait too, so that every client sees them in order.
   */
  private readonly outbox: SessionEvent[] = [];
  private barrier: Promise<void> | null = null;
  /**
   * Sequence numbers up to this one may have been seen by a client; stored with the record and
   * reserved ahead, so that after a crash numbering resumes above it: a gap, never a repeat.
   */
  private reservedThrough: number;
  /** The reservation the store is known to hold; numbers above it are published only once it does. */
  private storedReservation: number;
  /**
   * Numbers skipped at the last restore (reserved before a crash, never used): a replay may pass
   * over them; any other hole in the events is a loss, and is said so.
   */
  readonly skippedSequences: { after: number; through: number };

  /** Every event of this session: turn events and session-level ones. Completes when the session closes. */
  readonly events$: Observable<SessionEvent> = this.events.asObservable();

  /** Where the session's scripted model keeps its position, so it survives restarts. */
  readonly scriptProgress: ModelProgress = {
    steps: () => this.scriptSteps,
    advance: () => {
      this.scriptSteps++;
      this.markChanged();
      return this.scriptSteps;
    },
  };

  constructor(
    record: SessionRecord,
    private readonly onChange: (session: Session) => void,
    /** Writes the session now; resolves to whether the store has it. */
    private readonly persistNow: (session: Session) => Promise<boolean> = async () => true,
    recentEvents: RecentEvents = new RecentEvents(),
  ) {
    this.recentEvents = recentEvents;
    this.id = record.id;
    this.ownerName = record.owner;
    this.parent = record.parentId;
    this.currentConfig = withPolicyDefaults(record.config);
    this.workspacePath = record.workspace;
    this.ephemeral = record.ephemeral;
    this.labelMap = record.labels;
    this.createdAt = record.createdAt;
    this.updatedMs = Date.parse(record.updatedAt) || Date.now();
    this.totals = record.usage;
    // After a crash, numbers handed out beyond the last stored event may have reached a client.
    this.sequence = Math.max(record.lastSequence, record.sequenceReservedThrough ?? 0);
    this.reservedThrough = this.sequence;
    this.storedReservation = this.sequence;
    this.skippedSequences = { after: record.lastSequence, through: this.sequence };
    this.scriptSteps = record.scriptSteps ?? 0;
    this.context = new SessionContext(record.context, () => this.markChanged(), record.messages.length);
    this.messages = record.messages;
    this.extensions = new SessionExtensions(record.extensions, () => this.markChanged());
    this.agent = record.agent ?? "";
    this.stateName = record.state === "paused" ? "paused" : "idle";
    if (this.stateName === "paused") this.gate.pause();
  }

  get owner(): string {
    return this.ownerName;
  }
  get parentId(): string | null {
    return this.parent;
  }
  get state(): SessionStateName {
    return this.stateName;
  }
  get config(): Readonly<SessionConfig> {
    return this.currentConfig;
  }
  get workspace(): string {
    return this.workspacePath;
  }
  get labels(): Readonly<Record<string, string>> {
    return this.labelMap;
  }
  get updatedAt(): string {
    return new Date(this.updatedMs).toISOString();
  }
  get usage(): Readonly<UsageTotals> {
    return this.totals;
  }
  get lastSequence(): number {
    return this.sequence;
  }
  get persistenceError(): string {
    return this.writeError;
  }
  get messageCount(): number {
    return this.messages.length;
  }
  get activeTurnId(): string | null {
    return this.turn?.id ?? null;
  }

  /** The text of the last user message (the prompt of the current or last turn). */
  lastUserText(): string {
    for (let i = this.messages.length - 1; i >= 0; i--) {
      const message = this.messages[i]!;
      if (message.role === "user" && message.kind !== "summary") return message.text;
    }
    return "";
  }

  /** The whole transcript, oldest first; messages never change once appended. */
  transcript(): readonly Message[] {
    return this.messages;
  }

  /** Appends a message outside a turn's own (a compaction's summary); returns it as stored. */
  appendContextMessage(message: Omit<Message, "id" | "createdAt">): Message {
    const stored: Message = { ...message, id: randomUUID(), createdAt: new Date().toISOString() };
    this.messages.push(stored);
    this.markChanged();
    return stored;
  }

  /** Reports a compaction made outside a turn (CompactSession) as a session-level event. */
  /** Adds a model call's tokens to the session's totals (a turn's calls, or a compaction's summary); returns them. */
  addUsage(usage: UsageTotals): UsageTotals {
    this.totals = {
      inputTokens: Math.min(this.totals.inputTokens + usage.inputTokens, Number.MAX_SAFE_INTEGER),
      outputTokens: Math.min(this.totals.outputTokens + usage.outputTokens, Number.MAX_SAFE_INTEGER),
    };
    this.markChanged();
    return { ...this.totals };
  }

  /**
   * Publishes a session-level event once everything stamped so far (the change it reports included)
   * is stored; resolves when it has gone out. For operations whose reply acknowledges a change.
   */
  async emitDurably(payload: SessionLevelEvent): Promise<void> {
    if (!this.ephemeral) this.holdUntilStored();
    this.emit("", payload);
    await this.published();
  }

  messagesPage(offset: number, limit: number): readonly Message[] {
    return this.messages.slice(offset, offset + limit);
  }

  /**
   * Moves to `running` and hands out the turn's id, signal and host. The caller runs the turn and
   * reports its events with recordTurnEvent; the terminal one frees the slot. `deadlineMs` (epoch
   * milliseconds) aborts the turn with reason `deadline_exceeded` when it passes.
   */
  beginTurn(options: { deadlineMs?: number; turnId?: string } = {}): TurnSlot {
    this.transition("start_turn");
    const turnId = options.turnId ?? randomUUID();
    const controller = new AbortController();
    let markFinished: () => void = () => {};
    const finished = new Promise<void>((resolve) => (markFinished = resolve));
    let deadline: NodeJS.Timeout | undefined;
    const delay = options.deadlineMs === undefined ? Infinity : Math.max(0, options.deadlineMs - Date.now());
    // setTimeout fires at once past 2^31-1 ms; a deadline weeks away is no deadline for a turn.
    if (delay <= MAX_TIMER_MS) deadline = setTimeout(() => controller.abort(new TurnAbortedError("deadline_exceeded")), delay);
    this.turn = { id: turnId, controller, deadline, finished, markFinished };
    return { turnId, signal: controller.signal, host: this.hostFor(turnId) };
  }

  /**
   * Stamps and publishes one of the running turn's events; the terminal one ends the turn first. A
   * terminal event acknowledges the turn's work, so it goes out only once that is on disk (the
   * events before it stream ahead; those after it wait behind it).
   */
  recordTurnEvent(turnId: string, event: TurnEvent): void {
    const finishing = isTerminal(event) && this.turn?.id === turnId ? this.turn : null;
    // The state changes before the terminal event goes out, so a client that reacts to it by
    // starting the next turn finds the session ready.
    if (finishing) this.finishTurn(finishing);
    // The hold comes first, so the event waits behind it; the write it waits for starts after the stamp.
    if (isTerminal(event) && !this.ephemeral) this.holdUntilStored();
    this.emit(turnId, event);
    finishing?.markFinished();
  }

  /**
   * Publication waits until the store has everything stamped so far (group-committed with other
   * sessions'). A failing store is retried, with backoff, until it takes it or the session closes:
   * nothing is acknowledged that is not stored (the failure itself is reported at once).
   */
  private holdUntilStored(): void {
    const previous = this.barrier ?? Promise.resolve();
    const reservation = this.reservedThrough;
    const barrier: Promise<void> = previous
      .then(async () => {
        for (let delay = 100; ; delay = Math.min(delay * 2, 5_000)) {
          const stored = await this.persistNow(this).catch(() => false);
          if (stored) this.storedReservation = Math.max(this.storedReservation, reservation);
          if (stored || this.stateName === "closed") return;
          await new Promise((resolve) => setTimeout(resolve, delay));
        }
      })
      .then(() => {
        if (this.barrier === barrier) this.barrier = null;
        this.publishWaiting();
      });
    this.barrier = barrier;
  }

  /** Resolves once every event stamped so far has been published (after the store took what needed it). */
  async published(): Promise<void> {
    while (this.barrier) await this.barrier;
  }

  /** Events of this session not yet handed to the store; the persister drains them with each write. */
  takeUnpersistedEvents(): SessionEvent[] {
    const taken = this.unpersisted;
    this.unpersisted = [];
    return taken;
  }

  /** On a clean shutdown the reserved numbers are given back: numbering resumes right after the last one. */
  releaseSequenceReservation(): void {
    this.reservedThrough = this.sequence;
    this.markChanged();
  }

  /** Aborts the running turn, if any. The turn itself reports the terminal `turn_cancelled` event. */
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
    await this.published();
    this.events.complete();
    this.recentEvents.clear();
  }

  /** A new model starts its script from the beginning; other changes keep the position. */
  configure(config: SessionConfig): void {
    if (JSON.stringify(config.model) !== JSON.stringify(this.currentConfig.model)) {
      if (this.turn) this.scriptResetPending = true;
      else this.scriptSteps = 0;
    }
    this.currentConfig = config;
    this.markChanged();
  }

  /** The session's permission rules, compiled once per change. */
  ruleSet(): RuleSet {
    if (this.compiledRules?.rules !== this.currentConfig.permissions) this.compiledRules = new RuleSet(this.currentConfig.permissions);
    return this.compiledRules;
  }

  /** Adds a rule (from "always" or "never"), unless the list has it; false when the rules would not compile. */
  addRule(list: "allow" | "deny", rule: string): boolean {
    const permissions = this.currentConfig.permissions;
    if (permissions[list].includes(rule)) return true;
    const next = { ...permissions, [list]: [...permissions[list], rule] };
    try {
      new RuleSet(next);
    } catch {
      return false;
    }
    this.configure({ ...this.currentConfig, permissions: next });
    return true;
  }

  /** Makes this session top-level (its parent was destroyed with the orphan policy, or is lost). */
  detachFromParent(): void {
    this.parent = null;
    this.markChanged();
  }

  /**
   * Records, durably, that a changing tool call is about to start, so that a crash during it leaves
   * it "in doubt" rather than silently run again. False when the store could not take it.
   */
  async recordIntent(call: { callId: string; toolName: string; turnId: string }): Promise<boolean> {
    this.inFlight = call;
    this.markChanged();
    if (this.ephemeral) return true;
    return this.persistNow(this);
  }

  /** After a restart: a call that was running is answered as in doubt, and said so in an event. */
  reportInDoubt(call: { callId: string; toolName: string }): void {
    this.emit("", { type: "call_in_doubt", callId: call.callId, toolName: call.toolName });
  }

  /** Publishes an event of a subagent's turn on this session's running turn, tagged with the child. */
  relaySubagentEvent(turnId: string, childSessionId: string, agent: string, event: SessionEvent): void {
    if (this.turn?.id !== turnId) return;
    this.emit(turnId, { type: "subagent_event", childSessionId, agent, event });
  }

  /** Said at once, ahead of the events that wait for the store: it is why they wait. */
  /**
   * Says at once that the store fails. A notice outside the event log (sequence 0, neither stored
   * nor replayed): it must not wait behind the acknowledgements the failure holds up, and a number
   * of its own would come before theirs.
   */
  reportPersistenceFailure(message: string, attempts: number): void {
    this.writeError = message;
    this.events.next({ sessionId: this.id, sequence: 0, timeMs: Date.now(), turnId: "", payload: { type: "persistence_failed", message, attempts } });
  }

  clearPersistenceError(): void {
    this.writeError = "";
  }

  toRecord(): SessionRecord {
    const record: SessionRecord = structuredClone({
      version: 1,
      id: this.id,
      owner: this.ownerName,
      parentId: this.parent,
      state: this.stateName,
      config: this.currentConfig,
      workspace: this.workspacePath,
      ephemeral: this.ephemeral,
      labels: this.labelMap,
      createdAt: this.createdAt,
      updatedAt: this.updatedAt,
      usage: this.totals,
      lastSequence: this.sequence,
      sequenceReservedThrough: this.reservedThrough,
      messages: [],
      scriptSteps: this.scriptSteps,
      callInFlight: this.inFlight,
      runningTurnId: this.turn?.id ?? null,
      pendingConfirmation: this.confirmations.list()[0] ?? null,
      extensions: this.extensions.toRecord(),
      ...(this.agent ? { agent: this.agent } : {}),
      ...(this.context.toRecord() ? { context: this.context.toRecord() } : {}),
    });
    // Messages never change once appended: the record shares them, so a write costs what is new,
    // not the whole history (the store appends only the messages it has not got).
    record.messages = [...this.messages];
    return record;
  }

  /** Stamps the change time and schedules a background write. */
  markChanged(): void {
    this.updatedMs = Date.now();
    this.onChange(this);
  }

  private emit(turnId: string, payload: EventPayload): void {
    this.sequence++;
    // Reserve well ahead, so the reservation reaches the disk long before numbering gets there.
    if (this.sequence > this.reservedThrough - SEQUENCE_BLOCK / 2) this.reservedThrough = this.sequence + SEQUENCE_BLOCK;
    const event: SessionEvent = { sessionId: this.id, sequence: this.sequence, timeMs: Date.now(), turnId, payload };
    if (!this.ephemeral) this.unpersisted.push(event);
    // Text deltas come by the thousand: the step's other events mark the change (and schedule the
    // write that takes the deltas along); a long stream still hands them over every so often.
    if (payload.type !== "text_delta" || (!this.ephemeral && this.unpersisted.length % DELTAS_PER_WRITE === 0)) this.markChanged();
    this.outbox.push(event);
    if (!this.barrier) this.publishWaiting();
  }

  /** Publishes what may go out; a client re-attaching sees exactly what the others were sent. */
  private publishWaiting(): void {
    while (this.outbox.length > 0 && !this.barrier) {
      // A number above the stored reservation could be handed out again after a crash: it waits
      // until the reservation is stored (once per block of numbers, and once after a restart).
      // (A closed session is past acknowledging: what it has left goes out, stored or not.)
      if (!this.ephemeral && this.stateName !== "closed" && this.outbox[0]!.sequence > this.storedReservation) {
        this.holdUntilStored();
        return;
      }
      const event = this.outbox.shift()!;
      this.recentEvents.append(event);
      this.events.next(event);
    }
  }

  private emitStateChanged(): void {
    this.emit("", { type: "state_changed", state: this.stateName });
  }

  private finishTurn(turn: ActiveTurn): void {
    clearTimeout(turn.deadline);
    this.turn = null;
    if (this.scriptResetPending) {
      this.scriptResetPending = false;
      this.scriptSteps = 0;
    }
    this.transition("end_turn");
  }

  private transition(action: SessionAction): void {
    this.stateName = nextState(this.id, this.stateName, action, this.turn !== null);
    this.markChanged();
  }

  private claimCallId(proposed: string): string {
    const used = (this.callIds ??= new Set(this.messages.flatMap((m) => m.toolCalls.map((call) => call.id))));
    let id = proposed;
    for (let n = 2; used.has(id); n++) id = `${proposed}_${n}`;
    used.add(id);
    return id;
  }

  private hostFor(turnId: string): TurnHost {
    return {
      history: () => toLlmHistory(this.context.modelMessages(this.messages)),
      appendMessage: (message) => {
        if (message.toolResult && message.toolResult.callId === this.inFlight?.callId) this.inFlight = null;
        this.messages.push({ ...message, id: randomUUID(), createdAt: new Date().toISOString(), turnId });
        this.markChanged();
      },
      addUsage: (usage) => this.addUsage(usage),
      waitIfPaused: (signal) => this.gate.wait(signal),
      claimCallId: (proposed) => this.claimCallId(proposed),
    };
  }
}

function toLlmHistory(messages: readonly Message[]): LlmMessage[] {
  return messages.map((message): LlmMessage => {
    if (message.role === "tool" && message.toolResult) {
      const { callId, name, output, isError } = message.toolResult;
      return { role: "tool", callId, name, output, isError };
    }
    if (message.role === "assistant") return { role: "assistant", text: message.text, toolCalls: message.toolCalls };
    return { role: "user", text: message.text };
  });
}
