/**
 * Every SessionStore runs the same contract (test/store/contract.ts): what the interface promises
 * holds for each of them alike.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { FileSessionStore, type FileStoreOptions } from "../../src/store/file-store.js";
import { MemoryStore } from "../../src/store/memory-store.js";
import { PostgresSessionStore } from "../../src/store/postgres/postgres-store.js";
import { DEFAULT_EVENT_RETENTION, type EventRetention } from "../../src/store/types.js";
import { freshDatabase } from "../helpers/postgres.js";
import { describeStoreContract, type StoreUnderTest } from "./contract.js";

describeStoreContract("MemoryStore", async () => ({
  open: async (retention) => new MemoryStore(retention),
  // Nothing outlives the object.
  reopen: null,
  cleanup: async () => {},
}), false);

/**
 * A FileSessionStore over a fresh temp dir; a reopen closes the store opened last (as a server
 * does on shutdown) and opens a new one over the same dir.
 */
function fileStore(options: Omit<FileStoreOptions, "retention"> = {}): () => Promise<StoreUnderTest> {
  return async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "agentd-contract-"));
    const opened: FileSessionStore[] = [];
    const open = (retention?: EventRetention): FileSessionStore => {
      const store = new FileSessionStore(dir, { ...options, retention });
      opened.push(store);
      return store;
    };
    return {
      open: async (retention) => open(retention),
      reopen: async (retention) => {
        await opened.at(-1)?.close();
        return open(retention);
      },
      cleanup: async () => {
        for (const store of opened) await store.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  };
}

// Checkpoints in the background, as configured by default: most of what is read is still in the log.
describeStoreContract("FileSessionStore", fileStore());

// A checkpoint after every write: what is read comes from the sessions' own files (trimmed ones included).
describeStoreContract("FileSessionStore, checkpointing after every save", fileStore({ checkpointBytes: 1 }));

// A fresh database per test; a reopen is a new store over the same database (a restart).
describeStoreContract("PostgresSessionStore", async () => {
  const database = await freshDatabase();
  const opened: PostgresSessionStore[] = [];
  const open = async (retention: EventRetention = DEFAULT_EVENT_RETENTION) => {
    const store = await PostgresSessionStore.open({ url: database.url, retention, poolSize: 2 });
    opened.push(store);
    return store;
  };
  return {
    open,
    reopen: async (retention) => {
      await opened.at(-1)?.close();
      return open(retention);
    },
    cleanup: async () => {
      for (const store of opened) await store.close().catch(() => {});
      await database.drop();
    },
  };
});
