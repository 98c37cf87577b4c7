import { Observable, type Subscription } from "rxjs";
import { AgentdError } from "../errors.js";
import type { Session } from "../session/session.js";
import { eventSize } from "./log.js";
import type { SessionEvent } from "./types.js";

/** What a subscriber receives: the session's events, and a marker once the replay has caught up. */
export type SubscriptionItem = { kind: "event"; event: SessionEvent } | { kind: "caught_up"; sequence: number };

/** Where a subscription finds events older than a session keeps in memory. */
export type StoredEventReader = (sessionId: string, after: number, limit: number) => Promise<{ events: SessionEvent[]; oldest: number }>;

export interface SubscribeOptions {
  /** Replay the events after this sequence number; the session's last one replays nothing. */
  afterSequence: number;
  /** Replay from the oldest event kept when the cursor is older, instead of OUT_OF_RANGE. */
  fromOldestKept?: boolean;
  /** Descendants' live events too, each with its own session id (replay covers the session itself). */
  includeDescendants: boolean;
  /** Resolves when the subscriber can take more: the replay goes at the reader's pace, not all at once. */
  ready?: () => Promise<void>;
  /**
   * How many live events (and bytes of them) may wait while the replay runs; past that, the
   * subscriber is ended with RESOURCE_EXHAUSTED naming where to resume, so a reader that stalls
   * mid-replay does not make the server hold a busy session's events.
   */
  maxHeld?: { events: number; bytes: number };
}

export interface SubscriptionSources {
  readStored: StoredEventReader;
  /** Hands the session's pending events to the store now; false when the store fails. */
  flush(sessionId: string): Promise<boolean>;
  /** The session's descendants now, and each session added from now on, to follow a whole tree. */
  descendants(root: Session): Session[];
  added(listener: (session: Session) => void): () => void;
  isDescendant(session: Session, root: Session): boolean;
}

const REPLAY_PAGE = 1_000;
const DEFAULT_MAX_HELD = { events: 10_000, bytes: 8 * 1024 * 1024 };

/**
 * A session's events after a cursor, then `caught_up`, then its live events, until the subscriber
 * leaves. Live events are listened to before the replay starts and held until it ends, so nothing
 * falls between the two and nothing comes twice. OUT_OF_RANGE when the cursor is older than the
 * retained log (the message names the oldest sequence available) or newer than the session's last.
 */
export function subscribeToSession(root: Session, options: SubscribeOptions, sources: SubscriptionSources): Observable<SubscriptionItem> {
  return new Observable<SubscriptionItem>((subscriber) => {
    const { afterSequence } = options;
    if (afterSequence > root.lastSequence) {
      subscriber.error(
        new AgentdError("out_of_range", `after_sequence ${afterSequence} is past session ${root.id}'s last event (${root.lastSequence}); subscribe after ${root.lastSequence} or less`),
      );
      return;
    }
    const maxHeld = options.maxHeld ?? DEFAULT_MAX_HELD;
    let replaying = true;
    let lastReplayed = afterSequence;
    const held: SessionEvent[] = [];
    let heldBytes = 0;
    const subscriptions = new Set<Subscription>();
    const hold = (event: SessionEvent) => {
      held.push(event);
      heldBytes += eventSize(event);
      if (held.length <= maxHeld.events && heldBytes <= maxHeld.bytes) return;
      held.length = 0;
      subscriber.error(
        new AgentdError(
          "resource_exhausted",
          `the client read the replay too slowly while session ${root.id} went on; the last event sent was sequence ${lastReplayed}: Subscribe again with after_sequence ${lastReplayed}`,
        ),
      );
    };
    const follow = (session: Session, own: boolean) => {
      const subscription = session.events$.subscribe({
        next: (event) => {
          if (own && replaying) hold(event);
          else if (!own || event.sequence > lastReplayed) subscriber.next({ kind: "event", event });
        },
        // The session itself closing ends the subscription; a descendant closing does not.
        complete: () => {
          subscriptions.delete(subscription);
          if (own) subscriber.complete();
        },
      });
      if (!subscription.closed) subscriptions.add(subscription);
    };
    follow(root, true);
    let stopAdded = () => {};
    if (options.includeDescendants) {
      for (const child of sources.descendants(root)) if (child !== root) follow(child, false);
      stopAdded = sources.added((session) => {
        if (session !== root && sources.isDescendant(session, root)) follow(session, false);
      });
    }

    const ready = options.ready ?? (() => Promise.resolve());
    void replay(root, options, sources, async (event) => {
      if (subscriber.closed) throw new ReplayStopped();
      lastReplayed = event.sequence;
      subscriber.next({ kind: "event", event });
      await ready();
    }).then(
      () => {
        if (subscriber.closed) return;
        replaying = false;
        subscriber.next({ kind: "caught_up", sequence: lastReplayed });
        for (const event of held.splice(0)) if (event.sequence > lastReplayed) subscriber.next({ kind: "event", event });
      },
      (error: unknown) => {
        if (!(error instanceof ReplayStopped)) subscriber.error(error);
      },
    );

    return () => {
      stopAdded();
      for (const subscription of subscriptions) subscription.unsubscribe();
      subscriptions.clear();
    };
  });
}

/** The subscriber left during the replay. */
class ReplayStopped extends Error {}

/**
 * Sends the events after the cursor that were published before now: from the store, then from
 * memory. A hole in the numbers is passed over only where the session skipped numbers at a restart;
 * any other hole means events are gone (trimmed, never stored), and the subscriber is told.
 */
async function replay(session: Session, options: SubscribeOptions, sources: SubscriptionSources, send: (event: SessionEvent) => Promise<void>): Promise<void> {
  const upTo = session.recentEvents.newest;
  const after = options.afterSequence;
  let cursor = after;
  let flushed = false;
  const fromMemory = async (from: number) => {
    for (const event of session.recentEvents.all()) if (event.sequence > from && event.sequence <= upTo) await send(event);
  };
  for (;;) {
    const recent = session.recentEvents.after(cursor);
    if (recent !== null) {
      for (const event of recent) if (event.sequence <= upTo) await send(event);
      return;
    }
    const { events } = await sources.readStored(session.id, cursor, REPLAY_PAGE);
    // The next event there is: the store's, else memory's oldest, else none yet.
    const next = events[0]?.sequence ?? (session.recentEvents.length > 0 ? session.recentEvents.oldest : session.lastSequence + 1);
    if (!continuous(session, cursor, next) && !(options.fromOldestKept === true && cursor === after)) {
      // Events written in the background may not have reached the store yet: once, hand them over and look again.
      if (!flushed) {
        flushed = true;
        if (!(await sources.flush(session.id))) {
          throw new AgentdError("unavailable", `events after ${cursor} of session ${session.id} are not in the store yet, and the store is failing; subscribe again later`);
        }
        continue;
      }
      throw new AgentdError(
        "out_of_range",
        `events after ${after} are no longer kept for session ${session.id}; the oldest available is ${next}: subscribe after ${next - 1} or later (or set from_oldest_kept)`,
      );
    }
    if (events.length === 0) return fromMemory(cursor);
    for (const event of events) await send(event);
    cursor = events.at(-1)!.sequence;
  }
}

/** Whether nothing lies between `cursor` and `next` but numbers the session skipped at its restart. */
function continuous(session: Session, cursor: number, next: number): boolean {
  if (next <= cursor + 1) return true;
  const { after, through } = session.skippedSequences;
  return cursor >= after && next - 1 <= through;
}
