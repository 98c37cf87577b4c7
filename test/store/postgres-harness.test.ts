/**
 * The PostgreSQL test harness itself: the shared cluster from the globalSetup hands out fresh
 * databases, and a cluster of its own can be stopped and started again with its data intact.
 */
import { existsSync } from "node:fs";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { freshDatabase, sharedPostgresUrl } from "../helpers/postgres.js";
import { startPostgresServer, type PostgresServer } from "../helpers/postgres-server.js";

async function query<T extends pg.QueryResultRow>(url: string, sql: string, values: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(sql, values)).rows;
  } finally {
    await client.end();
  }
}

describe("shared PostgreSQL cluster", () => {
  it("hands out a fresh database that runs queries with fsync on, and drops it", async () => {
    const db = await freshDatabase();
    try {
      const client = new pg.Client({ connectionString: db.url });
      await client.connect();
      try {
        expect((await client.query("select 1 as one")).rows).toEqual([{ one: 1 }]);
        const settings = await client.query(
          "select current_database() as db, current_setting('fsync') as fsync, current_setting('server_encoding') as encoding",
        );
        expect(settings.rows).toEqual([{ db: db.name, fsync: "on", encoding: "UTF8" }]);
      } finally {
        await client.end();
      }
    } finally {
      await db.drop();
    }
    const left = await query(sharedPostgresUrl(), "select 1 from pg_database where datname = $1", [db.name]);
    expect(left).toEqual([]);
  });

  it("gives every call its own database", async () => {
    const [a, b] = await Promise.all([freshDatabase(), freshDatabase()]);
    try {
      expect(a.name).not.toBe(b.name);
      await query(a.url, "create table only_in_a (x int)");
      const inB = await query(b.url, "select to_regclass('only_in_a') as t");
      expect(inB).toEqual([{ t: null }]);
    } finally {
      await Promise.all([a.drop(), b.drop()]);
    }
  });
});

describe("a cluster of its own", () => {
  let server: PostgresServer | undefined;
  afterAll(async () => {
    await server?.destroy();
  });

  it("keeps its data when stopped and started again", async () => {
    server = await startPostgresServer();
    await query(server.url, "create table kept (id int primary key, note text)");
    await query(server.url, "insert into kept values (1, 'written before stop')");

    await server.stop();
    expect(server.isRunning()).toBe(false);
    await expect(query(server.url, "select 1")).rejects.toThrow(/ECONNREFUSED/);

    await server.start();
    expect(server.isRunning()).toBe(true);
    expect(await query(server.url, "select id, note from kept")).toEqual([{ id: 1, note: "written before stop" }]);

    const dataDir = server.dataDir;
    await server.destroy();
    server = undefined;
    expect(existsSync(dataDir)).toBe(false);
  });
});
