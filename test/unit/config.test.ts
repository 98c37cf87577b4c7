import { writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { DEFAULT_CONFIG, readConfigFile, resolveConfig } from "../../src/config/config.js";
import { makeTempDir, removeTempDirs } from "../helpers/harness.js";

afterAll(removeTempDirs);

describe("configuration", () => {
  it("starts from the embedded defaults and lets later layers win, merging nested settings", () => {
    expect(resolveConfig()).toEqual(DEFAULT_CONFIG);
    const config = resolveConfig({ port: 1, limits: { maxSessions: 5 } }, { port: 2 });
    expect(config.port).toBe(2);
    expect(config.limits).toEqual({ ...DEFAULT_CONFIG.limits, maxSessions: 5 });
    expect(config.host).toBe("127.0.0.1");
  });

  it("rejects unknown keys and impossible values with a message naming them", () => {
    expect(() => resolveConfig({ prot: 1 } as never)).toThrow('unknown configuration key "prot"');
    expect(() => resolveConfig({ port: 70000 })).toThrow("port must be between 0 and 65535");
    expect(() => resolveConfig({ limits: { maxSessions: 0 } })).toThrow("limits.maxSessions must be a positive integer");
    expect(() => resolveConfig({ store: "s3" as never })).toThrow('store must be "file", "memory" or "postgres"');
    expect(() => resolveConfig({ store: "postgres" })).toThrow("needs a database URL (--database-url, AGENTD_DATABASE_URL,");
    expect(() => resolveConfig({ store: "postgres", database: { url: "mysql://u:pw@h/db" } })).toThrow("must start with postgres:// or postgresql://, not mysql://");
    expect(() => resolveConfig({ store: "postgres", database: { url: "postgres://u:pw@h/db", poolSize: 0 } })).toThrow("database.poolSize must be a positive integer");
  });

  it("checks every key of the owners' budgets: a budget a typo turned off would stop nobody", () => {
    const budgets = (value: unknown) => () => resolveConfig({ budgets: value } as never);
    expect(resolveConfig({ budgets: { perOwnerUsd: 5, owners: { ci: 50, ops: 0 } } }).budgets).toEqual({ period: "month", perOwnerUsd: 5, owners: { ci: 50, ops: 0 } });
    expect(budgets({ perOwnerUSD: 5 })).toThrow('budgets has unknown key(s) "perOwnerUSD"; the keys are "period", "perOwnerUsd" and "owners"');
    expect(budgets({ period: "week" })).toThrow('budgets.period must be "day", "month" or "total", got "week"');
    expect(budgets({ perOwnerUsd: -1 })).toThrow("budgets.perOwnerUsd must be a non-negative number of US dollars, got -1");
    expect(budgets({ perOwnerUsd: "5" })).toThrow('budgets.perOwnerUsd must be a non-negative number of US dollars, got "5"');
    expect(budgets({ owners: null })).toThrow("budgets.owners must be an object of owner names to US dollars");
    expect(budgets({ owners: "abc" })).toThrow("budgets.owners must be an object of owner names to US dollars");
    expect(budgets({ owners: { alice: "x" } })).toThrow('budgets.owners["alice"] must be a non-negative number of US dollars, got "x"');
    expect(budgets({ owners: { "": 1 } })).toThrow("budgets.owners has a key that is no owner name (an owner name must not be empty)");
    expect(budgets({ owners: { "a\u0001": 1 } })).toThrow("budgets.owners has a key that is no owner name (owner must be at most");
  });

  it("reads a JSON file and names the file when it is not JSON", async () => {
    const dir = await makeTempDir();
    const good = path.join(dir, "good.json");
    await writeFile(good, JSON.stringify({ dataDir: "/srv/agentd", limits: { maxSessionsPerOwner: 3 } }));
    expect(resolveConfig(readConfigFile(good)).limits.maxSessionsPerOwner).toBe(3);
    const bad = path.join(dir, "bad.json");
    await writeFile(bad, "{ nope");
    expect(() => readConfigFile(bad)).toThrow(`config file ${bad} is not valid JSON`);
  });
});
