import type { AgentEvent } from "../gen/agentd/v1/runtime.js";

/**
 * The payload of an AgentEvent. The agent loop produces payloads; the session stamps them with its
 * id, the turn id, a sequence number and a time.
 */
export type EventPayload = NonNullable<AgentEvent["payload"]>;

export type { AgentEvent };

const TERMINAL_CASES = new Set<EventPayload["$case"]>(["turnCompleted", "error", "cancelled"]);

/** The last event of a turn: completed, failed or cancelled. */
export function isTerminalPayload(payload: AgentEvent["payload"]): boolean {
  return payload !== undefined && TERMINAL_CASES.has(payload.$case);
}
