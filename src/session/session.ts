import { randomUUID } from "node:crypto";
import { Subject, type Observable } from "rxjs";
import { TurnAbortedError, type CancelReason } from "../agent/cancellation.js";
import type { TurnHost } from "../agent/loop.js";
import { isTerminal, type EventPayload, type SessionEvent, type SessionLevelEvent, type TurnEvent } from "../events/types.js";
import { RecentEvents } from "../events/log.js";
import type { LlmMessage, ModelProgress } from "../llm/types.js";
import type { SessionRecord, SkippedSequences } from "../store/record.js";
import type { PermissionRules } from "../policy/types.js";
import { sharedConfig, withPolicyDefaults } from "./config-merge.js";
import { SessionContext } from "../context/session-context.js";
import { PauseGate } from "./pause-gate.js";
import { ConfirmationBook, DeferredConfirmationBook } from "../policy/confirmations.js";
import { RuleSet } from "../policy/rules.js";
import { DeferredExtensions, SessionExtensions } from "./extensions.js";
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
/** While a model streams text, its deltas are handed to the store at least every this many events. */
const DELTAS_PER_WRITE = 512;
/** How far ahead sequence numbers are reserved in the stored record. */
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
 * What a session holds only once it is used: a turn, an event, a subscriber, a pause, a
 * confirmation, an extension, a context operation. An idle session has none of it, so thousands of
 * idle sessions cost little more than their ids (each part is made on first use, or restored).
 */
class Extra {
  /**
   * Sequence numbers up to this one may have been seen by a client; stored with the record and
   * reserved ahead, so that after a crash numbering resumes above it: a gap, never a repeat.
   */
  reservedThrough: number;
  /** The reservation the store is known to hold; numbers above it are published only once it does. */
  storedReservation: number;
  turn: ActiveTurn | null = null;
  /** The event stream, made for the first subscriber (events before it had nobody to reach). */
  subject: Subject<SessionEvent> | null = null;
  events$: Observable<SessionEvent> | null = null;
  /** Events the store has not been handed yet; the persister takes them with the record. */
  unpersisted: SessionEvent[] | null = null;
  /**
   * Events stamped but not yet published: while an acknowledgement waits for the disk (a turn's
   * terminal event), the events after it wait too, so that every client sees them in order.
   */
  outbox: SessionEvent[] | null = null;
  barrier: Promise<void> | null = null;
  /** The model changed while a turn ran: its script starts over once that turn, still on the old one, ends. */
  scriptResetPending = false;
  /** A changing tool call that has started and has no result yet. */
  inFlight: { callId: string; toolName: string; turnId: string } | null = null;
  writeError = "";
  /** Every tool call id in the history, built on first use. */
  callIds: Set<string> | null = null;
  gate: PauseGate | null = null;
  confirmations: ConfirmationBook | null = null;
  extensions: SessionExtensions | null = null;
  context: SessionContext | null = null;
  /** The model's context in the model's terms, for the context's list `of` (see llmHistory). */
  llmHistory: { of: readonly Message[]; list: LlmMessage[] } | null = null;

  /** Until a session has its Extra, both reservations are its sequence (as restored: no event has been stamped). */
  constructor(sequence: number) {
    this.reservedThrough = sequence;
    this.storedReservation = sequence;
  }
}

/** What sessions share until they hold something of their own (never changed in place). */
const NO_MESSAGES: Message[] = Object.freeze([]) as unknown as Message[];
const NO_LABELS: Record<string, string> = Object.freeze({});
const NO_USAGE: UsageTotals = Object.freeze({ inputTokens: 0, outputTokens: 0 });
const NO_SKIPPED: readonly SkippedSequences[] = Object.freeze([]);
/** Gaps remembered per session: the newest; an older one is past retention long before this many crashes. */
const MAX_SKIPPED_RANGES = 32;

/** Permission rules compiled once for every session holding the same (shared, frozen) rules. */
const compiledRules = new WeakMap<PermissionRules, RuleSet>();

