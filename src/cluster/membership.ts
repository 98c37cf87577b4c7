import type { Logger } from "../logging.js";
import { withPolicyDefaults } from "../session/config-merge.js";
import type { SessionView } from "../session/session.js";
import type { SessionRecord } from "../store/record.js";
import type { LoadResult } from "../store/types.js";
import type { PostgresSessionStore } from "../store/postgres/postgres-store.js";

export interface ClusterSettings {
  /** This process's id in agentd.nodes (unique per start). */
  nodeId: string;
  /** Where other nodes reach this one (host:port); set when the node joins. */
  address: string;
  /** How long a lease lasts without a heartbeat; heartbeats come at a third of it. */
  leaseMs: number;
}

/** Who runs a session's tree now. */
export type Placement =
  | { kind: "missing" }
  /** This node took (or already held) the tree's lease, at this epoch. */
  | { kind: "taken"; rootId: string; epoch: number }
  /** Another live node holds it. */
  | { kind: "elsewhere"; rootId: string; nodeId: string; address: string }
  /** Nobody runs it and this node, draining, takes no leases. */
  | { kind: "draining" };


/**
 * This node's place in a cluster of agentd processes sharing one PostgreSQL: its row in
 * agentd.nodes, its heartbeat, and the leases of the session trees it runs. A lease is taken when
 * it is free, expired or held by a node that left; taking it bumps the tree's epoch, which fences
 * every later write of the previous holder (see agentd.save_sessions).
 */
export class ClusterMembership {
  /** Trees this node holds, by root, with the epoch it writes them under. */
  private readonly held = new Map<string, number>();
  /** Takeovers under way, by root: calls arriving together take a tree once. */
  private readonly placing = new Map<string, Promise<Placement>>();
  /** Trees created here whose first write has not shown their lease row yet. */
  private readonly fresh = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  /** When the leases were last renewed: past their time, this node must not run their trees. */
  private renewedAt = Date.now();
  private beating: Promise<void> | null = null;
  draining = false;
  /** Told of leases this node held and another node has taken since (it was paused or cut off). */
  onLost: (rootIds: string[]) => void = () => {};

  constructor(
    private readonly store: PostgresSessionStore,
    readonly settings: ClusterSettings,
    private readonly logger: Logger,
  ) {}

  get nodeId(): string {
    return this.settings.nodeId;
  }

  /** Registers the node, reachable at `address` (and its web console at `consoleAddress`, "" for none), and starts its heartbeat. */
  async join(address: string, consoleAddress = ""): Promise<void> {
    this.settings.address = address;
    await this.store.sql(
      `INSERT INTO agentd.nodes (id, address, console_address) VALUES ($1, $2, $3)
       ON CONFLICT (id) DO UPDATE SET address = EXCLUDED.address, console_address = EXCLUDED.console_address, heartbeat_at = now(), draining = false`,
      [this.nodeId, this.settings.address, consoleAddress],
    );
    this.timer = setInterval(() => void this.heartbeat(), Math.max(50, Math.floor(this.settings.leaseMs / 3)));
    this.timer.unref();
  }

  /** Where a node's web console answers (host:port); "" when it has none or is gone. */
  async consoleOf(nodeId: string): Promise<string> {
    const { rows } = await this.store.sql<{ console_address: string }>("SELECT console_address FROM agentd.nodes WHERE id = $1", [nodeId]);
    return rows[0]?.console_address ?? "";
  }

  /** Stops the heartbeat, hands back every lease and removes the node's row. */
  async leave(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.beating;
    await this.store.sql("UPDATE agentd.leases SET node_id = NULL, expires_at = now() WHERE node_id = $1", [this.nodeId]).catch(() => {});
    await this.store.sql("DELETE FROM agentd.nodes WHERE id = $1", [this.nodeId]).catch(() => {});
    this.held.clear();
  }

  /** Marks the node as draining: it takes no more leases. */
  async drain(): Promise<void> {
    this.draining = true;
    await this.store.sql("UPDATE agentd.nodes SET draining = true WHERE id = $1", [this.nodeId]).catch(() => {});
  }

  /** The epoch this node holds the tree at; undefined when it does not hold it. */
  epochOf(rootId: string): number | undefined {
    return this.held.get(rootId);
  }

  /** A tree made on this node: its first write takes the lease, at epoch 1. */
  created(rootId: string): void {
    this.held.set(rootId, 1);
    this.fresh.add(rootId);
    this.store.holdTree(rootId, 1);
  }

