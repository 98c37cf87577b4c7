import type { SessionEvent } from "./types.js";

export interface EventLogLimits {
  /** Most events kept in memory per session. */
  maxEvents: number;
  /** Most bytes (of their JSON) kept in memory per session. */
  maxBytes: number;
}

export const DEFAULT_EVENT_LOG_LIMITS: EventLogLimits = { maxEvents: 2_000, maxBytes: 4 * 1024 * 1024 };

/**
 * About what an event takes in memory, in bytes. An estimate is enough to bound memory: text
 * dominates and is counted in full (two bytes a character), with an allowance for the rest; the
 * rarer events, whose shape varies, by their JSON.
 */
export function eventSize(event: SessionEvent): number {
  const { payload } = event;
  // A turn's own events are counted without serializing them: there are several per step.
  switch (payload.type) {
    case "text_delta":
      return 200 + payload.text.length * 2;
    case "turn_started":
      return 200 + payload.prompt.length * 2;
    case "tool_call":
      return 300 + (payload.call.name.length + payload.call.argumentsJson.length) * 2;
    case "tool_result":
      return 300 + (payload.result.name.length + payload.result.output.length) * 2;
    case "usage":
    case "state_changed":
      return 300;
    case "turn_completed":
      return 300 + payload.result.text.length * 2;
    default:
      return 200 + JSON.stringify(payload).length;
  }
}

/**
 * The memory every session's window shares. Each window is bounded on its own, but a server with
 * thousands of sessions needs a bound on their sum: past it, the windows that took an event least
 * recently give up their oldest events first (idle sessions empty before busy ones shrink), and
 * subscribers read those events back from the store.
 */
export class EventMemory {
  /** Windows in the order they last took an event, least recent first. */
  private readonly windows = new Map<RecentEvents, true>();
  private total = 0;
  /** The window that took the last event: already the most recent, no need to move it. */
  private latest: RecentEvents | null = null;

  constructor(readonly maxBytes: number) {}

  /** Bytes held by every window together. */
  get bytes(): number {
    return this.total;
  }

  /** A window took an event of `bytes`: it becomes the most recent, and the least recent ones shrink to fit. */
  took(window: RecentEvents, bytes: number): void {
    if (window !== this.latest) {
      this.windows.delete(window);
      this.windows.set(window, true);
      this.latest = window;
    }
    this.total += bytes;
    for (const oldest of this.windows.keys()) {
      if (this.total <= this.maxBytes) return;
      // The window that just took an event keeps at least that one.
      while (this.total > this.maxBytes && oldest.length > (oldest === window ? 1 : 0)) oldest.dropOldest();
      if (oldest === window) return;
    }
  }

  /** A window gave back `bytes` (trimmed, or dropped). */
  gave(window: RecentEvents, bytes: number, empty: boolean): void {
    this.total -= bytes;
    if (!empty) return;
    this.windows.delete(window);
    if (window === this.latest) this.latest = null;
  }
}

/** The events a window holds, oldest first, with each one's size and their sum. */
interface Held {
  events: SessionEvent[];
  sizes: number[];
  bytes: number;
}

/**
 * A session's most recent events, in memory, for clients that re-attach: a bounded window over the
 * session's event log (older events are read back from the store). Events arrive in sequence order.
 */
export class RecentEvents {
  /** Made with the first event, let go when the window empties: most sessions sit idle, holding none. */
  private held: Held | null = null;

  constructor(
    private readonly limits: EventLogLimits = DEFAULT_EVENT_LOG_LIMITS,
    private readonly memory?: EventMemory,
  ) {}

  append(event: SessionEvent): void {
    const bytes = eventSize(event);
    const held = (this.held ??= { events: [], sizes: [], bytes: 0 });
    held.events.push(event);
    held.sizes.push(bytes);
    held.bytes += bytes;
    while (held.events.length > 1 && (held.events.length > this.limits.maxEvents || held.bytes > this.limits.maxBytes)) this.dropOldest();
    this.memory?.took(this, bytes);
  }

  /** Gives up the oldest event held (it stays in the store for a persistent session). */
  dropOldest(): void {
    const held = this.held;
    if (!held) return;
    held.events.shift();
    const dropped = held.sizes.shift()!;
    held.bytes -= dropped;
    const empty = held.events.length === 0;
    if (empty) this.held = null;
    this.memory?.gave(this, dropped, empty);
  }

  /** Gives up everything held: the session is gone. */
  clear(): void {
    while (this.held) this.dropOldest();
  }

  /** Events held. */
  get length(): number {
    return this.held?.events.length ?? 0;
  }

  /** Everything held, oldest first. */
  all(): SessionEvent[] {
    return this.held ? [...this.held.events] : [];
  }

  /** The newest sequence held; 0 when empty. */
  get newest(): number {
    return this.held?.events.at(-1)?.sequence ?? 0;
  }

  /** The oldest sequence held; 0 when empty. */
  get oldest(): number {
    return this.held?.events[0]?.sequence ?? 0;
  }

  /** Events after `after`, or null when some may be older than what is held (or nothing is held). */
  after(after: number): SessionEvent[] | null {
    const events = this.held?.events;
    if (!events || after + 1 < this.oldest) return null;
    // Sequences increase: find the first one past `after` from the end, where re-attaching clients usually are.
    let index = events.length;
    while (index > 0 && events[index - 1]!.sequence > after) index--;
    return events.slice(index);
  }
}