/** A creation time kept as a number when its text is what formatting the number gives back. */
function creationTime(text: string): number | string {
  const ms = Date.parse(text);
  // Four-digit years only: their texts sort as their times do, so the registry may compare numbers.
  return Number.isFinite(ms) && text.length === 24 && new Date(ms).toISOString() === text ? ms : text;
}

/** The text a default workspace has before its session's id: one object for every session under it. */
class WorkspacePrefix {
  constructor(readonly text: string) {}
}

const workspacePrefixes = new Map<string, WorkspacePrefix>();
const KEPT_PREFIXES = 64;

/** `<prefix><id>` (the server's default, `<root>/<id>`) keeps a shared prefix, not its own copy of the path. */
function compactWorkspace(workspace: string, id: string): string | WorkspacePrefix {
  if (id.length === 0 || workspace.length <= id.length || !workspace.endsWith(id)) return workspace;
  const text = workspace.slice(0, workspace.length - id.length);
  let prefix = workspacePrefixes.get(text);
  if (!prefix) {
    if (workspacePrefixes.size >= KEPT_PREFIXES) return workspace;
    workspacePrefixes.set(text, (prefix = new WorkspacePrefix(text)));
  }
  return prefix;
}

/** A plain object without fields: `{}`. */
function isEmptyObject(value: unknown): boolean {
  if (typeof value !== "object" || value === null || Object.getPrototypeOf(value) !== Object.prototype) return false;
  for (const key in value) if (Object.hasOwn(value, key)) return false;
  return true;
}

/**
 * One agent session: its conversation, configuration, lifecycle state and event stream. Every event
 * passes through emit(), which assigns the session's next sequence number, so numbers are strictly
 * increasing across turns, session-level events and restarts. Every change calls `onChange`, which
 * schedules a background write.
 */
export class Session implements SessionView {
  readonly id: string;
  readonly ephemeral: boolean;
  readonly agent: string;
  private ownerName: string;
  private parent: string | null;
  /** Shared with the sessions whose config is equal, and frozen: replaced, never changed. */
  private currentConfig: SessionConfig;
  /** The workspace; or, for one named after the session (the server's default), the shared text before the id. */
  private readonly workspacePath: string | WorkspacePrefix;
  private readonly labelMap: Record<string, string>;
  /** When the session was made: ms since the epoch (formatted when asked for), or a stored text that is not one. */
  private readonly created: number | string;
  /** When the session last changed, in ms: formatted only when asked for, as changes come per event. */
  private updatedMs: number;
  private totals: UsageTotals;
  /** What the session's own model calls cost (SessionRecord.spent); null until the first. */
  private ownSpent: UsageTotals | null;
  /** The last number stamped; it changes only once the session has its Extra (emit), which holds the reservations. */
  private sequence: number;
  /** The last sequence published (restored: the last stored, all published before the restart). */
  private lastPublished: number;
  /** Numbers reserved before crashes and never used, as stored and at this restore (most often none). */
  private readonly skipped: readonly SkippedSequences[];
  private scriptSteps: number;
  private stateName: SessionStateName;
  /** Shared and empty until the first message. */
  private messages: Message[];
  /** Recent events, for clients that re-attach (Subscribe). */
  readonly recentEvents: RecentEvents;
  /** Writes the session now; resolves to whether the store has it. Never called for an ephemeral session. */
  private readonly persistNow: (session: Session) => Promise<boolean>;
  /** Everything else, made on first use. */
  private extra: Extra | null = null;

