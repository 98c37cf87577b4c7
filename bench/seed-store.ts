/**
 * Writes a data directory holding `count` stored sessions, as a server leaves them after one short
 * turn each: the restore and "flat from 1k to 100k" workloads start servers on it.
 *
 * Saving 100k sessions through the store takes minutes (every checkpoint fsyncs each session's
 * files), so a few template sessions are saved through the FileSessionStore API, checkpointed and
 * closed, and their folders are then copied under new ids and creation times (without fsync: the
 * files only have to be there for the next server to read). The file format stays the store's own.
 *
 *   tsx bench/seed-store.ts <dataDir> <count>     (prints {"seeded": n, "ms": ...})
 */
import { randomUUID } from "node:crypto";
import { cpSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { resolveConfig } from "../src/config/config.js";
import type { SessionEvent } from "../src/events/types.js";
import { defaultSessionConfig, newSessionRecord } from "../src/session/new-session.js";
import { FileSessionStore } from "../src/store/file-store.js";
import type { MessageRecord } from "../src/store/record.js";

/** Templates, one per owner: the seeded sessions are spread over this many owners. */
const OWNERS = 100;
const SCRIPT = JSON.stringify({ steps: [{ text: "short answer" }], repeat: true });

export async function seedStore(dataDir: string, count: number): Promise<void> {
  const root = path.resolve(dataDir);
  const config = resolveConfig({ dataDir: root });
  const sessionConfig = {
    ...defaultSessionConfig(config.sessionDefaults),
    model: { provider: "scripted", model: "script", baseUrl: "", apiKeyEnv: "", scriptPath: "", scriptJson: SCRIPT },
  };
  const base = Date.UTC(2025, 0, 1);
  const iso = (i: number) => new Date(base + i * 1000).toISOString();
  const templates = Math.min(OWNERS, count);
  const store = new FileSessionStore(root);
  await store.loadAll();
  const ids: string[] = [];
  await Promise.all(
    Array.from({ length: templates }, (_, i) => {
      const id = randomUUID();
      ids.push(id);
      const at = iso(i);
      const turnId = randomUUID();
      const messages: MessageRecord[] = [
        { id: randomUUID(), role: "user", text: "a short question", toolCalls: [], createdAt: at, turnId },
        { id: randomUUID(), role: "assistant", text: "short answer", toolCalls: [], createdAt: at, turnId },
      ];
      const events = [
        { sessionId: id, sequence: 1, timeMs: base, turnId, payload: { type: "turn_started", prompt: "a short question" } },
        { sessionId: id, sequence: 2, timeMs: base, turnId, payload: { type: "text_delta", text: "short answer" } },
      ] as SessionEvent[];
      const fields = { id, owner: `owner${i}`, parentId: null, config: structuredClone(sessionConfig), workspace: path.join(root, "workspaces", id), ephemeral: false, labels: {} };
      const record = { ...newSessionRecord(fields, at), messages, lastSequence: 2, scriptSteps: 1, usage: { inputTokens: 10, outputTokens: 3 } };
      return store.save(record, events);
    }),
  );
  await store.close();

  const sessionsDir = store.directory;
  const folders = ids.map((id) => path.join(sessionsDir, id));
  for (const folder of folders) {
    if (!statSync(folder, { throwIfNoEntry: false })?.isDirectory()) {
      throw new Error(`the file store no longer keeps a session in ${folder}: update bench/seed-store.ts`);
    }
  }
  const files = folders.map((folder) => readdirSync(folder).map((name) => ({ name, text: readFileSync(path.join(folder, name), "utf8") })));
  for (let i = templates; i < count; i++) {
    const t = i % templates;
    const id = randomUUID();
    const folder = path.join(sessionsDir, id);
    mkdirSync(folder, { mode: 0o700 });
    const at = iso(i);
    for (const file of files[t]!) {
      writeFileSync(path.join(folder, file.name), file.text.replaceAll(ids[t]!, id).replaceAll(iso(t), at), { mode: 0o600 });
    }
  }
}

/** Copies a seeded data directory (cheaper than seeding it again). */
export function copyDataDir(from: string, to: string): void {
  cpSync(from, to, { recursive: true });
}

if (process.argv[1] && import.meta.url.endsWith(path.basename(process.argv[1]))) {
  const [dataDir, count] = process.argv.slice(2);
  const started = performance.now();
  await seedStore(dataDir!, Number(count));
  process.stdout.write(`${JSON.stringify({ seeded: Number(count), ms: Math.round(performance.now() - started) })}\n`);
}
