import type { SessionEvent } from "../events/types.js";
import { isPlainObject } from "../util/values.js";
import type { MessageRecord } from "./record.js";
import { SESSION_ID } from "./session-files.js";

/**
 * One line of the write-ahead log. Every entry starts with the same head, `{"n":<n>,"op":<op>,"id":<id>`,
 * so a line damaged after it still tells whose it was.
 */
export type WalEntry =
  | {
      n: number;
      op: "save";
      id: string;
      /**
       * The session's entry this one follows (0 for none, or one its files already hold). Replay
       * applies an entry only after that one: a damaged entry stops its session there, not the others.
       */
      prev?: number;
      /** `set` holds every field: the others are removed. */
      replace?: boolean;
      set?: Record<string, unknown>;
      unset?: string[];
      from?: number;
      messages?: MessageRecord[];
      events?: SessionEvent[];
    }
  | { n: number; op: "delete"; id: string };

/** The start of an entry's line; the rest of the object follows it. */
export function entryHead(n: number, op: WalEntry["op"], id: string): string {
  return `{"n":${n},"op":"${op}","id":${JSON.stringify(id)}`;
}

const HEAD = /^\{"n":(\d+),"op":"(?:save|delete)","id":"([^"\\]*)"/;

/** What a damaged line's head still says, if it is intact. */
export function headOf(line: string): { n: number; id: string } | null {
  const match = HEAD.exec(line);
  if (!match || !SESSION_ID.test(match[2]!)) return null;
  return { n: Number(match[1]), id: match[2]! };
}

/** A log line as an entry, or null when it cannot be one (damaged): nothing of it is applied then. */
export function parseWalEntry(line: string): WalEntry | null {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return null;
  }
  if (!isPlainObject(value) || !isCount(value.n) || typeof value.id !== "string" || !SESSION_ID.test(value.id)) return null;
  if (value.op === "delete") return value as unknown as WalEntry;
  if (value.op !== "save") return null;
  const valid =
    (value.prev === undefined || isCount(value.prev)) &&
    (value.replace === undefined || typeof value.replace === "boolean") &&
    (value.set === undefined || isPlainObject(value.set)) &&
    (value.unset === undefined || (Array.isArray(value.unset) && value.unset.every((key) => typeof key === "string"))) &&
    (value.from === undefined || isCount(value.from)) &&
    (value.messages === undefined || (Array.isArray(value.messages) && value.messages.every((m) => isPlainObject(m) && typeof m.id === "string"))) &&
    (value.events === undefined || (Array.isArray(value.events) && value.events.every((e) => isPlainObject(e) && Number.isSafeInteger(e.sequence))));
  return valid ? (value as unknown as WalEntry) : null;
}

function isCount(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}