  constructor(
    record: SessionRecord,
    private readonly onChange: (session: Session) => void,
    /** Writes the session now; resolves to whether the store has it. */
    persistNow: (session: Session) => Promise<boolean> = storedAlready,
    recentEvents: RecentEvents = new RecentEvents(),
    /** Sees every event as it goes out (metrics); one function shared by all sessions. */
    private readonly observe: ((session: Session, event: SessionEvent) => void) | null = null,
    /**
     * Told of each model call the session pays for itself (not what a subagent's session paid
     * already), with the session's own total after it: its owner's ledger.
     */
    private readonly onSpend: ((session: Session, usage: Readonly<UsageTotals>, total: Readonly<UsageTotals>) => void) | null = null,
  ) {
    this.recentEvents = recentEvents;
    this.id = record.id;
    this.ownerName = record.owner;
    this.parent = record.parentId;
    this.currentConfig = withPolicyDefaults(record.config);
    this.workspacePath = compactWorkspace(record.workspace, record.id);
    this.ephemeral = record.ephemeral;
    // An ephemeral session never waits for the store: it keeps no hold on the writer.
    this.persistNow = record.ephemeral ? storedAlready : persistNow;
    this.labelMap = isEmptyObject(record.labels) ? NO_LABELS : record.labels;
    this.created = creationTime(record.createdAt);
    this.updatedMs = Date.parse(record.updatedAt) || Date.now();
    const usage = record.usage;
    this.totals = usage.inputTokens === 0 && usage.outputTokens === 0 && Object.keys(usage).length === 2 ? NO_USAGE : usage;
    this.ownSpent = record.spent ?? null;
    // After a crash, numbers handed out beyond the last stored event may have reached a client.
    this.sequence = Math.max(record.lastSequence, record.sequenceReservedThrough ?? 0);
    // Numbers skipped at a restart were never published: the last one published is the last stored.
    this.lastPublished = record.lastSequence;
    const skippedBefore = record.skippedSequences ?? NO_SKIPPED;
    this.skipped = record.lastSequence === this.sequence ? skippedBefore : [...skippedBefore, { after: record.lastSequence, through: this.sequence }].slice(-MAX_SKIPPED_RANGES);
    this.scriptSteps = record.scriptSteps ?? 0;
    // Context operations are checked against the transcript as restored, so a stored context is read now.
    if (record.context !== undefined) this.more().context = new SessionContext(record.context, this, record.messages.length);
    this.messages = record.messages.length === 0 ? NO_MESSAGES : record.messages;
    const extensions = record.extensions;
    if (extensions && (extensions.skills?.length || extensions.agents?.length || extensions.mcpServers?.length)) {
      this.more().extensions = new SessionExtensions(extensions, this);
    }
    this.agent = record.agent ?? "";
    this.stateName = record.state === "paused" ? "paused" : "idle";
    if (this.stateName === "paused") this.gate().pause();
  }

  private more(): Extra {
    return (this.extra ??= new Extra(this.sequence));
  }

  private gate(): PauseGate {
    const extra = this.more();
    return (extra.gate ??= new PauseGate());
  }

  /** The tool calls waiting for a person (the book is made by the first one). */
  get confirmations(): ConfirmationBook {
    return (
      this.extra?.confirmations ??
      new DeferredConfirmationBook((make) => (make ? (this.more().confirmations ??= new ConfirmationBook()) : (this.extra?.confirmations ?? null)))
    );
  }

  /** Skills, subagent definitions and MCP servers added to this session (made by the first add). */
  get extensions(): SessionExtensions {
    return (
      this.extra?.extensions ??
      new DeferredExtensions((make) => (make ? (this.more().extensions ??= new SessionExtensions(undefined, this)) : (this.extra?.extensions ?? null)))
    );
  }

  /** What the model's context holds of the transcript: compactions, clears, rewinds. */
  get context(): SessionContext {
    const extra = this.more();
    return (extra.context ??= new SessionContext(undefined, this));
  }

  /** Every event of this session: turn events and session-level ones. Completes when the session closes. */
  get events$(): Observable<SessionEvent> {
    const extra = this.more();
    return (extra.events$ ??= this.subject().asObservable());
  }

  private subject(): Subject<SessionEvent> {
    const extra = this.more();
    return (extra.subject ??= new Subject<SessionEvent>());
  }

