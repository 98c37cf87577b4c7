/**
 * vitest globalSetup: starts one PostgreSQL cluster for the whole run (about a second) and hands its
 * URL to the test files through `inject("postgresUrl")`; see test/helpers/postgres.ts. When it cannot
 * start, the reason goes to `inject("postgresError")` instead: the tests that need PostgreSQL fail
 * with it, and the others run as usual. Teardown stops the cluster and removes its directory.
 */
import type { TestProject } from "vitest/node";
import { startPostgresServer, type PostgresServer } from "./postgres-server.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** Superuser URL of the shared cluster's `postgres` database; unset when it did not start. */
    postgresUrl: string | undefined;
    /** Why the shared cluster did not start; unset when it did. */
    postgresError: string | undefined;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  let server: PostgresServer | undefined;
  const started = performance.now();
  try {
    server = await startPostgresServer();
    project.provide("postgresUrl", server.url);
    project.provide("postgresError", undefined);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    project.provide("postgresUrl", undefined);
    project.provide("postgresError", message);
    process.stderr.write(`[postgres-global-setup] PostgreSQL did not start; tests that need it will fail:\n${message}\n`);
  }
  if (process.env.AGENTD_TEST_PG_TIMING) {
    process.stderr.write(`[postgres-global-setup] started in ${Math.round(performance.now() - started)} ms\n`);
  }
  return async () => {
    const stopping = performance.now();
    await server?.destroy();
    if (process.env.AGENTD_TEST_PG_TIMING) {
      process.stderr.write(`[postgres-global-setup] stopped and removed in ${Math.round(performance.now() - stopping)} ms\n`);
    }
  };
}
