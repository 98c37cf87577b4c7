import type { RuntimeConfig } from "../config/config.js";
import type { Logger } from "../logging.js";
import { FileSessionStore } from "./file-store.js";
import { MemoryStore } from "./memory-store.js";
import { PostgresSessionStore } from "./postgres/postgres-store.js";
import { redactDatabaseUrl } from "./postgres/database-url.js";
import type { SessionStore } from "./types.js";

/** The store `config.store` names, ready to load from (a database's schema is migrated first). */
export async function openStore(config: RuntimeConfig, logger: Logger, nodeId?: string): Promise<SessionStore> {
  const { maxEventsPerSession: maxEvents, maxEventBytesPerSession: maxBytes, checkpointIntervalMs } = config.persistence;
  const retention = { maxEvents, maxBytes };
  switch (config.store) {
    case "memory":
      return new MemoryStore(retention);
    case "file":
      return new FileSessionStore(config.dataDir, {
        retention,
        checkpointIntervalMs,
        onWarning: (warning) => logger.warn(warning, "session store: repaired a problem in the background"),
      });
    case "postgres": {
      const store = await PostgresSessionStore.open({
        url: config.database.url,
        retention,
        poolSize: config.database.poolSize,
        limits: config.limits,
        node: nodeId ? { id: nodeId, leaseMs: config.cluster.leaseMs } : undefined,
        exclusive: !nodeId,
      });
      if (store.migrations.applied.length > 0) {
        logger.info({ database: store.description, applied: store.migrations.applied }, "database schema migrated");
      }
      return store;
    }
  }
}

/** Where sessions are kept, as the start-up line says it: never with a password. */
export function describeStore(config: Pick<RuntimeConfig, "store" | "dataDir" | "database">): string {
  if (config.store === "postgres") return redactDatabaseUrl(config.database.url);
  if (config.store === "memory") return "memory";
  return config.dataDir;
}