  /**
   * Where the session's tree runs, taking its lease when nobody live holds it (and this node is
   * not draining). A tree this node holds is "taken" at once. With `owner`, another owner's session
   * is "missing": a caller never makes a node take a tree it may not see. Calls arriving together
   * for one tree take it once.
   */
  async place(sessionId: string, options: { owner?: string | null; unreachable?: string | null } = {}): Promise<Placement> {
    const found = await this.store.locate(sessionId);
    if (found === null || (options.owner != null && found.owner !== options.owner)) return { kind: "missing" };
    const { rootId } = found;
    const epoch = this.held.get(rootId);
    if (epoch !== undefined) return { kind: "taken", rootId, epoch };
    let placing = this.placing.get(rootId);
    if (!placing) {
      placing = this.takeOrFind(rootId, options.unreachable ?? null, 0).finally(() => this.placing.delete(rootId));
      this.placing.set(rootId, placing);
    }
    return placing;
  }

  private async takeOrFind(rootId: string, unreachable: string | null, attempt: number): Promise<Placement> {
    const epoch = this.held.get(rootId);
    if (epoch !== undefined) return { kind: "taken", rootId, epoch };
    if (!this.draining) {
      const { rows } = await this.store.sql<{ epoch: string }>(
        `INSERT INTO agentd.leases AS l (root_id, node_id, epoch, expires_at)
         VALUES ($1, $2, 1, now() + make_interval(secs => $3 / 1000.0))
         ON CONFLICT (root_id) DO UPDATE SET node_id = EXCLUDED.node_id, epoch = l.epoch + 1, expires_at = EXCLUDED.expires_at
         WHERE NOT l.deleted AND (l.node_id IS NULL OR l.node_id = EXCLUDED.node_id OR l.expires_at < now()
            OR NOT EXISTS (SELECT 1 FROM agentd.nodes n WHERE n.id = l.node_id))
         RETURNING l.epoch::text AS epoch`,
        [rootId, this.nodeId, this.settings.leaseMs],
      );
      if (rows.length > 0) {
        const taken = Number(rows[0]!.epoch);
        this.held.set(rootId, taken);
        this.store.holdTree(rootId, taken);
        this.logger.info({ rootId, epoch: taken }, "took the lease of a session tree");
        return { kind: "taken", rootId, epoch: taken };
      }
    }
    const { rows } = await this.store.sql<{ node_id: string | null; address: string | null; left_ms: number; silent_ms: number | null }>(
      `SELECT l.node_id, n.address,
              (extract(epoch FROM l.expires_at - now()) * 1000)::float8 AS left_ms,
              (extract(epoch FROM now() - n.heartbeat_at) * 1000)::float8 AS silent_ms
       FROM agentd.leases l LEFT JOIN agentd.nodes n ON n.id = l.node_id
       WHERE l.root_id = $1 AND l.node_id IS NOT NULL AND l.expires_at >= now() AND NOT l.deleted`,
      [rootId],
    );
    const holder = rows[0];
    if (!holder?.node_id || !holder.address) {
      // Free, and this node drains: another node should take it.
      if (this.draining) return { kind: "draining" };
      return attempt < 3 ? this.takeOrFind(rootId, unreachable, attempt + 1) : { kind: "missing" };
    }
    // A holder that has missed its heartbeats is presumed dead: its lease runs out within leaseMs,
    // and then this node takes the tree (a live holder that comes back finds its writes fenced).
    // So is one that refused a connection just now (`unreachable`).
    const silent = holder.silent_ms !== null && holder.silent_ms > (this.settings.leaseMs * 2) / 3;
    if (!this.draining && (silent || holder.node_id === unreachable) && attempt < 3) {
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, holder.left_ms) + 25));
      return this.takeOrFind(rootId, unreachable, attempt + 1);
    }
    return { kind: "elsewhere", rootId, nodeId: holder.node_id, address: holder.address };
  }

  /** Hands a tree's lease (held at `epoch`) back: the next node that needs it takes it. */
  async release(rootId: string, epoch: number): Promise<void> {
    this.forget(rootId);
    await this.store.sql("UPDATE agentd.leases SET node_id = NULL, expires_at = now() WHERE root_id = $1 AND node_id = $2 AND epoch = $3", [rootId, this.nodeId, epoch]);
  }

  /** Forgets a tree this node no longer runs (destroyed, or lost to another node). */
  forget(rootId: string): void {
    this.held.delete(rootId);
    this.fresh.delete(rootId);
  }

  /** The stored sessions of a tree whose lease this node has taken. */
  loadTree(rootId: string): Promise<LoadResult> {
    return this.store.loadTree(rootId);
  }

  /** This node no longer writes the tree's sessions (lost, or handed back). */
  forgetTree(rootId: string, sessionIds: readonly string[]): void {
    this.forget(rootId);
    this.store.forgetTree(rootId, sessionIds);
  }

  /** A page of every node's sessions, as stored (see PostgresSessionStore.listPage). */
  async listStored(owner: string, after: string | null, limit: number): Promise<SessionView[]> {
    const page = await this.store.listPage(owner, after, limit);
    return page.map(({ record, messageCount }) => storedView(record, messageCount));
  }

  /** Every tree this node holds. */
  roots(): string[] {
    return [...this.held.keys()];
  }

  /**
   * Renews the node's row and its leases; leases found taken by another node are reported lost.
   * When renewals have failed for most of a lease (the database is unreachable from here), every
   * tree is reported lost: another node may take them, and two nodes must not run one tree.
   */
  private heartbeat(): Promise<void> {
    if (this.beating) return this.beating;
    // What was held before the renewal: a lease taken while it runs is judged by the next one.
    const before = new Map(this.held);
    this.beating = (async () => {
      try {
        await this.store.sql("UPDATE agentd.nodes SET heartbeat_at = now() WHERE id = $1", [this.nodeId]);
        // Rows locked in root order, as save_sessions locks them: the two never deadlock.
        const { rows } = await this.store.sql<{ root_id: string; epoch: string }>(
          `UPDATE agentd.leases SET expires_at = now() + make_interval(secs => $2 / 1000.0)
           WHERE root_id IN (SELECT root_id FROM agentd.leases WHERE node_id = $1 ORDER BY root_id FOR UPDATE)
           RETURNING root_id, epoch::text AS epoch`,
          [this.nodeId, this.settings.leaseMs],
        );
        this.renewedAt = Date.now();
        const renewed = new Map(rows.map((row) => [row.root_id, Number(row.epoch)]));
        const lost: string[] = [];
        for (const [rootId, epoch] of before) {
          if (this.held.get(rootId) !== epoch) continue;
          if (renewed.get(rootId) === epoch) this.fresh.delete(rootId);
          else if (!this.fresh.has(rootId)) lost.push(rootId);
        }
        if (lost.length > 0) {
          for (const rootId of lost) this.forget(rootId);
          this.logger.warn({ rootIds: lost }, "fenced: other nodes took the leases of these session trees while this node was not renewing them; they are dropped here");
          this.onLost(lost);
        }
        // Rows of nodes silent for many leases (crashed): nobody else removes them.
        await this.store.sql("DELETE FROM agentd.nodes WHERE heartbeat_at < now() - make_interval(secs => $1 / 100.0)", [this.settings.leaseMs]);
      } catch (error) {
        const silentMs = Date.now() - this.renewedAt;
        if (silentMs > this.settings.leaseMs * 0.8 && this.held.size > 0) {
          const all = [...this.held.keys()];
          for (const rootId of all) this.forget(rootId);
          this.logger.error({ err: error, rootIds: all, silentMs }, "fenced: the leases could not be renewed for most of their time; this node drops its session trees so that another node can take them");
          this.onLost(all);
        } else {
          this.logger.warn({ err: error }, "cluster heartbeat failed; leases run out unless the next one succeeds");
        }
      } finally {
        this.beating = null;
      }
    })();
    return this.beating;
  }
}

/** A session as its stored record shows it, for a node that does not run it. */
function storedView(record: Omit<SessionRecord, "messages">, messageCount: number): SessionView {
  return {
    id: record.id,
    owner: record.owner,
    parentId: record.parentId,
    state: record.state,
    config: withPolicyDefaults(record.config),
    workspace: record.workspace,
    ephemeral: record.ephemeral,
    labels: record.labels,
    createdAt: record.createdAt,
    updatedAt: record.updatedAt,
    usage: record.usage,
    lastSequence: record.lastSequence,
    persistenceError: "",
    messageCount,
    activeTurnId: record.runningTurnId ?? null,
    agent: record.agent ?? "",
  };
}
