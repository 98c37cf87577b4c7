import type { CancelReason } from "../agent/cancellation.js";
import type { CompactionReport, ContextChange } from "../context/types.js";
import type { ErrorKind } from "../errors.js";
import type { LlmToolCall } from "../llm/types.js";
import type { PendingConfirmation, Resolution } from "../policy/confirmations.js";
import type { SessionStateName, ToolResult, UsageTotals } from "../session/types.js";

/**
 * The runtime's event vocabulary, in its own terms. The agent loop produces turn events; the session
 * stamps each one (and its own session-level events) with a sequence number; edges translate them.
 */

export type StopReason = "end_turn" | "max_tokens" | "max_tool_rounds";

export interface TurnResult {
  turnId: string;
  /** The model's final text. */
  text: string;
  stopReason: StopReason;
  usage: UsageTotals;
  toolRounds: number;
}

export type TurnEvent =
  | { type: "turn_started"; prompt: string }
  | { type: "text_delta"; text: string }
  | { type: "tool_call"; call: LlmToolCall }
  | { type: "tool_result"; result: ToolResult }
  /** A rule refused a call; its result tells the model. `rule` is null when the default decision did. */
  | { type: "permission_denied"; callId: string; toolName: string; rule: string | null }
  | { type: "confirmation_required"; confirmation: PendingConfirmation }
  | { type: "confirmation_resolved"; confirmationId: string; callId: string; resolution: Resolution }
  /** Token usage after one model call: that call, the turn so far and the session so far. */
  /** `subagent`: the step is a subagent's spending added to this turn (its model calls are its own session's). */
  | { type: "usage"; step: UsageTotals; turn: UsageTotals; session: UsageTotals; subagent?: true }
  | { type: "turn_completed"; result: TurnResult }
  | { type: "turn_failed"; error: { kind: ErrorKind; message: string } }
  | { type: "turn_cancelled"; reason: CancelReason }
  /**
   * The model's context was compacted: before a model call past the threshold or after an overflow
   * error (in a turn), or by CompactSession (a session-level event, turn id "").
   */
  | { type: "context_compacted"; report: CompactionReport }
  /** An event of a child session running a task for this turn (the task tool), as the child emitted it. */
  | { type: "subagent_event"; childSessionId: string; agent: string; event: SessionEvent };

/** Events about the session rather than one turn. */
export type SessionLevelEvent =
  | { type: "persistence_failed"; message: string; attempts: number }
  | { type: "state_changed"; state: SessionStateName }
  /** After a restart: a changing tool call was running when the server stopped; it was not run again. */
  | { type: "call_in_doubt"; callId: string; toolName: string }
  /** CompactSession's compaction (the same shape as the turn event), published once it is stored. */
  | { type: "context_compacted"; report: CompactionReport }
  /** ClearContext, RewindSession or an undone compaction changed the model's context; published once stored. */
  | { type: "context_changed"; change: ContextChange };

export type EventPayload = TurnEvent | SessionLevelEvent;

export interface SessionEvent {
  sessionId: string;
  /**
   * Strictly increasing within a session, across turns and restarts; 0 for a notice outside the
   * log (persistence_failed), which is neither stored nor replayed.
   */
  sequence: number;
  /** Milliseconds since the epoch. */
  timeMs: number;
  /** The turn the event belongs to; "" for session-level events. */
  turnId: string;
  payload: EventPayload;
}

const TERMINAL_TYPES = new Set<EventPayload["type"]>(["turn_completed", "turn_failed", "turn_cancelled"]);

/** The last event of a turn: completed, failed or cancelled. */
export function isTerminal(payload: EventPayload): boolean {
  return TERMINAL_TYPES.has(payload.type);
}
