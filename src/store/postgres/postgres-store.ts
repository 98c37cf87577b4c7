import pg from "pg";
import { resourceExhausted } from "../../errors.js";
import type { SessionEvent } from "../../events/types.js";
import type { MessageRecord, SessionRecord } from "../record.js";
import { checkRecord } from "../record-codec.js";
import type { UsageTotals } from "../../session/types.js";
import { SpendTotals, type SpendMark, type SpendRow } from "../spend.js";
import { FencedError, type EventRetention, type LoadFailure, type LoadResult, type ReadEventsResult, type SessionStore } from "../types.js";
import { Batches } from "./batches.js";
import { checkDatabaseUrl, redactDatabaseUrl, withoutPassword } from "./database-url.js";
import { migrate, type MigrationOutcome } from "./migrate.js";

export interface PostgresStoreOptions {
  url: string;
  retention: EventRetention;
  /** Checked by the database for every new session, across all nodes; none when absent. */
  limits?: { maxSessions: number; maxSessionsPerOwner: number };
  /** On a node of a cluster: its id and lease time; every write is then fenced by its tree's lease epoch. */
  node?: { id: string; leaseMs: number };
  /**
   * The one server on this database (no cluster): refused when a cluster's nodes use it, and they
   * are refused while it does. Writes without a node are not fenced, so the two must not mix.
   */
  exclusive?: boolean;
  /** Connections in the pool: one carries the commits, the others reads. */
  poolSize?: number;
  /** How long a query may wait for a connection before it fails. */
  connectTimeoutMs?: number;
}

/** What this store last committed of a session's transcript: where the next save's messages start. */
interface Committed {
  count: number;
  lastId: string | null;
}

/** One session's save, serialized when `save` is called (the transcript is shared and grows). */
interface PendingSave {
  id: string;
  root: string;
  /** The lease epoch it is written under. */
  epoch: number;
  json: string;
  committed: Committed;
}

const NO_LIMIT = 2_147_483_647;
/** The advisory lock a single server holds exclusively and every cluster node shared. */
const USE_LOCK = 0x61_67_65_6e_74_65; // "agente"

const LOAD_PAGE = 1_000;

/**
 * Sessions in PostgreSQL (schema `agentd`, see schema.ts): one row per session with the record
 * minus its messages, one row per message and per retained event. A save is one statement of a
 * batch (group commit across sessions): it replaces the snapshot, appends the new messages (or
 * rewrites them when the transcript was rewritten), appends new events and trims the log to the
 * retention bounds, all in the batch's transaction. It resolves once that commit is durable.
 */
export class PostgresSessionStore implements SessionStore {
  readonly description: string;
  /** Commits and the saves they carried: saves / commits is the group commit's batch size. */
  readonly stats = { commits: 0, saves: 0 };
  private readonly committed = new Map<string, Committed>();
  /** Each session's parent, as last saved or loaded here: a save names its tree by the root. */
  private readonly parents = new Map<string, string | null>();
  /** The lease epoch this node writes each tree under (a tree created here starts at 1). */
  private readonly epochs = new Map<string, number>();
  private readonly batches: Batches<PendingSave>;
  /** The connection holding the use lock (see PostgresStoreOptions.exclusive), for the store's life. */
  private holder: pg.Client | null = null;

  private constructor(
    private pool: pg.Pool | null,
    private readonly options: PostgresStoreOptions,
    readonly migrations: MigrationOutcome,
  ) {
    this.description = redactDatabaseUrl(options.url);
    this.batches = new Batches((items) => this.commit(items), { maxItems: 256, maxSize: 8 * 1024 * 1024 });
  }

  /** Connects, applies pending schema migrations, and returns the store. */
  static async open(options: PostgresStoreOptions): Promise<PostgresSessionStore> {
    checkDatabaseUrl(options.url);
    const pool = newPool(options);
    let holder: pg.Client | null = null;
    try {
      const outcome = await migrate(pool);
      if (options.exclusive || options.node) holder = await takeUseLock(options);
      const store = new PostgresSessionStore(pool, options, outcome);
      store.holder = holder;
      return store;
    } catch (error) {
      await holder?.end().catch(() => {});
      await pool.end().catch(() => {});
      throw new Error(`cannot use PostgreSQL at ${redactDatabaseUrl(options.url)}: ${withoutPassword(describe(error), options.url)}`);
    }
  }

