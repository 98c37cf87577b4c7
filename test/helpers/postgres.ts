/**
 * Databases on the PostgreSQL cluster that test/helpers/postgres-global-setup.ts starts once per
 * vitest run. Tests that need PostgreSQL call freshDatabase(); when the cluster is not available it
 * throws, so those tests fail (never skip) with the reason and the fix. The types of the injected
 * values (ProvidedContext) are declared in postgres-global-setup.ts.
 */
import pg from "pg";
import { inject } from "vitest";
import { uniqueName } from "./postgres-server.js";

export interface FreshDatabase {
  /** postgres://user:password@127.0.0.1:port/<name> */
  url: string;
  name: string;
  /** Drops the database, ending any connections still open to it; safe to call twice. */
  drop(): Promise<void>;
}

/** Superuser URL of the shared cluster's `postgres` database; throws when PostgreSQL is not available. */
export function sharedPostgresUrl(): string {
  const url = inject("postgresUrl");
  if (url) return url;
  const reason =
    inject("postgresError") ??
    "the vitest globalSetup test/helpers/postgres-global-setup.ts did not run (register it in vitest.config.ts)";
  throw new Error(`PostgreSQL is not available for this test: ${reason}`);
}

/** Creates a uniquely named, empty database on the shared cluster. */
export async function freshDatabase(): Promise<FreshDatabase> {
  const adminUrl = sharedPostgresUrl();
  const name = uniqueName("t");
  await withAdmin(adminUrl, (client) => client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`));
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    drop: async () => {
      await withAdmin(adminUrl, (client) =>
        client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(name)} WITH (FORCE)`),
      );
    },
  };
}

async function withAdmin<T>(adminUrl: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}
