import { Subject } from "rxjs";
import { invalidArgument, notFound, resourceExhausted } from "../errors.js";
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
  private readonly perOwner = new Map<string, number>();
  private readonly childrenOf = new Map<string, Set<string>>();

  constructor(private readonly limits: RegistryLimits) {}

  /** Throws RESOURCE_EXHAUSTED when one more session for `owner` would pass a limit. */
  checkCapacity(owner: string): void {
    const { maxSessions, maxSessionsPerOwner } = this.limits;
    if (this.sessions.size >= maxSessions) {
      throw resourceExhausted(
        `the server is at its session limit (limits.maxSessions = ${maxSessions}); destroy sessions or ask the operator to raise the limit`,
      );
    }
    const owned = this.perOwner.get(owner) ?? 0;
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
    this.perOwner.set(session.owner, (this.perOwner.get(session.owner) ?? 0) + 1);
    if (session.parentId !== null) this.link(session.parentId, session.id);
    this.added$.next(session);
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
    const kind = options.parentId === undefined ? "sessions" : "children";
    const size = pageSize(options.pageSize, kind === "sessions" ? 50 : 1000);
    const after = decodePageToken(kind, options.pageToken);
    const candidates = options.parentId === undefined ? [...this.sessions.values()] : this.children(options.parentId);
    const ordered = candidates.filter((s) => options.owner === "" || s.owner === options.owner).sort(byCreation);
    const start = after === null ? 0 : ordered.findIndex((s) => cursorOf(s) > after);
    const page = start < 0 ? [] : [...fitToBudget(ordered.slice(start, start + size), options.budget)];
    const last = page.at(-1);
    const more = start >= 0 && start + page.length < ordered.length;
    return { sessions: page, nextPageToken: more && last ? encodePageToken(kind, cursorOf(last)) : "" };
  }

  /** The direct children of a session, in creation order. */
  children(sessionId: string): Session[] {
    this.get(sessionId);
    return [...(this.childrenOf.get(sessionId) ?? [])].map((id) => this.sessions.get(id)!).sort(byCreation);
  }

  /** Makes a session top-level: its parent is gone. */
  detachFromParent(session: Session): void {
    if (session.parentId === null) return;
    this.unlink(session.parentId, session.id);
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

  /** The session and all its descendants, parents before children. */
  descendantsOf(root: Session): Session[] {
    const result = [root];
    for (let i = 0; i < result.length; i++) {
      for (const id of this.childrenOf.get(result[i]!.id) ?? []) result.push(this.sessions.get(id)!);
    }
    return result;
  }

  private remove(session: Session): void {
    if (!this.sessions.delete(session.id)) return;
    const owned = (this.perOwner.get(session.owner) ?? 1) - 1;
    if (owned > 0) this.perOwner.set(session.owner, owned);
    else this.perOwner.delete(session.owner);
    if (session.parentId !== null) this.unlink(session.parentId, session.id);
    this.childrenOf.delete(session.id);
  }

  private link(parentId: string, childId: string): void {
    let children = this.childrenOf.get(parentId);
    if (!children) this.childrenOf.set(parentId, (children = new Set()));
    children.add(childId);
  }

  private unlink(parentId: string, childId: string): void {
    const children = this.childrenOf.get(parentId);
    children?.delete(childId);
    if (children?.size === 0) this.childrenOf.delete(parentId);
  }
}

function cursorOf(session: Session): string {
  return `${session.createdAt}|${session.id}`;
}

function byCreation(a: Session, b: Session): number {
  if (a.createdAt !== b.createdAt) return a.createdAt < b.createdAt ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}
