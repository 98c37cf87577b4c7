import { status } from "@grpc/grpc-js";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { AgentdClient } from "../src/client/client.js";
import { hashToken, newToken } from "../src/server/auth/tokens.js";
import type { AgentEvent } from "../src/gen/agentd/v1/runtime.js";
import { collect, grpcError, makeTempDir, removeTempDirs, scripted, startTestServer } from "./helpers/harness.js";
import { costOf, priceOf } from "../src/llm/prices.js";

afterAll(removeTempDirs);

// 1,000 USD per million input tokens and 2,000 per million output: 100 in + 50 out cost 0.2 USD.
const prices = { "scripted/script": { inputPerMillion: 1_000, outputPerMillion: 2_000 } };
const step = { text: "ok", usage: { inputTokens: 100, outputTokens: 50 } };
const close = (value: number | undefined, expected: number) => expect(value).toBeCloseTo(expected, 9);

describe("costs and budgets", () => {
  it("prices each model call, and reports the cost per step, turn, session and tree; a budget stops the session", async () => {
    const dataDir = await makeTempDir();
    const t = await startTestServer({ dataDir, config: { prices } });
    try {
      const { session } = await t.client.createSession({ config: { model: scripted([step], true) } });
      const id = session!.id;
      const events = (await collect(t.client.streamGenerate({ sessionId: id, prompt: "one" }))) as AgentEvent[];
      const usage = events.find((e) => e.payload?.$case === "usage")!;
      if (usage.payload?.$case !== "usage") throw new Error("unreachable");
      close(usage.payload.usage.step!.costUsd, 0.2);
      close(usage.payload.usage.turn!.costUsd, 0.2);
      close(usage.payload.usage.session!.costUsd, 0.2);
      const done = events.at(-1)!;
      if (done.payload?.$case !== "turnCompleted") throw new Error("unreachable");
      close(done.payload.turnCompleted.result!.usage!.costUsd, 0.2);

      // A child's spending counts in the tree, not in the parent's own usage.
      const { session: child } = await t.client.createChildSession({ parentId: id });
      await t.client.generate({ sessionId: child!.id, prompt: "child" });
      const { session: parent } = await t.client.getSession({ sessionId: id });
      close(parent!.usage!.costUsd, 0.2);
      close(parent!.treeUsage!.costUsd, 0.4);
      expect(parent!.treeUsage!.totalTokens).toBe(300);

      // A budget of 0.3: the second turn runs (0.2 spent), the third finds 0.4 spent and stops.
      await t.client.configureSession({ sessionId: id, config: { limits: { budgetUsd: 0.3 } } });
      expect((await t.client.getSession({ sessionId: id })).session!.config!.limits!.budgetUsd).toBe(0.3);
      await t.client.generate({ sessionId: id, prompt: "two" });
      const stopped = await grpcError(t.client.generate({ sessionId: id, prompt: "three" }));
      expect(stopped.code).toBe(status.RESOURCE_EXHAUSTED);
      expect(stopped.details).toMatch(/spent its budget \(config\.limits\.budget_usd = 0\.3 USD; spent 0\.400000 USD\): raise it with ConfigureSession/);
      // Raised, it goes on.
      await t.client.configureSession({ sessionId: id, config: { limits: { budgetUsd: 1 } } });
      await t.client.generate({ sessionId: id, prompt: "four" });
      expect((await grpcError(t.client.configureSession({ sessionId: id, config: { limits: { budgetUsd: -1 } } }))).code).toBe(status.INVALID_ARGUMENT);
    } finally {
      await t.stop();
    }
    // Costs are stored with the session.
    const again = await startTestServer({ dataDir, config: { prices } });
    try {
      const [listed] = (await again.client.listSessions({})).sessions.filter((s) => s.parentId === "");
      close(listed!.usage!.costUsd, 0.6);
    } finally {
      await again.stop();
    }
  });

  it("prices well-known models out of the box, and a model without a price costs nothing", async () => {
    expect(costOf({ inputTokens: 1_000_000, outputTokens: 1_000_000 }, priceOf({ provider: "openai", model: "gpt-4o-mini" } as never, {}))).toBeCloseTo(0.75, 9);
    expect(priceOf({ provider: "openai", model: "gpt-4o-mini" } as never, { "openai/gpt-4o-mini": { inputPerMillion: 1, outputPerMillion: 1 } })).toEqual({ inputPerMillion: 1, outputPerMillion: 1 });
    expect(costOf({ inputTokens: 10, outputTokens: 10 }, priceOf({ provider: "scripted", model: "script" } as never, {}))).toBe(0);
    // A dated snapshot or alias has its model's price, the operator's first.
    const price = (provider: string, model: string, overrides = {}) => priceOf({ provider, model } as never, overrides);
    expect(price("openai", "gpt-4o-2024-11-20")).toEqual(price("openai", "gpt-4o"));
    expect(price("anthropic", "claude-sonnet-4-5-20250929")).toEqual({ inputPerMillion: 3, outputPerMillion: 15 });
    expect(price("anthropic", "claude-3-7-sonnet-20250219")).toEqual(price("anthropic", "claude-3-7-sonnet-latest"));
    expect(price("openai", "gpt-4o-2024-11-20", { "openai/gpt-4o": { inputPerMillion: 9, outputPerMillion: 9 } })).toEqual({ inputPerMillion: 9, outputPerMillion: 9 });
    expect(price("openai", "gpt-4o-mini-2024-07-18")).toEqual(price("openai", "gpt-4o-mini"));
    expect(price("openai", "gpt-unlisted")).toBeNull();
    // A snapshot priced apart keeps its own price, and does not lend it to its model or other snapshots.
    expect(price("openai", "gpt-4o-2024-05-13")).toEqual({ inputPerMillion: 5, outputPerMillion: 15 });
    expect(price("openai", "gpt-4o")).toEqual({ inputPerMillion: 2.5, outputPerMillion: 10 });
    expect(price("openai", "gpt-4o-2024-08-06")).toEqual({ inputPerMillion: 2.5, outputPerMillion: 10 });
    // An operator's price for one snapshot is for that snapshot alone.
    expect(price("openai", "gpt-4o-2024-08-06", { "openai/gpt-4o-2024-11-20": { inputPerMillion: 1, outputPerMillion: 1 } })).toEqual({ inputPerMillion: 2.5, outputPerMillion: 10 });
  });

  it("adds up each owner's spending over all their sessions, destroyed ones too, and stops an owner's turns at their budget", async () => {
    const dataDir = await makeTempDir();
    const aliceToken = newToken();
    const tokensFile = path.join(dataDir, "tokens.json");
    const admin = newToken();
    await writeFile(tokensFile, JSON.stringify({ tokens: [
      { sha256: hashToken(aliceToken), owner: "alice", role: "user" },
      { sha256: hashToken(admin), owner: "ops", role: "admin" },
    ] }));
    // Every owner may spend 0.5 USD a day; bob has no budget.
    const config = { prices, budgets: { period: "day" as const, perOwnerUsd: 0.5, owners: { bob: 0 } }, auth: { tokensFile } };
    const t = await startTestServer({ dataDir, config });
    const alice = new AgentdClient(t.server.address, { token: aliceToken });
    const ops = new AgentdClient(t.server.address, { token: admin });
    try {
      const model = scripted([step], true);
      const { session } = await alice.createSession({ config: { model } });
      await alice.generate({ sessionId: session!.id, prompt: "one" });
      // An ephemeral session's spending stays with its owner after it is destroyed.
      const { session: scratch } = await alice.createSession({ config: { model }, ephemeral: true });
      await alice.generate({ sessionId: scratch!.id, prompt: "two" });
      await alice.destroySession({ sessionId: scratch!.id });

      const mine = (await alice.getOwnerUsage({})).ownerUsage!;
      expect(mine.owner).toBe("alice");
      close(mine.usage!.costUsd, 0.4);
      expect(mine.usage!.totalTokens).toBe(300);
      expect(mine.budgetUsd).toBe(0.5);
      expect(mine.period).toBe("day");
      const midnight = new Date();
      midnight.setUTCHours(24, 0, 0, 0);
      expect(mine.periodEnd!.getTime()).toBe(midnight.getTime());
      expect(mine.periodStart!.getTime()).toBe(midnight.getTime() - 86_400_000);
      // GetSession gives it too.
      close((await alice.getSession({ sessionId: session!.id })).session!.ownerUsage!.usage!.costUsd, 0.4);

      // 0.4 of 0.5 spent: this turn runs (0.6 then), the next one of any of alice's sessions stops.
      await alice.generate({ sessionId: session!.id, prompt: "three" });
      const stopped = await grpcError(alice.generate({ sessionId: session!.id, prompt: "four" }));
      expect(stopped.code).toBe(status.RESOURCE_EXHAUSTED);
      expect(stopped.details).toMatch(
        /^owner "alice" has spent their budget \(0\.5 USD per day; spent 0\.600000 USD\)\. It renews at \d{4}-\d\d-\d\dT00:00:00\.000Z; to go on sooner, ask the operator to raise budgets\.perOwnerUsd in the server's configuration$/,
      );
      const { session: another } = await alice.createSession({ config: { model } });
      expect((await grpcError(alice.generate({ sessionId: another!.id, prompt: "five" }))).code).toBe(status.RESOURCE_EXHAUSTED);

      // A compaction's summary is a paid model call too: refused like a turn.
      const compacting = await grpcError(alice.compactSession({ sessionId: session!.id }));
      expect(compacting.code, compacting.details).toBe(status.RESOURCE_EXHAUSTED);
      expect(compacting.details).toMatch(/^owner "alice" has spent their budget/);
      // A model without a price would cost a budgeted owner nothing: refused before it runs.
      const { session: unpriced } = await alice.createSession({ config: { model: { provider: "openai", model: "gpt-unlisted", apiKeyEnv: "OPENAI_API_KEY" } } });
      const refused = await grpcError(alice.generate({ sessionId: unpriced!.id, prompt: "free?" }));
      expect(refused.code).toBe(status.FAILED_PRECONDITION);
      expect(refused.details).toBe(
        `the model openai/gpt-unlisted has no price, so owner "alice"'s budget could not count what it costs; choose a model with a price, or ask the operator to add prices["openai/gpt-unlisted"] to the server's configuration`,
      );

      // Owners are counted apart; bob's budget is lifted.
      const { session: bobs } = await ops.createSession({ owner: "bob", config: { model } });
      for (const prompt of ["a", "b", "c", "d"]) await ops.generate({ sessionId: bobs!.id, prompt });
      const bob = (await ops.getOwnerUsage({ owner: "bob" })).ownerUsage!;
      close(bob.usage!.costUsd, 0.8);
      expect(bob.budgetUsd).toBe(0);
      // A user reads only their own.
      expect((await grpcError(alice.getOwnerUsage({ owner: "bob" }))).code).toBe(status.PERMISSION_DENIED);
      expect((await grpcError(ops.getOwnerUsage({ owner: "x\u0001" }))).code).toBe(status.INVALID_ARGUMENT);
    } finally {
      alice.close();
      ops.close();
      await t.stop();
    }

    // The ledger is kept: after a restart alice has still spent her budget.
    const again = await startTestServer({ dataDir, config });
    const aliceAgain = new AgentdClient(again.server.address, { token: aliceToken });
    try {
      close((await aliceAgain.getOwnerUsage({})).ownerUsage!.usage!.costUsd, 0.6);
      const [kept] = (await aliceAgain.listSessions({})).sessions;
      expect((await grpcError(aliceAgain.generate({ sessionId: kept!.id, prompt: "six" }))).code).toBe(status.RESOURCE_EXHAUSTED);
    } finally {
      aliceAgain.close();
      await again.stop();
    }
  });

  it("a spend ledger that cannot be read: UNAVAILABLE for the owner's figures and budgeted turns, GetSession without them", async () => {
    const { MemoryStore } = await import("../src/store/memory-store.js");
    class Unreadable extends MemoryStore {
      override async spendOf(): Promise<never> {
        throw new Error("connection refused (simulated)");
      }
    }
    const t = await startTestServer({ dataDir: await makeTempDir(), store: new Unreadable(), config: { prices, budgets: { period: "day", perOwnerUsd: 1, owners: {} } } });
    try {
      const failed = await grpcError(t.client.getOwnerUsage({}));
      expect(failed.code).toBe(status.UNAVAILABLE);
      expect(failed.details).toBe("the owners' spend ledger cannot be read right now (the server's log says why); try again");
      const { session } = await t.client.createSession({ config: { model: scripted([step], true) } });
      const got = (await t.client.getSession({ sessionId: session!.id })).session!;
      expect(got.id).toBe(session!.id);
      expect(got.ownerUsage).toBeUndefined();
      // A budget that cannot be checked stops the turn rather than letting it spend.
      expect((await grpcError(t.client.generate({ sessionId: session!.id, prompt: "x" }))).code).toBe(status.UNAVAILABLE);
      expect(t.logs.some((line) => line.msg === "reading owners' spending from the store failed")).toBe(true);
    } finally {
      await t.stop();
    }
  });
});