  /** The last sequence number published to subscribers. */
  get publishedThrough(): number {
    return this.lastPublished;
  }

  /**
   * Numbers skipped at restores (reserved before a crash, never used): a replay may pass over them;
   * any other hole in the events is a loss, and is said so. Kept with the record, so a later clean
   * restart still knows them.
   */
  get skippedSequences(): readonly SkippedSequences[] {
    return this.skipped;
  }

  /** Where the session's scripted model keeps its position, so it survives restarts. */
  get scriptProgress(): ModelProgress {
    return {
      steps: () => this.scriptSteps,
      advance: () => {
        this.scriptSteps++;
        this.markChanged();
        return this.scriptSteps;
      },
    };
  }

  get createdAt(): string {
    const created = this.created;
    return typeof created === "number" ? new Date(created).toISOString() : created;
  }

  /** For ordering by creation: the time in ms, or the stored text when it is not one (compare texts then). */
  get creationKey(): number | string {
    return this.created;
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
    const workspace = this.workspacePath;
    return typeof workspace === "string" ? workspace : workspace.text + this.id;
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
    return this.extra?.writeError ?? "";
  }
  get messageCount(): number {
    return this.messages.length;
  }
  get activeTurnId(): string | null {
    return this.extra?.turn?.id ?? null;
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
    this.append(stored);
    this.markChanged();
    return stored;
  }

  /**
   * Adds a model call's tokens to the session's totals (a turn's calls, or a compaction's summary);
   * returns them. `rolledUp`: a subagent's spending, which its own session reported already.
   */
  addUsage(usage: UsageTotals, rolledUp = false): UsageTotals {
    if (!rolledUp) {
      this.ownSpent = sumUsage(this.ownSpent ?? NO_USAGE, usage);
      this.onSpend?.(this, usage, this.ownSpent);
    }
    this.totals = sumUsage(this.totals, usage);
    this.markChanged();
    return { ...this.totals };
  }

  /** What the session's own model calls cost so far (SessionRecord.spent); null before the first. */
  get spent(): Readonly<UsageTotals> | null {
    return this.ownSpent;
  }

  /** Raises the running total to at least `floor` (what the owner's ledger already has of it). */
  raiseSpent(floor: Readonly<UsageTotals>): void {
    const own = this.ownSpent ?? NO_USAGE;
    const costUsd = Math.max(own.costUsd ?? 0, floor.costUsd ?? 0);
    const raised = { inputTokens: Math.max(own.inputTokens, floor.inputTokens), outputTokens: Math.max(own.outputTokens, floor.outputTokens), ...(costUsd > 0 ? { costUsd } : {}) };
    if (raised.inputTokens === own.inputTokens && raised.outputTokens === own.outputTokens && costUsd === (own.costUsd ?? 0)) return;
    this.ownSpent = raised;
    this.markChanged();
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
    this.more().turn = { id: turnId, controller, deadline, finished, markFinished };
    return { turnId, signal: controller.signal, host: this.hostFor(turnId) };
  }

  /**
   * Stamps and publishes one of the running turn's events; the terminal one ends the turn first. A
   * terminal event acknowledges the turn's work, so it goes out only once that is on disk (the
   * events before it stream ahead; those after it wait behind it).
   */
  recordTurnEvent(turnId: string, event: TurnEvent): void {
    const turn = this.extra?.turn;
    const finishing = isTerminal(event) && turn?.id === turnId ? turn : null;
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
    const extra = this.more();
    const previous = extra.barrier ?? Promise.resolve();
    const reservation = extra.reservedThrough;
    const barrier: Promise<void> = previous
      .then(async () => {
        for (let delay = 100; ; delay = Math.min(delay * 2, 5_000)) {
          const stored = await this.persistNow(this).catch(() => false);
          if (stored) extra.storedReservation = Math.max(extra.storedReservation, reservation);
          if (stored || this.stateName === "closed") return;
          await new Promise((resolve) => setTimeout(resolve, delay));
        }
      })
      .then(() => {
        if (extra.barrier === barrier) extra.barrier = null;
        this.publishWaiting();
      });
    extra.barrier = barrier;
  }

