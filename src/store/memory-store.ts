import type { SessionEvent } from "../events/types.js";
import { firstAfter, retainedFrom } from "./event-retention.js";
import type { SessionRecord } from "./record.js";
import { SpendTotals, type SpendMark, type SpendRow } from "./spend.js";
import type { UsageTotals } from "../session/types.js";
import { DEFAULT_EVENT_RETENTION, type EventRetention, type LoadResult, type ReadEventsResult, type SessionStore } from "./types.js";

interface Stored {
  /** The record without its messages, as text. */
  snapshot: string;
  /** Each message as text: a later mutation of the caller's objects cannot leak in. */
  messages: string[];
  lastMessageId: string | null;
  sequences: number[];
  events: string[];
}

/**
 * Keeps records in the process: for `--store memory` and for tests. Like the file store, a save
 * costs what is new: messages are appended unless the stored ones were rewritten.
 */
export class MemoryStore implements SessionStore {
  private readonly sessions = new Map<string, Stored>();
  private readonly spend = new SpendTotals();

  constructor(private readonly retention: EventRetention = DEFAULT_EVENT_RETENTION) {}

  async loadAll(): Promise<LoadResult> {
    const records = [...this.sessions.values()].map((stored) => ({
      ...(JSON.parse(stored.snapshot) as Omit<SessionRecord, "messages">),
      messages: stored.messages.map((text) => JSON.parse(text) as SessionRecord["messages"][number]),
    }));
    return { records, failures: [] };
  }

  async save(record: SessionRecord, events: readonly SessionEvent[] = []): Promise<void> {
    const { messages, ...rest } = record;
    let stored = this.sessions.get(record.id);
    if (!stored) {
      stored = { snapshot: "", messages: [], lastMessageId: null, sequences: [], events: [] };
      this.sessions.set(record.id, stored);
    }
    stored.snapshot = JSON.stringify(rest);
    const count = stored.messages.length;
    const appended = messages.length >= count && (count === 0 || messages[count - 1]!.id === stored.lastMessageId);
    if (!appended) stored.messages = [];
    for (const message of messages.slice(stored.messages.length)) stored.messages.push(JSON.stringify(message));
    stored.lastMessageId = messages.at(-1)?.id ?? null;
    for (const event of events) {
      if (event.sequence <= (stored.sequences.at(-1) ?? 0)) continue;
      stored.sequences.push(event.sequence);
      stored.events.push(JSON.stringify(event));
    }
    const start = retainedFrom(stored.events.length, (i) => Buffer.byteLength(stored.events[i]!) + 1, this.retention);
    if (start > 0) {
      stored.sequences.splice(0, start);
      stored.events.splice(0, start);
    }
  }

  async delete(sessionId: string): Promise<void> {
    this.sessions.delete(sessionId);
    this.spend.marks.delete(sessionId);
  }

  async readEvents(sessionId: string, after: number, limit: number): Promise<ReadEventsResult> {
    const stored = this.sessions.get(sessionId);
    if (!stored) return { events: [], oldest: 0 };
    const from = firstAfter((i) => stored.sequences[i]!, after, 0, stored.sequences.length);
    const events = stored.events.slice(from, from + Math.max(0, limit)).map((text) => JSON.parse(text) as SessionEvent);
    return { events, oldest: stored.sequences[0] ?? 0 };
  }

  async addSpend(rows: readonly SpendRow[], marks: readonly SpendMark[] = []): Promise<void> {
    for (const row of rows) this.spend.add(row);
    for (const mark of marks) this.spend.mark(mark);
  }

  async marksOf(sessionIds: readonly string[]): Promise<Map<string, SpendMark>> {
    return this.spend.marksOf(sessionIds);
  }

  async spendOf(owner: string, fromDay: string): Promise<UsageTotals> {
    return this.spend.sum(owner, fromDay);
  }

  has(sessionId: string): boolean {
    return this.sessions.has(sessionId);
  }
}
