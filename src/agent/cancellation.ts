/** Why a turn was cancelled, as reported in the turn_cancelled event. */
export type CancelReason =
  | "cancel_rpc"
  | "client_disconnected"
  | "session_destroyed"
  | "shutdown"
  | "deadline_exceeded"
  /** A subagent's turn, because the parent turn that handed it the task was cancelled. */
  | "parent_cancelled"
  /** The turn was running when the server stopped (crashed); it did not go on after the restart. */
  | "server_restarted"
  /** The client of a StreamGenerate call read its events too slowly and was cut off. */
  | "client_too_slow";

/**
 * The reason object a turn's AbortController is aborted with. Its name is "AbortError" so every
 * layer (fetch, SDKs, our tools) treats it as an ordinary abort.
 */
export class TurnAbortedError extends Error {
  constructor(readonly reason: CancelReason) {
    super(`turn cancelled (${reason})`);
    this.name = "AbortError";
  }
}

export function cancelReasonOf(signal: AbortSignal): CancelReason {
  return signal.reason instanceof TurnAbortedError ? signal.reason.reason : "cancel_rpc";
}