  /** Resolves once every event stamped so far has been published (after the store took what needed it). */
  async published(): Promise<void> {
    for (let barrier = this.extra?.barrier; barrier; barrier = this.extra?.barrier) await barrier;
  }

  /** Events of this session not yet handed to the store; the persister drains them with each write. */
  takeUnpersistedEvents(): SessionEvent[] {
    const extra = this.extra;
    const taken = extra?.unpersisted;
    if (!taken) return [];
    extra!.unpersisted = null;
    return taken;
  }

  /**
   * Reserves a block of sequence numbers to go with a write about to be made (CreateSession's), so
   * that the first events need no write of their own; call the returned function once it is stored.
   */
  reserveAhead(): () => void {
    const extra = this.more();
    const through = (extra.reservedThrough = Math.max(extra.reservedThrough, this.sequence + SEQUENCE_BLOCK));
    return () => {
      extra.storedReservation = Math.max(extra.storedReservation, through);
    };
  }

  /** On a clean shutdown the reserved numbers are given back: numbering resumes right after the last one. */
  releaseSequenceReservation(): void {
    if (this.extra) this.extra.reservedThrough = this.sequence;
    this.markChanged();
  }

  /** Aborts the running turn, if any. The turn itself reports the terminal `turn_cancelled` event. */
  cancelTurn(reason: CancelReason, onlyTurnId?: string): string | null {
    const turn = this.extra?.turn;
    if (!turn || (onlyTurnId !== undefined && turn.id !== onlyTurnId)) return null;
    turn.controller.abort(new TurnAbortedError(reason));
    return turn.id;
  }

  /** Resolves when no turn is running any more. */
  async settled(): Promise<void> {
    await this.extra?.turn?.finished;
  }

  pause(): void {
    this.transition("pause");
    this.gate().pause();
    this.emitStateChanged();
  }

  resume(): void {
    this.transition("resume");
    // No gate: nothing was ever paused, so nothing waits.
    this.extra?.gate?.resume();
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
    // A subscriber that comes later learns at once that the stream has ended.
    this.subject().complete();
    this.recentEvents.clear();
  }

  /** A new model starts its script from the beginning; other changes keep the position. */
  configure(config: SessionConfig): void {
    if (JSON.stringify(config.model) !== JSON.stringify(this.currentConfig.model)) {
      if (this.extra?.turn) this.extra.scriptResetPending = true;
      else this.scriptSteps = 0;
    }
    this.currentConfig = sharedConfig(config);
    this.markChanged();
  }

  /** The session's permission rules, compiled once per change (and once for all sessions that share them). */
  ruleSet(): RuleSet {
    const permissions = this.currentConfig.permissions;
    let rules = compiledRules.get(permissions);
    if (!rules) compiledRules.set(permissions, (rules = new RuleSet(permissions)));
    return rules;
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
    this.more().inFlight = call;
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
    if (this.extra?.turn?.id !== turnId) return;
    this.emit(turnId, { type: "subagent_event", childSessionId, agent, event });
  }

  /**
   * Says at once that the store fails. A notice outside the event log (sequence 0, neither stored
   * nor replayed): it must not wait behind the acknowledgements the failure holds up, and a number
   * of its own would come before theirs.
   */
  reportPersistenceFailure(message: string, attempts: number): void {
    const extra = this.more();
    extra.writeError = message;
    const notice: SessionEvent = { sessionId: this.id, sequence: 0, timeMs: Date.now(), turnId: "", payload: { type: "persistence_failed", message, attempts } };
    this.observe?.(this, notice);
    // Nobody has subscribed yet: there is nobody to tell.
    extra.subject?.next(notice);
  }

