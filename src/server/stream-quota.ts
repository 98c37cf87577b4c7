import { resourceExhausted } from "../errors.js";

/** How many streams that follow sessions (Subscribe, WatchTurn) may be open at once. */
export interface StreamLimits {
  perCaller: number;
  total: number;
}

export const DEFAULT_STREAM_LIMITS: StreamLimits = { perCaller: 64, total: 4_096 };

/**
 * Counts the open streams that follow sessions. Each one holds a subscription and, for a slow
 * reader, a bounded buffer: without a count, one client opening thousands would hold the server's
 * memory. Past a limit a new stream gets RESOURCE_EXHAUSTED; the ones open go on.
 */
export class StreamQuota {
  private readonly open = new Map<string, number>();
  private total = 0;

  constructor(private readonly limits: StreamLimits = DEFAULT_STREAM_LIMITS) {}

  /**
   * Takes a place for a caller's new stream; the returned function gives it back (once). Callers are
   * counted by owner; without authentication (every caller the anonymous admin) by network address.
   */
  acquire(owner: string, peer: string): () => void {
    const key = owner !== "" ? `owner ${owner}` : `peer ${peerHost(peer)}`;
    const mine = this.open.get(key) ?? 0;
    if (mine >= this.limits.perCaller) {
      throw resourceExhausted(
        `${owner === "" ? `this client (${peerHost(peer)})` : `owner "${owner}"`} already has ${mine} Subscribe/WatchTurn streams open (the limit is ${this.limits.perCaller}); close one, or follow a session tree with one Subscribe and include_descendants`,
      );
    }
    if (this.total >= this.limits.total) {
      throw resourceExhausted(`the server has ${this.total} Subscribe/WatchTurn streams open, its limit; try again later`);
    }
    this.open.set(key, mine + 1);
    this.total++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.total--;
      const left = (this.open.get(key) ?? 1) - 1;
      if (left === 0) this.open.delete(key);
      else this.open.set(key, left);
    };
  }
}

/** "ipv4:127.0.0.1:5000" or "ipv6:[::1]:5000" without its port: one client's connections count together. */
function peerHost(peer: string): string {
  const match = /^(?:ipv[46]:)?(\[[^\]]*\]|[^:]*(?::[^:]+)*?)(?::\d+)?$/.exec(peer);
  return match?.[1] ?? peer;
}
