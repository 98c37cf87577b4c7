import { Subject } from "rxjs";
import { invalidArgument, notFound, resourceExhausted } from "../errors.js";
import { OrderedIndex } from "./ordered-index.js";
import { decodePageToken, encodePageToken, fitToBudget, pageSize, type PageBudget } from "./paging.js";
import type { Session } from "./session.js";
import type { ChildPolicy } from "./types.js";

export interface RegistryLimits {
  /** Live sessions in the whole server, children included. */
  maxSessions: number;
  /** Live sessions of one owner, children included. */
  maxSessionsPerOwner: number;
}

/**
 * The index of live sessions: lookup, capacity limits, the parent/child tree, paging in creation
 * order, and destruction. It knows nothing of turns, models or storage.
 */
export class SessionRegistry {
  private readonly sessions = new Map<string, Session>();
  /** Every session in creation order, so a page is a seek and a short read whatever the count. */
  private readonly byCreation = newCreationIndex();
  /** Each owner's sessions in creation order; its size is the owner's count for the limit. */
  private readonly byOwner = new Map<string, OrderedIndex<Session>>();
  /** Each parent's children in creation order (a parent not (yet) here may have an entry: see restore). */
  private readonly childrenOf = new Map<string, OrderedIndex<Session>>();

  constructor(private readonly limits: RegistryLimits) {}

  /** Throws RESOURCE_EXHAUSTED when one more session for `owner` would pass a limit. */
  checkCapacity(owner: string): void {
    const { maxSessions, maxSessionsPerOwner } = this.limits;
    if (this.sessions.size >= maxSessions) {
      throw resourceExhausted(
        `the server is at its session limit (limits.maxSessions = ${maxSessions}); destroy sessions or ask the operator to raise the limit`,
      );
    }
    const owned = this.byOwner.get(owner)?.size ?? 0;
    if (owned >= maxSessionsPerOwner) {
      throw resourceExhausted(
        `owner "${owner}" has ${owned} sessions, the per-owner limit (limits.maxSessionsPerOwner = ${maxSessionsPerOwner}); destroy some first`,
      );
    }
  }

  /** Every session added from now on, for subscribers that follow a whole session tree. */
  readonly added$ = new Subject<Session>();

  add(session: Session): void {
    this.sessions.set(session.id, session);
    this.byCreation.insert(session);
    indexIn(this.byOwner, session.owner).insert(session);
    if (session.parentId !== null) indexIn(this.childrenOf, session.parentId).insert(session);
    // Nobody follows at a restore's 100k adds: no notice is made for nobody.
    if (this.added$.observed) this.added$.next(session);
  }

  /**
   * Adds sessions given in any order (a restore), in creation order: each then goes at the end of
   * the indexes. Returns them in that order.
   */
  addAll(sessions: readonly Session[]): Session[] {
    const ordered = inCreationOrder(sessions);
    for (const session of ordered) this.add(session);
    return ordered;
  }

  get(sessionId: string): Session {
    if (sessionId === "") throw invalidArgument("session_id is required");
    const session = this.sessions.get(sessionId);
    if (!session) throw notFound(`session ${sessionId} not found`);
    return session;
  }

  /** The session with this id, or undefined; for callers that must not throw. */
  find(sessionId: string): Session | undefined {
    return this.sessions.get(sessionId);
  }

  /** The session, its parent, its parent's parent...: what it inherits from, nearest first. */
  lineage(session: Session): Session[] {
    const chain = [session];
    for (let parent = session.parentId; parent !== null; ) {
      const next = this.sessions.get(parent);
      // A lost parent (restored without it) ends the chain; a cycle cannot form, but is not trusted.
      if (!next || chain.includes(next)) break;
      chain.push(next);
      parent = next.parentId;
    }
    return chain;
  }

  all(): IterableIterator<Session> {
    return this.sessions.values();
  }

  /** One page of sessions in creation order: optionally of one owner, or the children of one session. */
  list(options: { owner: string; parentId?: string; pageSize: number; pageToken: string; budget?: PageBudget<Session> }): {
    sessions: Session[];
    nextPageToken: string;
  } {
    const { owner, parentId } = options;
    const kind = parentId === undefined ? "sessions" : "children";
    const size = pageSize(options.pageSize, kind === "sessions" ? 50 : 1000);
    const after = decodePageToken(kind, options.pageToken);
    if (parentId !== undefined) this.get(parentId);
    const index = parentId !== undefined ? this.childrenOf.get(parentId) : owner === "" ? this.byCreation : this.byOwner.get(owner);
    // Only a parent's children are filtered as read; the other indexes hold just the matching sessions.
    const matches = (s: Session): boolean => parentId === undefined || owner === "" || s.owner === owner;
    // Cursors grow with creation order (ISO times, then ids), so the seek is a binary search.
    const read: Session[] = [];
    for (const session of index?.from(after === null ? undefined : isAfterCursor(after)) ?? []) {
      if (!matches(session)) continue;
      // One past the page says whether another page follows.
      if (read.push(session) > size) break;
    }
    const page = [...fitToBudget(read.slice(0, size), options.budget)];
    const last = page.at(-1);
    const more = read.length > page.length;
    return { sessions: page, nextPageToken: more && last ? encodePageToken(kind, cursorOf(last)) : "" };
  }