  clearPersistenceError(): void {
    if (this.extra) this.extra.writeError = "";
  }

  /**
   * The session as stored. The record shares the session's parts instead of copying them: the
   * session replaces each (config, labels, usage, the call in flight, its confirmations) and never
   * changes one in place, the extensions and the context hand out copies, and the transcript is only
   * appended to (see SessionStore.save): so a write costs what is new, not the whole session. A
   * record is what a store keeps, not the start of another live session (that one would append to
   * this one's transcript): copy its messages first.
   */
  toRecord(): SessionRecord {
    const extra = this.extra;
    const context = extra?.context?.toRecord();
    return {
      version: 1,
      id: this.id,
      owner: this.ownerName,
      parentId: this.parent,
      state: this.stateName,
      config: this.currentConfig,
      workspace: this.workspace,
      ephemeral: this.ephemeral,
      labels: this.labelMap,
      createdAt: this.createdAt,
      updatedAt: this.updatedAt,
      usage: this.totals,
      ...(this.ownSpent ? { spent: this.ownSpent } : {}),
      lastSequence: this.sequence,
      sequenceReservedThrough: extra?.reservedThrough ?? this.sequence,
      messages: this.messages,
      scriptSteps: this.scriptSteps,
      callInFlight: extra?.inFlight ?? null,
      runningTurnId: extra?.turn?.id ?? null,
      ...(this.skipped.length > 0 ? { skippedSequences: this.skipped as SkippedSequences[] } : {}),
      pendingConfirmation: extra?.confirmations?.list()[0] ?? null,
      extensions: extra?.extensions?.toRecord() ?? { skills: [], agents: [], mcpServers: [] },
      ...(this.agent ? { agent: this.agent } : {}),
      ...(context ? { context } : {}),
    };
  }

  /** Stamps the change time and schedules a background write. */
  markChanged(): void {
    this.updatedMs = Date.now();
    this.onChange(this);
  }

  private emit(turnId: string, payload: EventPayload): void {
    const extra = this.more();
    this.sequence++;
    // Reserve well ahead, so the reservation reaches the disk long before numbering gets there.
    if (this.sequence > extra.reservedThrough - SEQUENCE_BLOCK / 2) extra.reservedThrough = this.sequence + SEQUENCE_BLOCK;
    const event: SessionEvent = { sessionId: this.id, sequence: this.sequence, timeMs: Date.now(), turnId, payload };
    let unpersisted = 0;
    if (!this.ephemeral) unpersisted = (extra.unpersisted ??= []).push(event);
    // Text deltas come by the thousand: the step's other events mark the change (and schedule the
    // write that takes the deltas along); a long stream still hands them over every so often.
    if (payload.type !== "text_delta" || (!this.ephemeral && unpersisted % DELTAS_PER_WRITE === 0)) this.markChanged();
    if (extra.barrier) (extra.outbox ??= []).push(event);
    // Nothing waits ahead of it: it goes out now, unless it must wait itself (no queue is made for it then).
    else if (extra.outbox === null && this.mayPublish(event)) this.publish(event);
    else {
      (extra.outbox ??= []).push(event);
      this.publishWaiting();
    }
  }

  /**
   * A number above the stored reservation could be handed out again after a crash: it waits until
   * the reservation is stored (once per block of numbers, and once after a restart). (A closed
   * session is past acknowledging: what it has left goes out, stored or not.)
   */
  private mayPublish(event: SessionEvent): boolean {
    return this.ephemeral || this.stateName === "closed" || event.sequence <= (this.extra?.storedReservation ?? this.sequence);
  }

