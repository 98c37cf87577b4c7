import { status } from "@grpc/grpc-js";
import { getEventListeners } from "node:events";
import { describe, expect, it } from "vitest";
import { collect, grpcError, scripted, useSharedTestServer, waitFor } from "./helpers/harness.js";

const t = useSharedTestServer();

/** A session whose first turn streams slowly (10 chunks, 200 ms apart) and whose second answers "after". */
async function slowSession(): Promise<string> {
  const { session } = await t().client.createSession({
    config: { model: scripted([{ text: "a very slow answer", chunkSize: 2, delayMs: 200 }, { text: "after" }]) },
  });
  return session!.id;
}

async function turnActive(sessionId: string): Promise<boolean> {
  return (await t().client.getSession({ sessionId })).session!.turnActive;
}

describe("AgentdClient with an AbortSignal", () => {
  it("aborting a unary Generate rejects with CANCELLED and cancels the server's turn", async () => {
    const sessionId = await slowSession();
    const controller = new AbortController();
    const generate = grpcError(t().client.generate({ sessionId, prompt: "talk slowly" }, { signal: controller.signal }));
    await waitFor(async () => ((await turnActive(sessionId)) ? true : undefined));

    const aborted = Date.now();
    controller.abort();
    const error = await generate;
    expect(error.code).toBe(status.CANCELLED);
    expect(Date.now() - aborted).toBeLessThan(500);

    // The server noticed the cancelled call and stopped the turn; the session takes the next one.
    await waitFor(async () => ((await turnActive(sessionId)) ? undefined : true), 2000);
    const next = await t().client.generate({ sessionId, prompt: "again" });
    expect(next.result!.text).toBe("after");
    expect(getEventListeners(controller.signal, "abort")).toHaveLength(0);
  });

  it("aborting a StreamGenerate ends the stream with CANCELLED and cancels the server's turn", async () => {
    const sessionId = await slowSession();
    const controller = new AbortController();
    const call = t().client.streamGenerate({ sessionId, prompt: "talk slowly" }, { signal: controller.signal });
    const events = grpcError(collect(call));
    await waitFor(async () => ((await turnActive(sessionId)) ? true : undefined));

    controller.abort();
    expect((await events).code).toBe(status.CANCELLED);
    await waitFor(async () => ((await turnActive(sessionId)) ? undefined : true), 2000);
    expect((await t().client.generate({ sessionId, prompt: "again" })).result!.text).toBe("after");
    expect(getEventListeners(controller.signal, "abort")).toHaveLength(0);
  });

  it("an already-aborted signal rejects at once and starts no turn", async () => {
    const sessionId = await slowSession();
    const signal = AbortSignal.abort();

    const started = Date.now();
    const error = await grpcError(t().client.generate({ sessionId, prompt: "never sent" }, { signal }));
    expect(error.code).toBe(status.CANCELLED);
    expect(Date.now() - started).toBeLessThan(100);
    expect((await grpcError(collect(t().client.streamGenerate({ sessionId, prompt: "never sent" }, { signal })))).code).toBe(
      status.CANCELLED,
    );

    // With a deadline too, and cancelled once more by hand: still one CANCELLED status, nothing left behind.
    const late = t().client.streamGenerate({ sessionId, prompt: "never sent" }, { signal, deadline: Date.now() + 60_000 });
    late.cancel();
    expect((await grpcError(collect(late))).code).toBe(status.CANCELLED);

    // No turn ran: the history is empty.
    const { session } = await t().client.getSession({ sessionId });
    expect(session!.turnActive).toBe(false);
    expect(session!.messageCount).toBe(0);
  });

  it("a long-lived signal keeps no listener from calls that ended", async () => {
    const { session } = await t().client.createSession({ config: { model: scripted([{ text: "ok" }], true) } });
    const signal = new AbortController().signal;
    for (let i = 0; i < 5; i++) {
      await t().client.getSession({ sessionId: session!.id }, { signal });
      await t().client.generate({ sessionId: session!.id, prompt: `turn ${i}` }, { signal });
      await collect(t().client.streamGenerate({ sessionId: session!.id, prompt: `stream ${i}` }, { signal }));
    }
    // A call that fails ends too.
    await grpcError(t().client.getSession({ sessionId: "no-such-session" }, { signal }));
    expect(getEventListeners(signal, "abort")).toHaveLength(0);
  });

  it("a signal and a deadline go together", async () => {
    const sessionId = await slowSession();
    const signal = new AbortController().signal;
    const error = await grpcError(
      t().client.generate({ sessionId, prompt: "talk slowly" }, { signal, deadline: Date.now() + 300 }),
    );
    expect(error.code).toBe(status.DEADLINE_EXCEEDED);
    expect(getEventListeners(signal, "abort")).toHaveLength(0);
    await waitFor(async () => ((await turnActive(sessionId)) ? undefined : true), 2000);
  });
});
