import { describe, expect, it } from "vitest";
import { GlobalDefinitions } from "../../src/definitions/global-definitions.js";
import type { DefinitionProblem } from "../../src/definitions/problems.js";
import { visibleDefinitions } from "../../src/definitions/visible.js";

interface Item {
  name: string;
  from: string;
}

const item = (name: string, from: string): Item => ({ name, from });

describe("GlobalDefinitions", () => {
  it("starts empty and replaces the whole set on reload, sorted by name", async () => {
    let next: { items: Item[]; problems: DefinitionProblem[] } = { items: [item("b", "1"), item("a", "1")], problems: [] };
    const global = new GlobalDefinitions(async () => next);
    expect(global.list()).toEqual([]);

    await global.reload();
    expect(global.list().map((i) => i.name)).toEqual(["a", "b"]);
    expect(global.get("b")).toEqual(item("b", "1"));

    const problem = { file: "c.md", line: 2, message: "bad" };
    next = { items: [item("c", "2"), item("a", "2")], problems: [problem] };
    const result = await global.reload();
    expect(result.items.map((i) => i.name)).toEqual(["a", "c"]);
    expect(global.list()).toEqual([item("a", "2"), item("c", "2")]);
    expect(global.get("b")).toBeUndefined();
    expect(global.problems()).toEqual([problem]);
  });

  it("keeps the current set when the loader fails", async () => {
    let fail = false;
    const global = new GlobalDefinitions(async () => {
      if (fail) throw new Error("disk on fire");
      return { items: [item("a", "1")], problems: [] };
    });
    await global.reload();
    fail = true;
    await expect(global.reload()).rejects.toThrow("disk on fire");
    expect(global.list().map((i) => i.name)).toEqual(["a"]);
  });

  it("applies overlapping reloads in the order they were asked for", async () => {
    const releases: Array<() => void> = [];
    let calls = 0;
    const global = new GlobalDefinitions(async () => {
      const call = ++calls;
      await new Promise<void>((resolve) => releases.push(resolve));
      return { items: [item(`v${call}`, "x")], problems: [] };
    });
    const first = global.reload();
    const second = global.reload();
    await new Promise((resolve) => setImmediate(resolve));
    releases.shift()!();
    await first;
    await new Promise((resolve) => setImmediate(resolve));
    releases.shift()!();
    await second;
    expect(global.list().map((i) => i.name)).toEqual(["v2"]);
  });
});

describe("visibleDefinitions", () => {
  it("lets the session shadow its ancestors, nearer ancestors shadow farther ones, and any of them the global set", () => {
    const global = [item("deploy", "global"), item("lint", "global"), item("zeta", "global")];
    const own = [item("deploy", "own")];
    const parent = [item("lint", "parent"), item("deploy", "parent")];
    const grandparent = [item("lint", "grandparent"), item("alpha", "grandparent")];
    const visible = visibleDefinitions(global, [own, parent, grandparent]);
    expect(visible.map(({ item: i, scope }) => `${i.name}:${i.from}:${scope}`)).toEqual([
      "alpha:grandparent:inherited",
      "deploy:own:session",
      "lint:parent:inherited",
      "zeta:global:global",
    ]);
  });

  it("is the global set alone when no session has any", () => {
    expect(visibleDefinitions([item("b", "g"), item("a", "g")], [[]]).map((v) => [v.item.name, v.scope])).toEqual([
      ["a", "global"],
      ["b", "global"],
    ]);
  });
});
