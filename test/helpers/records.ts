import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { FileSessionStore } from "../../src/store/file-store.js";
import type { SessionRecord } from "../../src/store/record.js";

/** A minimal valid session record for store and persister tests. */
export function sessionRecord(id: string, lastSequence = 3): SessionRecord {
  return {
    version: 1,
    id,
    owner: "o",
    parentId: null,
    state: "idle",
    config: { model: null, systemPrompt: "", limits: { maxToolRounds: 1, toolTimeoutMs: 0 } },
    workspace: "/tmp",
    ephemeral: false,
    labels: {},
    createdAt: "2026-01-01T00:00:00.000Z",
    updatedAt: "2026-01-01T00:00:00.000Z",
    usage: { inputTokens: 0, outputTokens: 0 },
    lastSequence,
    messages: [],
  };
}

/**
 * The ids of the sessions a file store holds, read without opening it (a server may be using it):
 * session folders with a snapshot, and the sessions the write-ahead log saves and does not delete.
 */
export async function storedSessionIds(dataDir: string): Promise<string[]> {
  const directory = path.join(dataDir, "sessions");
  const ids = new Set<string>();
  // The log first: a checkpoint running meanwhile writes a folder before it lets a segment go.
  for (const name of (await readdir(path.join(directory, "wal.d")).catch(() => [] as string[])).sort()) {
    const text = await readFile(path.join(directory, "wal.d", name), "utf8").catch(() => "");
    for (const line of text.split("\n")) {
      try {
        const entry = JSON.parse(line) as { op: string; id: string };
        if (entry.op === "save") ids.add(entry.id);
        if (entry.op === "delete") ids.delete(entry.id);
      } catch {
        // a torn or empty line
      }
    }
  }
  for (const entry of await readdir(directory, { withFileTypes: true })) {
    if (entry.isDirectory() && !entry.name.includes(".") && (await stat(path.join(directory, entry.name, "snapshot.json")).catch(() => null))) ids.add(entry.name);
  }
  return [...ids].sort();
}

/** Everything a file store has written, as one text: for checks that something is nowhere on disk. */
export async function storedText(dataDir: string): Promise<string> {
  const directory = path.join(dataDir, "sessions");
  const names = (await readdir(directory, { recursive: true }).catch(() => [] as string[])).sort();
  const texts = await Promise.all(names.map((name) => readFile(path.join(directory, name), "utf8").catch(() => "")));
  return texts.join("\n");
}

/** One session's record as a file store restores it; only for a data dir no server is using. */
export async function readStoredRecord(dataDir: string, sessionId: string): Promise<SessionRecord | undefined> {
  const store = new FileSessionStore(dataDir);
  try {
    return (await store.loadAll()).records.find((record) => record.id === sessionId);
  } finally {
    await store.close();
  }
}