  /** Publishes what may go out; a client re-attaching sees exactly what the others were sent. */
  private publishWaiting(): void {
    const extra = this.extra;
    if (!extra) return;
    // Publishing may stamp more events (a subscriber reacting): the queue is read afresh each time.
    for (let outbox = extra.outbox; outbox !== null && !extra.barrier; outbox = extra.outbox) {
      if (outbox.length === 0) {
        extra.outbox = null;
        return;
      }
      if (!this.mayPublish(outbox[0]!)) {
        this.holdUntilStored();
        return;
      }
      this.publish(outbox.shift()!);
    }
  }

  private publish(event: SessionEvent): void {
    this.lastPublished = event.sequence;
    this.recentEvents.append(event);
    this.observe?.(this, event);
    this.extra?.subject?.next(event);
  }

  private emitStateChanged(): void {
    this.emit("", { type: "state_changed", state: this.stateName });
  }

  private finishTurn(turn: ActiveTurn): void {
    clearTimeout(turn.deadline);
    const extra = this.more();
    extra.turn = null;
    if (extra.scriptResetPending) {
      extra.scriptResetPending = false;
      this.scriptSteps = 0;
    }
    this.transition("end_turn");
  }

  private transition(action: SessionAction): void {
    this.stateName = nextState(this.id, this.stateName, action, (this.extra?.turn ?? null) !== null);
    this.markChanged();
  }

  private append(message: Message): void {
    if (this.messages === NO_MESSAGES) this.messages = [];
    this.messages.push(message);
  }

  private claimCallId(proposed: string): string {
    const extra = this.more();
    const used = (extra.callIds ??= new Set(this.messages.flatMap((m) => m.toolCalls.map((call) => call.id))));
    let id = proposed;
    for (let n = 2; used.has(id); n++) id = `${proposed}_${n}`;
    used.add(id);
    return id;
  }

  /**
   * The model's context in the model's terms. Kept between model calls and extended with the
   * messages added since (the context's list only grows until an operation replaces it).
   */
  private llmHistory(): readonly LlmMessage[] {
    const messages = this.context.modelMessages(this.messages);
    const extra = this.more();
    const cached = extra.llmHistory;
    if (cached?.of !== messages) {
      extra.llmHistory = { of: messages, list: messages.map(toLlmMessage) };
      return extra.llmHistory.list;
    }
    for (let i = cached.list.length; i < messages.length; i++) cached.list.push(toLlmMessage(messages[i]!));
    return cached.list;
  }

  private hostFor(turnId: string): TurnHost {
    return {
      history: () => this.llmHistory(),
      appendMessage: (message) => {
        const extra = this.extra;
        if (extra && message.toolResult && message.toolResult.callId === extra.inFlight?.callId) extra.inFlight = null;
        this.append({ ...message, id: randomUUID(), createdAt: new Date().toISOString(), turnId });
        this.markChanged();
      },
      addUsage: (usage, rolledUp) => this.addUsage(usage, rolledUp),
      spentUsd: () => this.totals.costUsd ?? 0,
      waitIfPaused: (signal) => this.gate().wait(signal),
      claimCallId: (proposed) => this.claimCallId(proposed),
    };
  }
}

function sumUsage(a: Readonly<UsageTotals>, b: Readonly<UsageTotals>): UsageTotals {
  const costUsd = (a.costUsd ?? 0) + (b.costUsd ?? 0);
  return {
    inputTokens: Math.min(a.inputTokens + b.inputTokens, Number.MAX_SAFE_INTEGER),
    outputTokens: Math.min(a.outputTokens + b.outputTokens, Number.MAX_SAFE_INTEGER),
    ...(costUsd > 0 ? { costUsd } : {}),
  };
}

function toLlmMessage(message: Message): LlmMessage {
  if (message.role === "tool" && message.toolResult) {
    const { callId, name, output, isError } = message.toolResult;
    return { role: "tool", callId, name, output, isError };
  }
  if (message.role === "assistant") return { role: "assistant", text: message.text, toolCalls: message.toolCalls };
  return { role: "user", text: message.text };
}

/** What an ephemeral session's store answers: nothing to write. */
async function storedAlready(): Promise<boolean> {
  return true;
}
