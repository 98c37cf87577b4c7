import type pg from "pg";
import { MIGRATIONS, SCHEMA, type Migration } from "./schema.js";

/** Any fixed number: the advisory lock that makes nodes starting together apply migrations one at a time. */
const MIGRATION_LOCK = 0x61_67_65_6e_74_64; // "agentd"

export interface MigrationOutcome {
  applied: number[];
  /** The schema's version after the run. */
  version: number;
}

/**
 * Brings the database to the newest schema this build knows. Holds a session-level advisory lock
 * for the whole run, so a second node starting at the same moment waits and then finds nothing to
 * do. A database migrated by a newer build (a version this one does not know) is refused: this
 * build would not know what its tables mean.
 */
export async function migrate(pool: pg.Pool, migrations: readonly Migration[] = MIGRATIONS): Promise<MigrationOutcome> {
  const client = await pool.connect();
  try {
    await client.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK]);
    try {
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${SCHEMA}`);
      await client.query(
        `CREATE TABLE IF NOT EXISTS ${SCHEMA}.schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
      );
      const { rows } = await client.query<{ version: number }>(`SELECT version FROM ${SCHEMA}.schema_migrations ORDER BY version`);
      const done = new Set(rows.map((row) => row.version));
      const newest = Math.max(0, ...migrations.map((m) => m.version));
      const unknown = rows.map((row) => row.version).filter((version) => version > newest);
      if (unknown.length > 0) {
        throw new Error(`the database's agentd schema is at version ${Math.max(...unknown)}, newer than this build knows (${newest}): upgrade agentd`);
      }
      const applied: number[] = [];
      for (const migration of [...migrations].sort((a, b) => a.version - b.version)) {
        if (done.has(migration.version)) continue;
        await client.query("BEGIN");
        try {
          await client.query(migration.sql);
          await client.query(`INSERT INTO ${SCHEMA}.schema_migrations (version, name) VALUES ($1, $2)`, [migration.version, migration.name]);
          await client.query("COMMIT");
        } catch (error) {
          await client.query("ROLLBACK");
          throw new Error(`schema migration ${migration.version} (${migration.name}) failed: ${(error as Error).message}`);
        }
        applied.push(migration.version);
      }
      return { applied, version: newest };
    } finally {
      // A broken connection has lost the lock already; its error is the one worth reporting.
      await client.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK]).catch(() => {});
    }
  } finally {
    client.release();
  }
}