  /** The direct children of a session, in creation order. */
  children(sessionId: string): Session[] {
    this.get(sessionId);
    return this.childrenOf.get(sessionId)?.toArray() ?? [];
  }

  /** Makes a session top-level: its parent is gone. */
  detachFromParent(session: Session): void {
    if (session.parentId === null) return;
    this.unlink(session.parentId, session);
    session.detachFromParent();
  }

  /**
   * Destroys a session: its descendants are destroyed too (cascade) or its children become
   * top-level (orphan). The sessions leave the index before they close, so no new turn can start on
   * one; running turns are cancelled and awaited.
   */
  async destroy(sessionId: string, policy: ChildPolicy): Promise<{ destroyed: Session[]; orphaned: Session[] }> {
    const root = this.get(sessionId);
    const orphaned = policy === "orphan" ? this.children(sessionId) : [];
    for (const child of orphaned) this.detachFromParent(child);
    const doomed = policy === "cascade" ? this.descendantsOf(root) : [root];
    for (const session of doomed) this.remove(session);
    await Promise.all(doomed.map((session) => session.close()));
    return { destroyed: doomed, orphaned };
  }

  /** The session and all its descendants, parents before children, siblings in creation order. */
  descendantsOf(root: Session): Session[] {
    const result = [root];
    for (let i = 0; i < result.length; i++) {
      for (const child of this.childrenOf.get(result[i]!.id)?.from() ?? []) result.push(child);
    }
    return result;
  }

  private remove(session: Session): void {
    if (!this.sessions.delete(session.id)) return;
    this.byCreation.delete(session);
    removeFrom(this.byOwner, session.owner, session);
    if (session.parentId !== null) this.unlink(session.parentId, session);
    this.childrenOf.delete(session.id);
  }

  private unlink(parentId: string, child: Session): void {
    removeFrom(this.childrenOf, parentId, child);
  }
}

function newCreationIndex(): OrderedIndex<Session> {
  return new OrderedIndex<Session>(byCreation);
}

/** The index under `key`, made when missing. */
function indexIn(indexes: Map<string, OrderedIndex<Session>>, key: string): OrderedIndex<Session> {
  let index = indexes.get(key);
  if (!index) indexes.set(key, (index = newCreationIndex()));
  return index;
}

/** Removes a session from the index under `key`; an emptied index goes, so owners and parents do not pile up. */
function removeFrom(indexes: Map<string, OrderedIndex<Session>>, key: string, session: Session): void {
  const index = indexes.get(key);
  if (!index) return;
  index.delete(session);
  if (index.size === 0) indexes.delete(key);
}

function cursorOf(session: Session): string {
  return `${session.createdAt}|${session.id}`;
}

/**
 * Whether a session's cursor is past `cursor` (as texts compare), without making the session's
 * cursor text: a cursor of ours is a creation time (24 characters) and an id, compared as fields.
 */
function isAfterCursor(cursor: string): (session: Session) => boolean {
  const ms = cursor.charAt(24) === "|" ? Date.parse(cursor.slice(0, 24)) : NaN;
  if (!Number.isFinite(ms) || new Date(ms).toISOString() !== cursor.slice(0, 24)) return (s) => cursorOf(s) > cursor;
  const id = cursor.slice(25);
  return (s) => {
    const key = s.creationKey;
    if (typeof key !== "number") return cursorOf(s) > cursor;
    return key !== ms ? key > ms : s.id > id;
  };
}

/**
 * The sessions sorted by byCreation. Their times are read once into an array of numbers and the
 * sort compares those: comparing the sessions themselves reads two objects spread over the heap at
 * each of a restore's millions of comparisons.
 */
function inCreationOrder(sessions: readonly Session[]): Session[] {
  const count = sessions.length;
  const times = new Float64Array(count);
  const order = new Uint32Array(count);
  let numeric = true;
  for (let i = 0; i < count; i++) {
    const key = sessions[i]!.creationKey;
    if (typeof key !== "number") numeric = false;
    else times[i] = key;
    order[i] = i;
  }
  order.sort(
    numeric
      ? (a, b) => times[a]! - times[b]! || compareIds(sessions[a]!, sessions[b]!)
      : (a, b) => byCreation(sessions[a]!, sessions[b]!),
  );
  return Array.from(order, (i) => sessions[i]!);
}

const compareIds = (a: Session, b: Session): number => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

/** Creation time, then id: compared as numbers where both times are kept as such (their texts sort alike). */
function byCreation(a: Session, b: Session): number {
  const x = a.creationKey;
  const y = b.creationKey;
  if (x !== y) {
    if (typeof x === typeof y) return x < y ? -1 : 1;
    const [textA, textB] = [a.createdAt, b.createdAt];
    if (textA !== textB) return textA < textB ? -1 : 1;
  }
  return compareIds(a, b);
}