  async loadAll(): Promise<LoadResult> {
    return this.load("TRUE", []);
  }

  /** The sessions of one tree (a top-level session and its descendants), as loadAll gives them. */
  async loadTree(rootId: string): Promise<LoadResult> {
    return this.load("root_id = $3", [rootId]);
  }

  /** The tree a stored session belongs to; null when it is not stored. */
  async rootOf(sessionId: string): Promise<string | null> {
    return (await this.locate(sessionId))?.rootId ?? null;
  }

  /** A stored session's tree and owner; null when it is not stored. */
  async locate(sessionId: string): Promise<{ rootId: string; owner: string } | null> {
    const { rows } = await this.query<{ root_id: string | null; owner: string }>("SELECT root_id, owner FROM agentd.sessions WHERE id = $1", [sessionId]);
    if (rows.length === 0) return null;
    return { rootId: rows[0]!.root_id ?? sessionId, owner: rows[0]!.owner };
  }

  /** From now on this node writes `rootId`'s tree under `epoch` (it took the lease at that epoch). */
  holdTree(rootId: string, epoch: number): void {
    this.epochs.set(rootId, epoch);
  }

  /** This node no longer writes the tree: its sessions are forgotten here (not deleted). */
  forgetTree(rootId: string, sessionIds: readonly string[]): void {
    this.epochs.delete(rootId);
    for (const id of sessionIds) {
      this.committed.delete(id);
      this.parents.delete(id);
    }
  }

  /**
   * One page of stored sessions in creation order, of one owner or of all (""), after the cursor
   * `createdAt|id`: each record without its messages, and how many messages it has.
   */
  async listPage(owner: string, after: string | null, limit: number): Promise<Array<{ record: Omit<SessionRecord, "messages">; messageCount: number }>> {
    const [createdAt, id] = after === null ? [null, ""] : [after.slice(0, after.indexOf("|")), after.slice(after.indexOf("|") + 1)];
    const { rows } = await this.query<{ snapshot: string; message_count: number }>(
      `SELECT snapshot, message_count FROM agentd.sessions
       WHERE ($1 = '' OR owner = $1) AND ($2::timestamptz IS NULL OR (created_at, id) > ($2::timestamptz, $3::text))
       ORDER BY created_at, id LIMIT $4`,
      [owner.replace(UNSTORABLE, "\uFFFD"), createdAt, id, limit],
    );
    return rows.map((row) => ({ record: JSON.parse(row.snapshot) as Omit<SessionRecord, "messages">, messageCount: row.message_count }));
  }

  /** A query for the cluster's tables (nodes, leases), on this store's pool; errors never show the password. */
  sql<R extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<pg.QueryResult<R>> {
    return this.query<R>(text, values);
  }

  /** Records in creation order, in pages (a whole table does not have to fit in one reply). */
  private async load(where: string, values: unknown[]): Promise<LoadResult> {
    const records: SessionRecord[] = [];
    const failures: LoadFailure[] = [];
    let after: { createdAt: string; id: string } | null = null;
    for (;;) {
      const page: pg.QueryResult<{ id: string; created: string; snapshot: string }> = await this.query(
        `SELECT id, created_at::text AS created, snapshot FROM agentd.sessions
         WHERE ($1::timestamptz IS NULL OR (created_at, id) > ($1::timestamptz, $2::text)) AND ${where}
         ORDER BY created_at, id LIMIT ${LOAD_PAGE}`,
        [after?.createdAt ?? null, after?.id ?? "", ...values],
      );
      if (page.rows.length === 0) break;
      const ids = page.rows.map((row) => row.id);
      const messages = await this.query<{ session_id: string; body: string }>(
        "SELECT session_id, body FROM agentd.messages WHERE session_id = ANY($1::text[]) ORDER BY session_id, position",
        [ids],
      );
      const bySession = new Map<string, string[]>();
      for (const row of messages.rows) {
        let list = bySession.get(row.session_id);
        if (!list) bySession.set(row.session_id, (list = []));
        list.push(row.body);
      }
      for (const row of page.rows) {
        try {
          const bodies = bySession.get(row.id) ?? [];
          const record = checkRecord({ ...(JSON.parse(row.snapshot) as object), messages: bodies.map((body) => JSON.parse(body) as MessageRecord) });
          if (record.id !== row.id) throw new Error(`the snapshot names session ${record.id}`);
          records.push(record);
          this.committed.set(row.id, { count: bodies.length, lastId: record.messages.at(-1)?.id ?? null });
          this.parents.set(row.id, record.parentId);
        } catch (error) {
          failures.push({ location: `agentd.sessions id=${row.id}`, error: describe(error) });
        }
      }
      const last = page.rows.at(-1)!;
      after = { createdAt: last.created, id: last.id };
      if (page.rows.length < LOAD_PAGE) break;
    }
    return { records, failures };
  }

