import { readdir, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { status, type ServiceError } from "@grpc/grpc-js";
import { afterAll, describe, expect, it } from "vitest";
import { AgentdClient, events } from "../src/client/client.js";
import type { Message } from "../src/gen/agentd/v1/runtime.js";
import { spawnServer, type ServerProcess } from "./helpers/crash-server.js";
import { acknowledged, CRASH_MODEL, runUntilFailure, type Acknowledged } from "./helpers/crash-workload.js";
import { makeTempDir, removeTempDirs, waitFor } from "./helpers/harness.js";
import { freshDatabase } from "./helpers/postgres.js";

/**
 * What a client saw acknowledged survives kill -9: a server in a child process runs turns and
 * creates sessions for many clients, is killed with SIGKILL at a random moment, and is restarted on
 * the same data dir. Every CreateSession reply, every turn_completed the clients got must still be
 * there, and numbering must go on above every sequence number they saw.
 *
 * A few seconds by default; AGENTD_CRASH_ROUNDS=25 AGENTD_CRASH_SESSIONS=60 for the long run.
 */

afterAll(removeTempDirs);

const ROUNDS = Number(process.env.AGENTD_CRASH_ROUNDS ?? 2);
const SESSIONS = Number(process.env.AGENTD_CRASH_SESSIONS ?? 20);

async function allMessages(client: AgentdClient, sessionId: string): Promise<Message[]> {
  const all: Message[] = [];
  let pageToken = "";
  do {
    const page = await client.getMessages({ sessionId, pageSize: 1000, pageToken });
    all.push(...page.messages);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return all;
}

/** Temp files and unfinished deletions in a data dir. */
async function interruptedWrites(dataDir: string): Promise<string[]> {
  const names = await readdir(path.join(dataDir, "sessions"), { recursive: true });
  return names.filter((name) => /\.(tmp|deleted)$/.test(name));
}

interface Losses {
  sessions: string[];
  turns: string[];
  reusedSequences: string[];
  /** The owner's ledger holds less than the turns acknowledged so far reported. */
  spending: string[];
}

/**
 * Checks a restarted server against what the clients of the killed one were told; `spentBefore`:
 * the tokens of every turn acknowledged so far. Returns the losses and the tokens its own turns used.
 */
async function check(client: AgentdClient, ack: Acknowledged, spentBefore: number): Promise<{ losses: Losses; tokens: number }> {
  const losses: Losses = { sessions: [], turns: [], reusedSequences: [], spending: [] };
  const ledger = (await client.getOwnerUsage({})).ownerUsage!.usage!.totalTokens;
  if (ledger < spentBefore) losses.spending.push(`the owner's ledger holds ${ledger} tokens, the acknowledged turns used ${spentBefore}`);
  let tokens = 0;
  for (const id of ack.sessions) {
    await client.getSession({ sessionId: id }).catch((error: ServiceError) => {
      if (error.code !== status.NOT_FOUND) throw error;
      losses.sessions.push(id);
    });
  }
  const bySession = new Map<string, Acknowledged["turns"]>();
  for (const turn of ack.turns) bySession.set(turn.sessionId, [...(bySession.get(turn.sessionId) ?? []), turn]);
  for (const [sessionId, turns] of bySession) {
    const messages = await allMessages(client, sessionId);
    for (const turn of turns) {
      const ofTurn = messages.filter((m) => m.turnId === turn.turnId);
      const asked = ofTurn.some((m) => m.text === turn.prompt);
      const answered = ofTurn.some((m) => m.text === `Done with ${turn.prompt}.`);
      if (!asked || !answered) losses.turns.push(`${sessionId}/${turn.turnId}`);
    }
  }
  // Numbering goes on above what was seen: one more turn per session, its first event checked.
  await Promise.all(
    [...ack.maxSequence].map(async ([sessionId, seen]) => {
      let first = 0;
      // The whole turn is read: leaving early would cancel it, and the next round's first turn would find it running.
      for await (const event of events(client.streamGenerate({ sessionId, prompt: "after the crash" }))) {
        first ||= event.sequence;
        if (event.payload?.$case === "turnCompleted") tokens += event.payload.turnCompleted.result?.usage?.totalTokens ?? 0;
      }
      if (first <= seen) losses.reusedSequences.push(`${sessionId}: ${first} after ${seen}`);
    }),
  );
  return { losses, tokens };
}

describe.each(["file", "postgres"] as const)("kill -9, %s store", (store) => {
  it(`loses no acknowledged work and reuses no sequence number (${ROUNDS} rounds, ${SESSIONS} sessions)`, async () => {
    const dataDir = await makeTempDir("agentd-crash-");
    // Frequent checkpoints, so that kills land in the middle of them too.
    const configFile = path.join(dataDir, "config.json");
    await writeFile(configFile, JSON.stringify({ persistence: { checkpointIntervalMs: 500 }, budgets: { period: "total", perOwnerUsd: 0, owners: {} } }));
    const database = store === "postgres" ? await freshDatabase() : null;
    const storeArgs = database ? ["--store", "postgres", "--database-url", database.url] : [];
    const start = () => spawnServer(dataDir, ["--config", configFile, ...storeArgs]);
    let server: ServerProcess = await start();
    let client = new AgentdClient(server.address);
    const sessions: string[] = [];
    for (let i = 0; i < SESSIONS; i++) sessions.push((await client.createSession({ config: { model: CRASH_MODEL } })).session!.id);
    const totals = { sessions: 0, turns: 0, lostSessions: 0, lostTurns: 0, reused: 0 };
    let spent = 0;
    try {
      for (let round = 0; round < ROUNDS; round++) {
        const ack = acknowledged();
        for (const id of sessions) ack.sessions.add(id);
        const load = runUntilFailure(client, sessions, ack);
        // A random moment once turns are completing: while others stream, sessions are created, and writes are on their way.
        await waitFor(() => (ack.turns.length > 0 ? true : undefined), 20_000);
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 800));
        await server.kill();
        client.close();
        await load;
        const leftBehind = database ? [] : await interruptedWrites(dataDir);

        server = await start();
        // Start-up removed what the interrupted writes left behind.
        for (const name of leftBehind) await expect(stat(path.join(dataDir, "sessions", name)), name).rejects.toThrow("ENOENT");
        client = new AgentdClient(server.address);
        spent += ack.tokens;
        const { losses, tokens } = await check(client, ack, spent);
        spent += tokens;
        totals.sessions += ack.sessions.size;
        totals.turns += ack.turns.length;
        totals.lostSessions += losses.sessions.length;
        totals.lostTurns += losses.turns.length;
        totals.reused += losses.reusedSequences.length;
        console.log(
          `crash round ${round + 1}: ${ack.turns.length} acknowledged turns (${losses.turns.length} lost), ` +
            `${ack.sessions.size} acknowledged sessions (${losses.sessions.length} lost), ` +
            `${losses.reusedSequences.length} sequence numbers reused, ${leftBehind.length} interrupted writes cleaned up`,
        );
        expect(losses).toEqual({ sessions: [], turns: [], reusedSequences: [], spending: [] });
      }
    } finally {
      console.log(`crash test totals: ${JSON.stringify(totals)}`);
      client.close();
      await server.kill();
      await database?.drop();
    }
  }, 60_000 + ROUNDS * 30_000);
});
