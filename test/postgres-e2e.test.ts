/**
 * The PostgreSQL store behind a real server, through the generated client: what a client sees when
 * the database goes away and comes back, and what a restarted server finds.
 */
import { status } from "@grpc/grpc-js";
import { afterAll, describe, expect, it } from "vitest";
import type { AgentEvent, SubscribeResponse } from "../src/gen/agentd/v1/runtime.js";
import { cases, grpcError, removeTempDirs, scripted, startTestServer, waitFor } from "./helpers/harness.js";
import { startPostgresServer, type PostgresServer } from "./helpers/postgres-server.js";

let database: PostgresServer | undefined;
afterAll(async () => {
  await database?.destroy();
  await removeTempDirs();
});

const postgresConfig = (url: string) => ({ store: "postgres" as const, database: { url, poolSize: 4 } });

describe("the PostgreSQL store behind a server", () => {
  it("reports UNAVAILABLE while the database is gone, keeps nothing half-written, and recovers without a restart", async () => {
    database = await startPostgresServer();
    const config = postgresConfig(database.url);
    const first = await startTestServer({ config });
    let sessionId = "";
    try {
      const { session } = await first.client.createSession({ owner: "alice", config: { model: scripted([{ text: "answer" }], true) }, labels: { k: "v" } });
      sessionId = session!.id;
      expect((await first.client.generate({ sessionId, prompt: "one" })).result!.text).toBe("answer");
      const { session: spare } = await first.client.createSession({ owner: "alice" });

      await database.stop();
      // A new session cannot be stored: refused and undone.
      const refused = await grpcError(first.client.createSession({ owner: "alice" }));
      expect(refused.code).toBe(status.UNAVAILABLE);
      expect(refused.details).toContain("nothing was created");
      expect(refused.details).not.toContain(database.password);
      // A turn runs, but its end is not acknowledged until the database has it.
      const events: AgentEvent[] = [];
      const turn = (async () => {
        for await (const message of first.client.streamGenerate({ sessionId, prompt: "two" }) as AsyncIterable<{ event?: AgentEvent }>) events.push(message.event!);
      })();
      await waitFor(() => (events.some((e) => e.payload?.$case === "persistenceFailed") ? true : undefined), 10_000);
      expect(cases(events)).not.toContain("turnCompleted");
      const failure = events.find((e) => e.payload?.$case === "persistenceFailed")!;
      if (failure.payload?.$case !== "persistenceFailed") throw new Error("unreachable");
      expect(failure.payload.persistenceFailed.message).toMatch(/PostgreSQL \(postgres:\/\/agentd:\*\*\*@127\.0\.0\.1:\d+\/postgres\)/);
      // A destroy the store cannot record is not acknowledged (it is recorded once the database is back).
      const unrecorded = await grpcError(first.client.destroySession({ sessionId: spare!.id }));
      expect(unrecorded.code).toBe(status.UNAVAILABLE);
      expect(unrecorded.details).toContain("the store has not recorded it yet");
      const busy = await grpcError(first.client.generate({ sessionId, prompt: "three" }));
      expect(busy.code).toBe(status.UNAVAILABLE);
      expect(first.logs.some((line) => JSON.stringify(line).includes(database!.password))).toBe(false);

      await database.start();
      await turn;
      expect(cases(events).at(-1)).toBe("turnCompleted");
      await waitFor(async () => ((await first.client.getSession({ sessionId })).session!.persistenceError === "" ? true : undefined));
      expect((await first.client.generate({ sessionId, prompt: "three" })).result!.text).toBe("answer");
      expect((await first.client.listSessions({})).sessions.map((s) => s.id)).toEqual([sessionId]);
    } finally {
      await first.stop();
    }

    // A new server on the same database finds every acknowledged turn, and numbers on above them.
    const second = await startTestServer({ config });
    try {
      const { session } = await second.client.getSession({ sessionId });
      expect(session!.owner).toBe("alice");
      expect((await second.client.listSessions({})).sessions.map((s) => s.id)).toEqual([sessionId]);
      expect(session!.labels).toEqual({ k: "v" });
      const { messages } = await second.client.getMessages({ sessionId });
      expect(messages.map((m) => m.text)).toEqual(["one", "answer", "two", "answer", "three", "answer"]);
      // The replay comes from the database's event log, up to the "caught up" marker.
      const replay: AgentEvent[] = [];
      const call = second.client.subscribe({ sessionId, afterSequence: 0 });
      for await (const message of call as AsyncIterable<SubscribeResponse>) {
        if (message.event) replay.push(message.event);
        if (message.caughtUp) break;
      }
      call.cancel();
      expect(replay.filter((e) => e.payload?.$case === "turnCompleted")).toHaveLength(3);
      const sequences = replay.map((e) => e.sequence);
      expect(sequences).toEqual([...sequences].sort((a, b) => a - b));
      const next = await second.client.generate({ sessionId, prompt: "four" });
      expect(next.result!.text).toBe("answer");
      const { session: after } = await second.client.getSession({ sessionId });
      expect(after!.lastSequence).toBeGreaterThan(sequences.at(-1)!);
    } finally {
      await second.stop();
    }
  }, 60_000);
});
