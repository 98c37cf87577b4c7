import type { SessionEvent } from "./types.js";

export interface EventLogLimits {
  /** Most events kept in memory per session. */
  maxEvents: number;
  /** Most bytes (of their JSON) kept in memory per session. */
  maxBytes: number;
}

export const DEFAULT_EVENT_LOG_LIMITS: EventLogLimits = { maxEvents: 2_000, maxBytes: 4 * 1024 * 1024 };

/**
 * A session's most recent events, in memory, for clients that re-attach: a bounded window over the
 * session's event log (older events are read back from the store). Events arrive in sequence order.
 */
export class RecentEvents {
  private readonly events: Array<{ event: SessionEvent; bytes: number }> = [];
  private bytes = 0;

  constructor(private readonly limits: EventLogLimits = DEFAULT_EVENT_LOG_LIMITS) {}

  append(event: SessionEvent): void {
    // A size estimate is enough to bound memory; text dominates, and it is counted in full.
    const bytes = 200 + (event.payload.type === "text_delta" ? event.payload.text.length * 2 : JSON.stringify(event.payload).length);
    this.events.push({ event, bytes });
    this.bytes += bytes;
    while (this.events.length > 1 && (this.events.length > this.limits.maxEvents || this.bytes > this.limits.maxBytes)) {
      this.bytes -= this.events.shift()!.bytes;
    }
  }

  /** Everything held, oldest first. */
  all(): SessionEvent[] {
    return this.events.map((entry) => entry.event);
  }

  /** The newest sequence held; 0 when empty. */
  get newest(): number {
    return this.events.at(-1)?.event.sequence ?? 0;
  }

  /** The oldest sequence held; 0 when empty. */
  get oldest(): number {
    return this.events[0]?.event.sequence ?? 0;
  }

  /** Events after `after`, or null when some may be older than what is held (or nothing is held). */
  after(after: number): SessionEvent[] | null {
    if (this.events.length === 0 || after + 1 < this.oldest) return null;
    // Sequences increase: find the first one past `after` from the end, where re-attaching clients usually are.
    let index = this.events.length;
    while (index > 0 && this.events[index - 1]!.event.sequence > after) index--;
    return this.events.slice(index).map((entry) => entry.event);
  }
}
