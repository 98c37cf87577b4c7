import pg from "pg";
import { afterEach, describe, expect, it } from "vitest";
import { ClusterMembership } from "../src/cluster/membership.js";
import { createLogger } from "../src/logging.js";
import { PostgresSessionStore } from "../src/store/postgres/postgres-store.js";
import { DEFAULT_EVENT_RETENTION } from "../src/store/types.js";
import { freshDatabase } from "./helpers/postgres.js";
import { recordWith } from "./store/builders.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function node(url: string, id: string): Promise<{ store: PostgresSessionStore; membership: ClusterMembership }> {
  const store = await PostgresSessionStore.open({ url, retention: DEFAULT_EVENT_RETENTION, node: { id, leaseMs: 60_000 } });
  const membership = new ClusterMembership(store, { nodeId: id, address: "", leaseMs: 60_000 }, createLogger("silent"));
  await membership.join(`127.0.0.1:${id === "A" ? 1 : 2}`);
  cleanups.push(async () => {
    await membership.leave();
    await store.close();
  });
  return { store, membership };
}

async function lease(url: string, root: string): Promise<string> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ l: string }>("SELECT coalesce(node_id, '-') || '@' || epoch AS l FROM agentd.leases WHERE root_id = $1", [root]);
    return rows[0]?.l ?? "none";
  } finally {
    await client.end();
  }
}

/** Alice's tree "t", made on node A and handed back; node B beside it. */
async function handedBack() {
  const db = await freshDatabase();
  cleanups.push(() => db.drop());
  const a = await node(db.url, "A");
  a.membership.created("t");
  await a.store.save({ ...recordWith("t", []), owner: "alice" }, []);
  await a.membership.release("t", 1);
  const b = await node(db.url, "B");
  return { db, a, b };
}

describe("ClusterMembership", () => {
  it("takes a free tree once however many calls ask for it at the same moment", async () => {
    const { db, a, b } = await handedBack();
    const placements = await Promise.all(Array.from({ length: 10 }, () => b.membership.place("t")));
    expect(new Set(placements.map((p) => JSON.stringify(p)))).toEqual(new Set([JSON.stringify({ kind: "taken", rootId: "t", epoch: 2 })]));
    expect(await lease(db.url, "t")).toBe("B@2");
    // The holder is live (it heartbeats): another node is sent there.
    expect(await a.membership.place("t")).toEqual({ kind: "elsewhere", rootId: "t", nodeId: "B", address: "127.0.0.1:2" });
  });

  it("never takes another owner's tree for a caller who may not see it", async () => {
    const { db, b } = await handedBack();
    expect(await b.membership.place("t", { owner: "bob" })).toEqual({ kind: "missing" });
    expect(await lease(db.url, "t")).toBe("-@1");
    expect(await b.membership.place("t", { owner: "alice" })).toEqual({ kind: "taken", rootId: "t", epoch: 2 });
  });

  it("does not take a destroyed tree's lease back", async () => {
    const db = await freshDatabase();
    cleanups.push(() => db.drop());
    const a = await node(db.url, "A");
    a.membership.created("t");
    await a.store.save({ ...recordWith("t", []), owner: "alice" }, []);
    await a.store.delete("t");
    expect(await a.membership.place("t")).toEqual({ kind: "missing" });
    expect(await lease(db.url, "t")).toBe("-@2");
  });
});
