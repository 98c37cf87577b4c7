import { Observable, type Subscription } from "rxjs";
import { AgentdError } from "../errors.js";
import type { Session } from "../session/session.js";
import type { SessionEvent } from "./types.js";

/** What a subscriber receives: the session's events, and a marker once the replay has caught up. */
export type SubscriptionItem = { kind: "event"; event: SessionEvent } | { kind: "caught_up"; sequence: number };

/** Where a subscription finds events older than a session keeps in memory. */
export type StoredEventReader = (sessionId: string, after: number, limit: number) => Promise<{ events: SessionEvent[]; oldest: number }>;

export interface SubscribeOptions {
  /** Replay the events after this sequence number; the session's last one replays nothing. */
  afterSequence: number;
  /** Descendants' live events too, each with its own session id (replay covers the session itself). */
  includeDescendants: boolean;
  /** Resolves when the subscriber can take more: the replay goes at the reader's pace, not all at once. */
  ready?: () => Promise<void>;
}

export interface SubscriptionSources {
  readStored: StoredEventReader;
  /** The session's descendants now, and each session added from now on, to follow a whole tree. */
  descendants(root: Session): Session[];
  added(listener: (session: Session) => void): () => void;
  isDescendant(session: Session, root: Session): boolean;
}

const REPLAY_PAGE = 1_000;

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
    let replaying = true;
    let lastReplayed = afterSequence;
    const held: SessionEvent[] = [];
    const subscriptions: Subscription[] = [];
    const follow = (session: Session, own: boolean) => {
      subscriptions.push(
        session.events$.subscribe({
          next: (event) => {
            if (own && replaying) held.push(event);
            else if (!own || event.sequence > lastReplayed) subscriber.next({ kind: "event", event });
          },
          // The session itself closing ends the subscription; a descendant closing does not.
          complete: () => {
            if (own) subscriber.complete();
          },
        }),
      );
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
    void replay(root, afterSequence, sources.readStored, async (event) => {
      if (subscriber.closed) throw new ReplayStopped();
      lastReplayed = event.sequence;
      subscriber.next({ kind: "event", event });
      await ready();
    }).then(
      () => {
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
    };
  });
}

/** The subscriber left during the replay. */
class ReplayStopped extends Error {}

/** Sends the events after `after` that were published before now: from the store, then from memory. */
async function replay(session: Session, after: number, readStored: StoredEventReader, send: (event: SessionEvent) => Promise<void>): Promise<void> {
  const upTo = session.recentEvents.newest;
  let cursor = after;
  for (;;) {
    const recent = session.recentEvents.after(cursor);
    if (recent !== null) {
      for (const event of recent) if (event.sequence <= upTo) await send(event);
      return;
    }
    const { events, oldest } = await readStored(session.id, cursor, REPLAY_PAGE);
    if (oldest > cursor + 1) {
      // What the subscriber needs is gone (retention): said so, rather than skipped silently.
      throw new AgentdError(
        "out_of_range",
        `events after ${after} are no longer kept for session ${session.id}; the oldest available is ${oldest}: subscribe after ${oldest - 1} or later`,
      );
    }
    if (events.length === 0) {
      // The store has nothing newer; memory starts later (numbers skipped after a crash are no events).
      for (const event of session.recentEvents.all()) if (event.sequence > cursor && event.sequence <= upTo) await send(event);
      return;
    }
    for (const event of events) await send(event);
    cursor = events.at(-1)!.sequence;
  }
}