  save(record: SessionRecord, events: readonly SessionEvent[] = []): Promise<void> {
    let pending: PendingSave;
    try {
      pending = this.serialize(record, events);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.batches.add(pending, pending.json.length);
  }

  async delete(sessionId: string): Promise<void> {
    const root = this.rootFor(sessionId);
    const node = this.options.node?.id ?? null;
    // A fenced node deletes nothing (see agentd.delete_session).
    const epoch = this.epochs.get(root) ?? 1;
    const { rows } = await this.query<{ allowed: boolean }>("SELECT agentd.delete_session($1, $2, $3, $4) AS allowed", [sessionId, root, node, epoch]);
    if (!rows[0]?.allowed) throw new FencedError(sessionId, root, epoch);
    this.committed.delete(sessionId);
    this.parents.delete(sessionId);
  }

  async addSpend(rows: readonly SpendRow[], marks: readonly SpendMark[] = []): Promise<void> {
    if (rows.length === 0 && marks.length === 0) return;
    // One row per owner and day (an upsert may touch a row once), in key order (nodes adding at once never deadlock).
    const totals = new SpendTotals();
    for (const row of rows) totals.add({ ...row, owner: row.owner.replace(UNSTORABLE, "\uFFFD") });
    const merged = totals.rows().sort((a, b) => (a.owner < b.owner ? -1 : a.owner > b.owner ? 1 : a.day < b.day ? -1 : a.day > b.day ? 1 : 0));
    const marked = new SpendTotals();
    for (const mark of marks) marked.mark(mark);
    const byId = [...marked.marks.values()].sort((a, b) => (a.sessionId < b.sessionId ? -1 : a.sessionId > b.sessionId ? 1 : 0));
    // One statement, so one transaction: the rows and the marks are stored together or not at all.
    await this.query(
      {
        name: "agentd.add_spend",
        text: `WITH added AS (
                 INSERT INTO agentd.owner_spend AS t (owner, day, input_tokens, output_tokens, cost_usd)
                 SELECT * FROM unnest($1::text[], $2::date[], $3::bigint[], $4::bigint[], $5::float8[])
                 ON CONFLICT (owner, day) DO UPDATE SET input_tokens = t.input_tokens + excluded.input_tokens,
                   output_tokens = t.output_tokens + excluded.output_tokens, cost_usd = t.cost_usd + excluded.cost_usd
                 RETURNING 1
               ), marked AS (
                 INSERT INTO agentd.spend_marks AS m (session_id, input_tokens, output_tokens, cost_usd)
                 SELECT * FROM unnest($6::text[], $7::bigint[], $8::bigint[], $9::float8[])
                 ON CONFLICT (session_id) DO UPDATE SET input_tokens = greatest(m.input_tokens, excluded.input_tokens),
                   output_tokens = greatest(m.output_tokens, excluded.output_tokens), cost_usd = greatest(m.cost_usd, excluded.cost_usd)
                 RETURNING 1
               )
               SELECT (SELECT count(*) FROM added) AS rows, (SELECT count(*) FROM marked) AS marks`,
      },
      [
        merged.map((r) => r.owner), merged.map((r) => r.day), merged.map((r) => r.inputTokens), merged.map((r) => r.outputTokens), merged.map((r) => r.costUsd),
        byId.map((m) => m.sessionId), byId.map((m) => m.inputTokens), byId.map((m) => m.outputTokens), byId.map((m) => m.costUsd),
      ],
    );
  }

  async marksOf(sessionIds: readonly string[]): Promise<Map<string, SpendMark>> {
    const found = new Map<string, SpendMark>();
    if (sessionIds.length === 0) return found;
    const { rows } = await this.query<{ session_id: string; input: string; output: string; cost: number }>(
      {
        name: "agentd.spend_marks_of",
        text: `SELECT session_id, input_tokens::text AS input, output_tokens::text AS output, cost_usd AS cost FROM agentd.spend_marks WHERE session_id = ANY($1::text[])`,
      },
      [[...sessionIds]],
    );
    for (const row of rows) found.set(row.session_id, { sessionId: row.session_id, inputTokens: Number(row.input), outputTokens: Number(row.output), costUsd: row.cost });
    return found;
  }

  async spendOf(owner: string, fromDay: string): Promise<UsageTotals> {
    const { rows } = await this.query<{ input: string; output: string; cost: number }>(
      {
        name: "agentd.spend_of",
        text: `SELECT coalesce(sum(input_tokens), 0)::text AS input, coalesce(sum(output_tokens), 0)::text AS output, coalesce(sum(cost_usd), 0)::float8 AS cost
               FROM agentd.owner_spend WHERE owner = $1 AND day >= coalesce(nullif($2, '')::date, '-infinity'::date)`,
      },
      [owner.replace(UNSTORABLE, "\uFFFD"), fromDay],
    );
    const row = rows[0];
    return { inputTokens: Number(row?.input ?? 0), outputTokens: Number(row?.output ?? 0), costUsd: row?.cost ?? 0 };
  }

  async readEvents(sessionId: string, after: number, limit: number): Promise<ReadEventsResult> {
    const { rows } = await this.query<{ oldest: string | null; body: string | null }>(
      `SELECT o.oldest::text AS oldest, p.body
       FROM (SELECT min(sequence) AS oldest FROM agentd.events WHERE session_id = $1) o
       LEFT JOIN LATERAL (
         SELECT sequence, body FROM agentd.events WHERE session_id = $1 AND sequence > $2 ORDER BY sequence LIMIT $3
       ) p ON true
       ORDER BY p.sequence`,
      [sessionId, after, Math.max(0, limit)],
    );
    const oldest = Number(rows[0]?.oldest ?? 0);
    const events = rows.flatMap((row) => (row.body === null ? [] : [JSON.parse(row.body) as SessionEvent]));
    return { events, oldest };
  }

  /** Waits for the commits under way and closes the connections; a later call opens new ones. */
  async close(): Promise<void> {
    await this.batches.idle();
    const pool = this.pool;
    this.pool = null;
    await pool?.end();
    const holder = this.holder;
    this.holder = null;
    await holder?.end().catch(() => {});
  }

  /** The save as one element of save_sessions' batch; its messages are the ones present now. */
  private serialize(record: SessionRecord, events: readonly SessionEvent[]): PendingSave {
    const { messages, ...snapshot } = record;
    this.parents.set(record.id, record.parentId);
    const root = this.rootFor(record.id);
    const epoch = this.epochs.get(root) ?? 1;
    const count = messages.length;
    const known = this.committed.get(record.id);
    const appended = known !== undefined && count >= known.count && (known.count === 0 || messages[known.count - 1]?.id === known.lastId);
    const from = appended ? known.count : 0;
    const newMessages: string[] = [];
    // Each body goes as a JSON string holding its JSON text: the database stores it without parsing it.
    for (let i = from; i < count; i++) newMessages.push(JSON.stringify(JSON.stringify(messages[i])));
    const newEvents = events.map((event) => {
      const text = JSON.stringify(event);
      return `{"s":${event.sequence},"b":${Buffer.byteLength(text) + 1},"e":${JSON.stringify(text)}}`;
    });
    const json =
      `{"id":${column(record.id)},"owner":${column(record.owner)},"parentId":${record.parentId === null ? "null" : column(record.parentId)},` +
      `"root":${column(root)},"epoch":${epoch},` +
      `"createdAt":${JSON.stringify(record.createdAt)},"snapshot":${JSON.stringify(JSON.stringify(snapshot))},"from":${from},"count":${count},` +
      `"messages":[${newMessages.join(",")}],"lastMessageId":${count === 0 ? "null" : column(messages[count - 1]!.id)},"events":[${newEvents.join(",")}]}`;
    return { id: record.id, root, epoch, json, committed: { count, lastId: messages[count - 1]?.id ?? null } };
  }

  private async commit(items: PendingSave[]): Promise<Array<Error | null>> {
    const { maxEvents, maxBytes } = this.options.retention;
    const node = this.options.node ?? null;
    const limits = this.options.limits;
    const { rows } = await this.query<{ saved_id: string; outcome: string }>(
      { name: "agentd.save_sessions", text: "SELECT saved_id, outcome FROM agentd.save_sessions($1::text::json, $2, $3, $4, $5, $6, $7)" },
      [`[${items.map((item) => item.json).join(",")}]`, maxEvents, maxBytes, node?.id ?? null, node?.leaseMs ?? 0, limits?.maxSessions ?? NO_LIMIT, limits?.maxSessionsPerOwner ?? NO_LIMIT],
    );
    this.stats.commits++;
    this.stats.saves += items.length;
    // One row per item, in order: a fenced one fails alone, the others of the batch are committed.
    return items.map((item, i) => {
      if (rows[i]?.outcome === "fenced") return new FencedError(item.id, item.root, item.epoch);
      this.committed.set(item.id, item.committed);
      return null;
    });
  }

  /** The tree a session belongs to, from the parents this store has seen. */
  private rootFor(sessionId: string): string {
    let id = sessionId;
    for (let parent = this.parents.get(id); parent; parent = this.parents.get(id)) id = parent;
    return id;
  }

  /** A query on a pooled connection; a named one is prepared once per connection. */
  private async query<R extends pg.QueryResultRow>(text: string | { name: string; text: string }, values: unknown[]): Promise<pg.QueryResult<R>> {
    try {
      this.pool ??= newPool(this.options);
      return await this.pool.query<R>(typeof text === "string" ? { text, values } : { ...text, values });
    } catch (error) {
      const message = withoutPassword(describe(error), this.options.url);
      // A session limit the database checked (save_sessions): what the client is told.
      if (message.startsWith("agentd_limit: ")) throw resourceExhausted(message.slice("agentd_limit: ".length));
      // No `cause`: a log line would carry the driver's own error, which this text has cleaned.
      throw new Error(`PostgreSQL (${this.description}): ${message}`);
    }
  }
}

const UNSTORABLE = /\0|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * A value for a text column, as a JSON string. PostgreSQL text cannot hold NUL or lone surrogates;
 * the columns only index and check (the snapshot keeps the exact value), so those become U+FFFD.
 */
function column(value: string): string {
  return JSON.stringify(value.replace(UNSTORABLE, "\uFFFD"));
}

/** Takes the use lock: exclusive for a single server, shared for a cluster node; throws when the other kind holds it. */
async function takeUseLock(options: PostgresStoreOptions): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: options.url, application_name: "agentd (use lock)", connectionTimeoutMillis: options.connectTimeoutMs ?? 10_000 });
  // A connection the server drops must not crash the process; the lock goes with it.
  client.on("error", () => {});
  await client.connect();
  const exclusive = !options.node;
  const { rows } = await client.query<{ ok: boolean }>(`SELECT ${exclusive ? "pg_try_advisory_lock" : "pg_try_advisory_lock_shared"}($1) AS ok`, [USE_LOCK]);
  if (!rows[0]?.ok) {
    await client.end().catch(() => {});
    throw new Error(
      exclusive
        ? "the database is in use by another agentd (a cluster's nodes, or a single server): start this one with --cluster to join them, or give it a database of its own"
        : "the database is in use by a single agentd server (started without --cluster): stop it, or give the cluster a database of its own",
    );
  }
  return client;
}

function newPool(options: PostgresStoreOptions): pg.Pool {
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.poolSize ?? 8,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 10_000,
    application_name: "agentd",
  });
  // An idle connection the server dropped is reported here; the pool replaces it on next use.
  pool.on("error", () => {});
  return pool;
}

function describe(error: unknown): string {
  if (error instanceof AggregateError && error.errors.length > 0) return error.errors.map(describe).join("; ");
  if (error instanceof Error) return error.message || error.name;
  return String(error);
}
