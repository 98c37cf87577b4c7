import pg from "pg";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { PostgresSessionStore } from "../../src/store/postgres/postgres-store.js";
import { MIGRATIONS } from "../../src/store/postgres/schema.js";
import { redactDatabaseUrl } from "../../src/store/postgres/database-url.js";
import { DEFAULT_EVENT_RETENTION, FencedError } from "../../src/store/types.js";
import { sessionRecord } from "../helpers/records.js";
import { freshDatabase, type FreshDatabase } from "../helpers/postgres.js";
import { startPostgresServer, type PostgresServer } from "../helpers/postgres-server.js";
import { events, messages, recordWith } from "./builders.js";

const retention = DEFAULT_EVENT_RETENTION;
const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function database(): Promise<FreshDatabase> {
  const db = await freshDatabase();
  cleanups.push(() => db.drop());
  return db;
}

async function open(url: string): Promise<PostgresSessionStore> {
  const store = await PostgresSessionStore.open({ url, retention });
  cleanups.push(() => store.close());
  return store;
}

async function scalar<T>(url: string, sql: string): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return Object.values((await client.query(sql)).rows[0] as object)[0] as T;
  } finally {
    await client.end();
  }
}

describe("PostgresSessionStore", () => {
  it("applies the schema once when two nodes start on a fresh database at the same moment", async () => {
    const { url } = await database();
    const [a, b] = await Promise.all([open(url), open(url)]);
    expect([...a.migrations.applied, ...b.migrations.applied]).toEqual(MIGRATIONS.map((m) => m.version));
    expect(Number(await scalar(url, "SELECT count(*) FROM agentd.schema_migrations"))).toBe(MIGRATIONS.length);
    // Both work on the one schema.
    await a.save(recordWith("s1", messages(2)), []);
    expect((await b.loadAll()).records.map((r) => r.id)).toEqual(["s1"]);
    const again = await open(url);
    expect(again.migrations.applied).toEqual([]);
  });

  it("refuses a database whose schema a newer agentd has migrated", async () => {
    const { url } = await database();
    await open(url);
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    await client.query("INSERT INTO agentd.schema_migrations (version, name) VALUES (999, 'from the future')");
    await client.end();
    await expect(PostgresSessionStore.open({ url, retention })).rejects.toThrow(/schema is at version 999, newer than this build knows .*upgrade agentd/);
  });

  it("never shows the password: not in its description, nor when the login or the connection fails", async () => {
    const { url } = await database();
    const wrong = new URL(url);
    const password = "s3cret-Pa55word-that-must-not-leak";
    wrong.password = password;
    const refused = await PostgresSessionStore.open({ url: wrong.toString(), retention }).then(() => null, (error: Error) => error.message);
    expect(refused).toMatch(/cannot use PostgreSQL at postgres:\/\/agentd:\*\*\*@127\.0\.0\.1:\d+\/t.*password authentication failed/);
    expect(refused).not.toContain(password);
    const closed = new URL(wrong);
    closed.port = "1";
    const unreachable = await PostgresSessionStore.open({ url: closed.toString(), retention, connectTimeoutMs: 2_000 }).then(() => null, (error: Error) => error.message);
    expect(unreachable).toMatch(/cannot use PostgreSQL at .*ECONNREFUSED/);
    expect(unreachable).not.toContain(password);
    expect(redactDatabaseUrl(`postgres://u:${password}@h/db?sslpassword=${password}`)).toBe("postgres://u:***@h/db?sslpassword=***");
  });

  it("commits the saves of many sessions made at once together (group commit)", async () => {
    const { url } = await database();
    const store = await open(url);
    await Promise.all(Array.from({ length: 100 }, (_, i) => store.save(recordWith(`g${i}`, messages(3)), events(`g${i}`, 1, 5))));
    expect(store.stats.saves).toBe(100);
    expect(store.stats.commits).toBeLessThanOrEqual(2);
    expect((await store.loadAll()).records).toHaveLength(100);
    expect(Number(await scalar(url, "SELECT count(*) FROM agentd.events"))).toBe(500);
  });

  it("does not let one save the database refuses fail the others of its batch", async () => {
    const { url } = await database();
    const store = await open(url);
    const bad = { ...sessionRecord("bad"), createdAt: "not a time" };
    const outcomes = await Promise.allSettled([store.save(recordWith("ok1", messages(1)), []), store.save(bad, []), store.save(recordWith("ok2", messages(1)), [])]);
    expect(outcomes.map((o) => o.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect(String((outcomes[1] as PromiseRejectedResult).reason)).toMatch(/PostgreSQL .*invalid input syntax for type timestamp/);
    expect((await store.loadAll()).records.map((r) => r.id).sort()).toEqual(["ok1", "ok2"]);
  });

  it("bounds each session's event log in the database itself", async () => {
    const { url } = await database();
    const store = await PostgresSessionStore.open({ url, retention: { maxEvents: 50, maxBytes: 1_000_000 } });
    cleanups.push(() => store.close());
    for (let round = 0; round < 10; round++) await store.save(recordWith("a", []), events("a", round * 20 + 1, round * 20 + 20));
    expect(Number(await scalar(url, "SELECT count(*) FROM agentd.events WHERE session_id = 'a'"))).toBe(50);
    expect(await scalar(url, "SELECT event_count || '/' || event_bytes FROM agentd.sessions WHERE id = 'a'")).toBe(
      `50/${events("a", 151, 200).reduce((sum, e) => sum + Buffer.byteLength(JSON.stringify(e)) + 1, 0)}`,
    );
    expect((await store.readEvents("a", 0, 1)).oldest).toBe(151);
  });

  it("reads sessions back in pages, in creation order", async () => {
    const { url } = await database();
    const store = await open(url);
    const ids = Array.from({ length: 2_100 }, (_, i) => `p${String(i).padStart(5, "0")}`);
    await Promise.all(ids.map((id, i) => store.save({ ...recordWith(id, messages(i % 3)), createdAt: new Date(1_700_000_000_000 + i).toISOString() }, [])));
    const { records, failures } = await (await open(url)).loadAll();
    expect(failures).toEqual([]);
    expect(records.map((r) => r.id)).toEqual(ids);
    expect(records.map((r) => r.messages.length)).toEqual(ids.map((_, i) => i % 3));
  });

  it("reports a damaged row and loads the others", async () => {
    const { url } = await database();
    const store = await open(url);
    await store.save(recordWith("fine", messages(1)), []);
    await store.save(recordWith("broken", messages(1)), []);
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    await client.query(`UPDATE agentd.sessions SET snapshot = '{"version": 7}' WHERE id = 'broken'`);
    await client.end();
    const { records, failures } = await (await open(url)).loadAll();
    expect(records.map((r) => r.id)).toEqual(["fine"]);
    expect(failures).toEqual([{ location: "agentd.sessions id=broken", error: "unsupported record version 7" }]);
  });
});

describe("PostgresSessionStore on the nodes of a cluster", () => {
  it("fences the writes and deletes of a node whose lease another node has taken", async () => {
    const { url } = await database();
    const node = (id: string) => PostgresSessionStore.open({ url, retention, node: { id, leaseMs: 5_000 } });
    const a = await node("A");
    cleanups.push(() => a.close());
    await a.save(recordWith("s", messages(2)), events("s", 1, 2));
    expect(await scalar(url, "SELECT node_id || '@' || epoch FROM agentd.leases WHERE root_id = 's'")).toBe("A@1");
    // B takes the tree over (A was paused past its lease).
    await scalar(url, "UPDATE agentd.leases SET node_id = 'B', epoch = 2 WHERE root_id = 's' RETURNING 1");
    await expect(a.save(recordWith("s", messages(4)), events("s", 3, 4))).rejects.toBeInstanceOf(FencedError);
    await expect(a.delete("s")).rejects.toThrow(/run by another node now .*fenced/);
    const b = await node("B");
    cleanups.push(() => b.close());
    const [stored] = (await b.loadTree("s")).records;
    expect(stored!.messages).toEqual(messages(2));
    b.holdTree("s", 2);
    await b.save(recordWith("s", messages(3)), events("s", 3, 3));
    expect((await b.loadAll()).records[0]!.messages).toEqual(messages(3));
    expect(await b.readEvents("s", 0, 10)).toEqual({ events: events("s", 1, 3), oldest: 1 });
    // A child is written under its root's lease.
    await b.save({ ...recordWith("child", []), parentId: "s" }, []);
    await expect(a.save({ ...recordWith("child2", []), parentId: "s" }, [])).rejects.toBeInstanceOf(FencedError);
    expect(await b.rootOf("child")).toBe("s");
  });

  it("keeps a single server and a cluster's nodes off each other's database", async () => {
    const { url } = await database();
    const single = await PostgresSessionStore.open({ url, retention, exclusive: true });
    await expect(PostgresSessionStore.open({ url, retention, exclusive: true })).rejects.toThrow(/in use by another agentd .*--cluster/);
    await expect(PostgresSessionStore.open({ url, retention, node: { id: "A", leaseMs: 5_000 } })).rejects.toThrow(/in use by a single agentd server \(started without --cluster\)/);
    await single.close();
    const [a, b] = await Promise.all([
      PostgresSessionStore.open({ url, retention, node: { id: "A", leaseMs: 5_000 } }),
      PostgresSessionStore.open({ url, retention, node: { id: "B", leaseMs: 5_000 } }),
    ]);
    cleanups.push(() => a.close(), () => b.close());
    await expect(PostgresSessionStore.open({ url, retention, exclusive: true })).rejects.toThrow(/in use by another agentd/);
  });

  it("never lets a fenced node bring back a tree another node destroyed", async () => {
    const { url } = await database();
    const node = (id: string) => PostgresSessionStore.open({ url, retention, node: { id, leaseMs: 5_000 } });
    const [a, b] = await Promise.all([node("A"), node("B")]);
    cleanups.push(() => a.close(), () => b.close());
    await a.save(recordWith("s", messages(1)), []);
    await scalar(url, "UPDATE agentd.leases SET node_id = 'B', epoch = 2 WHERE root_id = 's' RETURNING 1");
    await b.loadTree("s");
    b.holdTree("s", 2);
    await b.delete("s");
    // A comes back with a write it had queued: refused, and nothing reappears.
    await expect(a.save(recordWith("s", messages(2)), [])).rejects.toBeInstanceOf(FencedError);
    expect(await a.rootOf("s")).toBeNull();
    expect(await scalar(url, "SELECT deleted::text || '/' || coalesce(node_id, '-') FROM agentd.leases WHERE root_id = 's'")).toBe("true/-");
  });

  it("moves a whole subtree to its new tree when its top session loses its parent", async () => {
    const { url } = await database();
    const a = await PostgresSessionStore.open({ url, retention, node: { id: "A", leaseMs: 5_000 } });
    cleanups.push(() => a.close());
    await a.save(recordWith("r", []), []);
    await a.save({ ...recordWith("c", []), parentId: "r" }, []);
    await a.save({ ...recordWith("g", []), parentId: "c" }, []);
    expect(await a.rootOf("g")).toBe("r");
    // DestroySession(r, orphan): r goes, c becomes top-level (a new tree, its own lease).
    await a.delete("r");
    await a.save(recordWith("c", []), []);
    expect(await a.rootOf("c")).toBe("c");
    expect(await a.rootOf("g")).toBe("c");
    expect((await a.loadTree("c")).records.map((r) => r.id)).toEqual(["c", "g"]);
    expect(await scalar(url, "SELECT node_id || '@' || epoch FROM agentd.leases WHERE root_id = 'c'")).toBe("A@1");
  });

  it("checks the session limits in the database, for every node alike", async () => {
    const { url } = await database();
    const limited = (id: string) => PostgresSessionStore.open({ url, retention, node: { id, leaseMs: 5_000 }, limits: { maxSessions: 100, maxSessionsPerOwner: 2 } });
    const [a, b] = await Promise.all([limited("A"), limited("B")]);
    cleanups.push(() => a.close(), () => b.close());
    await a.save({ ...recordWith("one", []), owner: "o" }, []);
    await b.save({ ...recordWith("two", []), owner: "o" }, []);
    await expect(a.save({ ...recordWith("three", []), owner: "o" }, [])).rejects.toThrow('owner "o" has 2 sessions, the per-owner limit (limits.maxSessionsPerOwner = 2)');
    // Saving an existing session again is no new session.
    await b.save({ ...recordWith("two", messages(1)), owner: "o" }, []);
    await a.delete("one");
    await a.save({ ...recordWith("three", []), owner: "o" }, []);
    expect(await scalar(url, "SELECT sessions FROM agentd.session_counts WHERE owner = 'o'")).toBe(2);
  });
});

describe("PostgresSessionStore when the database goes away", () => {
  let server: PostgresServer | undefined;
  afterAll(async () => server?.destroy());

  it("fails saves while it is down, keeps nothing half-written, and works again once it is back", async () => {
    server = await startPostgresServer();
    const store = await PostgresSessionStore.open({ url: server.url, retention, connectTimeoutMs: 1_000 });
    try {
      await store.save(recordWith("a", messages(2)), events("a", 1, 2));
      await server.stop();
      await expect(store.save(recordWith("a", messages(4)), events("a", 3, 4))).rejects.toThrow(/PostgreSQL \(postgres:\/\/agentd:\*\*\*@/);
      await expect(store.readEvents("a", 0, 10)).rejects.toThrow(/PostgreSQL/);
      await server.start();
      // The failed save changed nothing; the next one (the persister retries with the same events) lands whole.
      expect((await store.loadAll()).records[0]!.messages).toEqual(messages(2));
      await store.save(recordWith("a", messages(4)), events("a", 3, 4));
      expect((await store.loadAll()).records[0]!.messages).toEqual(messages(4));
      expect(await store.readEvents("a", 0, 10)).toEqual({ events: events("a", 1, 4), oldest: 1 });
    } finally {
      await store.close();
    }
  });
});
