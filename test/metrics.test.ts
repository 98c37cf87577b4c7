import { status } from "@grpc/grpc-js";
import { afterAll, describe, expect, it } from "vitest";
import { ConfirmDecision } from "../src/gen/agentd/v1/runtime.js";
import { cases, collect, grpcError, scripted, serversStoppedAfterAll, waitFor } from "./helpers/harness.js";

const start = serversStoppedAfterAll();
afterAll(() => {});

/** The endpoint's samples: `name{labels}` → value. */
async function scrape(address: string): Promise<Map<string, number>> {
  const response = await fetch(`http://${address}/metrics`);
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toContain("text/plain");
  const samples = new Map<string, number>();
  for (const line of (await response.text()).split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const cut = line.lastIndexOf(" ");
    samples.set(line.slice(0, cut), Number(line.slice(cut + 1)));
  }
  return samples;
}

const value = (samples: Map<string, number>, key: string) => samples.get(key) ?? 0;

describe("Prometheus metrics", () => {
  it("are off by default", async () => {
    const t = await start();
    expect(t.server.metricsAddress).toBeNull();
  });

  it("move with a turn that calls a tool a person approves", async () => {
    // 1 USD per input token: the turn's 28 input tokens cost 28 USD.
    const prices = { "scripted/script": { inputPerMillion: 1_000_000, outputPerMillion: 0 } };
    const t = await start({ config: { metrics: { enabled: true, host: "127.0.0.1", port: 0 }, prices } });
    const address = t.server.metricsAddress!;
    expect((await fetch(`http://${address}/other`)).status).toBe(404);
    const before = await scrape(address);
    expect(before.has("process_cpu_user_seconds_total")).toBe(true);

    const steps = [
      { toolCalls: [{ id: "w1", name: "write_file", arguments: { path: "m.txt", content: "metrics" } }], usage: { inputTokens: 11, outputTokens: 3 } },
      { text: "written", usage: { inputTokens: 17, outputTokens: 2 } },
    ];
    const { session } = await t.client.createSession({ config: { model: scripted(steps), confirmation: { enabled: true, timeoutMs: 0 } } });
    const id = session!.id;
    const turn = collect(t.client.streamGenerate({ sessionId: id, prompt: "write it" }));
    const pending = await waitFor(async () => (await t.client.listPendingConfirmations({ sessionId: id })).confirmations[0]);
    const waiting = await scrape(address);
    expect(value(waiting, "agentd_confirmations_pending")).toBe(1);
    expect(value(waiting, 'agentd_sessions{state="running"}')).toBe(1);
    await t.client.confirmToolCall({ sessionId: id, confirmationId: pending.id, decision: ConfirmDecision.CONFIRM_DECISION_APPROVE });
    expect(cases(await turn).at(-1)).toBe("turnCompleted");
    expect((await grpcError(t.client.getSession({ sessionId: "no-such-session" }))).code).toBe(status.NOT_FOUND);

    const after = await waitFor(async () => {
      const samples = await scrape(address);
      return value(samples, 'agentd_turns_total{outcome="completed"}') === 1 ? samples : undefined;
    });
    const delta = (key: string) => value(after, key) - value(before, key);
    expect(delta('agentd_turn_duration_seconds_count{outcome="completed"}')).toBe(1);
    expect(delta('agentd_tool_calls_total{tool="write_file",outcome="ok"}')).toBe(1);
    expect(delta('agentd_tool_call_duration_seconds_count{tool="write_file"}')).toBe(1);
    expect(delta('agentd_model_call_duration_seconds_count{model="scripted/script"}')).toBe(2);
    expect(delta('agentd_model_tokens_total{model="scripted/script",kind="input"}')).toBe(28);
    expect(delta('agentd_model_tokens_total{model="scripted/script",kind="output"}')).toBe(5);
    expect(delta('agentd_model_cost_usd_total{model="scripted/script"}')).toBe(28);
    expect(delta('agentd_confirmation_wait_seconds_count{outcome="approved"}')).toBe(1);
    expect(value(after, "agentd_confirmations_pending")).toBe(0);
    expect(after.has("agentd_persistence_lag_seconds")).toBe(true);
    expect(value(after, 'agentd_sessions{state="idle"}')).toBe(1);
    expect(delta('agentd_grpc_calls_total{method="CreateSession",code="OK"}')).toBe(1);
    expect(delta('agentd_grpc_calls_total{method="StreamGenerate",code="OK"}')).toBe(1);
    expect(delta('agentd_grpc_calls_total{method="ConfirmToolCall",code="OK"}')).toBe(1);
    expect(delta('agentd_grpc_calls_total{method="GetSession",code="NOT_FOUND"}')).toBe(1);
  });

  it("fails the start, and stops what had started, when its port is taken", async () => {
    const { createServer } = await import("node:net");
    const { startTestServer } = await import("./helpers/harness.js");
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    const port = (taken.address() as { port: number }).port;
    try {
      await expect(startTestServer({ config: { metrics: { enabled: true, host: "127.0.0.1", port } } })).rejects.toThrow(`cannot serve metrics on 127.0.0.1:${port}`);
    } finally {
      taken.close();
    }
    // Nothing of the failed start is left in the way of the next one.
    const t = await start({ config: { metrics: { enabled: true, host: "127.0.0.1", port } } });
    expect(t.server.metricsAddress).toBe(`127.0.0.1:${port}`);
  });

  it("let go of a turn whose session this node no longer runs (its tree moved mid-turn)", async () => {
    const { AgentdMetrics } = await import("../src/metrics/metrics.js");
    const here = new Set(["s1", "s2"]);
    const metrics = new AgentdMetrics(() => ({ sessionsByState: {}, pendingConfirmations: 0, unpersistedSessions: 0, persistenceLagSeconds: 0, eventMemoryBytes: 0 }), (id) => here.has(id));
    const session = (id: string) => ({ id, config: { model: null } }) as never;
    const event = (id: string, payload: object, timeMs: number) => ({ sessionId: id, sequence: 1, timeMs, turnId: "t", payload }) as never;
    for (const id of ["s1", "s2"]) metrics.observe(session(id), event(id, { type: "turn_started", turnId: "t", prompt: "" }, 0));
    here.delete("s1");
    await metrics.text();
    // s1 left: its end (were it ever seen) times nothing; s2's turn is still timed.
    for (const id of ["s1", "s2"]) metrics.observe(session(id), event(id, { type: "turn_completed", result: {} }, 1_000));
    const text = await metrics.text();
    expect(text).toContain('agentd_turns_total{outcome="completed"} 2');
    expect(text).toContain('agentd_turn_duration_seconds_count{outcome="completed"} 1');
  });
});
