import type { SessionEvent } from "../../src/events/types.js";
import type { MessageRecord, SessionRecord } from "../../src/store/record.js";
import { sessionRecord } from "../helpers/records.js";

/** A message of about `size` characters. */
export function message(n: number, size = 200, turnId = `t${Math.floor(n / 2)}`): MessageRecord {
  return {
    id: `m${n}`,
    role: n % 2 === 0 ? "user" : "assistant",
    text: `message ${n} `.padEnd(size, "x"),
    toolCalls: [],
    createdAt: "2026-01-01T00:00:00.000Z",
    turnId,
  };
}

export function messages(count: number, size?: number): MessageRecord[] {
  return Array.from({ length: count }, (_, n) => message(n, size));
}

export function event(sessionId: string, sequence: number, text = "delta"): SessionEvent {
  return { sessionId, sequence, timeMs: 1_700_000_000_000 + sequence, turnId: "t", payload: { type: "text_delta", text } };
}

export function events(sessionId: string, from: number, to: number, text?: string): SessionEvent[] {
  return Array.from({ length: to - from + 1 }, (_, i) => event(sessionId, from + i, text));
}

/** A record with these messages, its last sequence and change time following them. */
export function recordWith(id: string, list: MessageRecord[], lastSequence = list.length): SessionRecord {
  return { ...sessionRecord(id, lastSequence), messages: list, updatedAt: new Date(1_700_000_000_000 + lastSequence).toISOString() };
}
