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
  /** Replay from the oldest event kept when the cursor is older, instead of OUT_OF_RANGE. */
  fromOldestKept?: boolean;
  /** Descendants' live events too, each with its own session id (replay covers the session itself). */
  includeDescendants: boolean;
  /** Resolves when the subscriber can take more: the replay goes at the reader's pace, not all at once. */
  ready?: () => Promise<void>;
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
/** A replay ends when what the session emitted meanwhile is at most this many events: they go at once. */
const FINAL_TAIL = 256;
/** Replay passes before the rest goes at once whatever its length (the writer's limits then apply). */
const MAX_PASSES = 8;

/**
 * A session's events after a cursor, then `caught_up`, then its live events, until the subscriber
 * leaves. Nothing is held for the subscriber while it replays: events the session emits meanwhile
 * are in its log, so the replay goes on over them, pass after pass at the reader's pace, until what
 * is left is short; that rest is sent at once, and from then on live events are sent as they come,
 * so nothing falls between the two and nothing comes twice. OUT_OF_RANGE when the cursor is older
 * than the retained log (the message names the oldest sequence available) or newer than the last.
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
    let lastSent = afterSequence;
    const send = (event: SessionEvent) => {
      if (event.sequence > 0) lastSent = event.sequence;
      subscriber.next({ kind: "event", event });
    };
    const subscriptions = new Set<Subscription>();
    const follow = (session: Session, own: boolean) => {
      let ended = false;
      // Assigned once subscribe returns: a stream that has already ended completes inside the call.
      let subscription: Subscription | undefined;
      subscription = session.events$.subscribe({
        next: (event) => {
          // Notices (sequence 0) and descendants' events are live only; the session's own events
          // are the replay's until it has caught up.
          if (!own || event.sequence === 0) subscriber.next({ kind: "event", event });
          else if (!replaying && event.sequence > lastSent) send(event);
        },
        // The session itself closing ends the subscription; a descendant closing does not.
        complete: () => {
          ended = true;
          if (subscription) subscriptions.delete(subscription);
          if (own) subscriber.complete();
        },
      });
      if (!ended) subscriptions.add(subscription);
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
    const paced = async (event: SessionEvent) => {
      if (subscriber.closed) throw new ReplayStopped();
      send(event);
      await ready();
    };
    void (async () => {
      for (let pass = 1; ; pass++) {
        await replay(root, { cursor: lastSent, fromOldestKept: pass === 1 && options.fromOldestKept === true }, sources, paced);
        if (subscriber.closed) return;
        // What the session published during the pass, still in memory: short enough (or enough
        // passes), it goes at once, and the subscription is live from the same moment.
        // (Memory may be empty, given up to other sessions: then nothing may have been published since.)
        const quiet = root.recentEvents.length === 0 && skippedAtRestart(root, lastSent, root.publishedThrough + 1);
        const tail = root.recentEvents.after(lastSent) ?? (quiet ? [] : null);
        if (tail !== null && (tail.length <= FINAL_TAIL || pass >= MAX_PASSES)) {
          for (const event of tail) send(event);
          replaying = false;
          subscriber.next({ kind: "caught_up", sequence: lastSent });
          return;
        }
        if (pass >= MAX_PASSES) {
          throw new AgentdError(
            "resource_exhausted",
            `the client read the replay more slowly than session ${root.id} went on; the last event sent was sequence ${lastSent}: Subscribe again with after_sequence ${lastSent}`,
          );
        }
      }
    })().catch((error: unknown) => {
      if (!(error instanceof ReplayStopped)) subscriber.error(error);
    });

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
 * memory. A hole in the numbers is passed over only where it is no loss: numbers skipped at a crash
 * (inside the stored log, or at the last restart); any other hole means events are gone (trimmed,
 * or an ephemeral session's evicted from memory), and the subscriber is told.
 */
async function replay(
  session: Session,
  options: { cursor: number; fromOldestKept: boolean },
  sources: SubscriptionSources,
  send: (event: SessionEvent) => Promise<void>,
): Promise<void> {
  const upTo = session.recentEvents.newest;
  const after = options.cursor;
  let cursor = after;
  // The store is asked to take what waits for it once per position: events written in the
  // background may not have reached it yet.
  let flushedAt = -1;
  for (;;) {
    const recent = session.recentEvents.after(cursor);
    if (recent !== null) {
      for (const event of recent) if (event.sequence <= upTo) await send(event);
      return;
    }
    const { events, oldest } = await sources.readStored(session.id, cursor, REPLAY_PAGE);
    // The next event there is: the store's, else memory's oldest, else none yet.
    const next = events[0]?.sequence ?? (session.recentEvents.length > 0 ? session.recentEvents.oldest : session.lastSequence + 1);
    // The store keeps its newest events: holes inside what it keeps are numbers a crash skipped.
    const insideStored = events.length > 0 && oldest > 0 && oldest <= cursor;
    if (!insideStored && !skippedAtRestart(session, cursor, next)) {
      if (flushedAt !== cursor) {
        flushedAt = cursor;
        if (!(await sources.flush(session.id))) {
          throw new AgentdError("unavailable", `events after ${cursor} of session ${session.id} are not in the store yet, and the store is failing; subscribe again later`);
        }
        continue;
      }
      if (!(options.fromOldestKept && cursor === after)) {
        throw new AgentdError(
          "out_of_range",
          `events after ${after} are no longer kept for session ${session.id}; the oldest available is ${next}: subscribe after ${next - 1} or later (or set from_oldest_kept)`,
        );
      }
    }
    if (events.length === 0) {
      for (const event of session.recentEvents.all()) if (event.sequence > cursor && event.sequence <= upTo) await send(event);
      return;
    }
    for (const event of events) await send(event);
    cursor = events.at(-1)!.sequence;
  }
}

/** Whether nothing lies between `cursor` and `next` but numbers the session skipped at a restart. */
function skippedAtRestart(session: Session, cursor: number, next: number): boolean {
  if (next <= cursor + 1) return true;
  return session.skippedSequences.some(({ after, through }) => cursor >= after && next - 1 <= through);
}
