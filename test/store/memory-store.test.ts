import { describe, expect, it } from "vitest";
import { MemoryStore } from "../../src/store/memory-store.js";
import { sessionRecord } from "../helpers/records.js";
import { event, events, message, messages, recordWith } from "./builders.js";

describe("MemoryStore", () => {
  it("keeps the latest record, isolated from later changes to the caller's objects", async () => {
    const store = new MemoryStore();
    const list = messages(3);
    await store.save(recordWith("a", list), []);
    list[0]!.text = "changed afterwards";
    await store.save(recordWith("a", [...list, message(3)]), []);
    const [loaded] = (await store.loadAll()).records;
    expect(loaded!.messages.map((m) => m.text)).toEqual(messages(4).map((m) => m.text));
    // A rewrite of stored messages is taken whole.
    await store.save(recordWith("a", [message(9)]), []);
    expect((await store.loadAll()).records[0]!.messages).toEqual([message(9)]);
  });

  it("keeps each session's newest events within the bounds, once each, and says which is oldest", async () => {
    const store = new MemoryStore({ maxEvents: 5, maxBytes: 1_000_000 });
    await store.save(sessionRecord("a"), events("a", 1, 4));
    await store.save(sessionRecord("a"), events("a", 3, 8));
    expect(await store.readEvents("a", 0, 100)).toEqual({ events: events("a", 4, 8), oldest: 4 });
    expect(await store.readEvents("a", 5, 2)).toEqual({ events: events("a", 6, 7), oldest: 4 });
    expect(await store.readEvents("b", 0, 2)).toEqual({ events: [], oldest: 0 });
    const big = "x".repeat(1000);
    const bytes = new MemoryStore({ maxEvents: 100, maxBytes: 2_500 });
    await bytes.save(sessionRecord("a"), events("a", 1, 5, big));
    expect((await bytes.readEvents("a", 0, 100)).events.map((e) => e.sequence)).toEqual([4, 5]);
    await bytes.save(sessionRecord("a"), [event("a", 6, "x".repeat(5000))]);
    expect(await bytes.readEvents("a", 0, 100)).toEqual({ events: [event("a", 6, "x".repeat(5000))], oldest: 6 });
    await bytes.delete("a");
    expect(await bytes.readEvents("a", 0, 100)).toEqual({ events: [], oldest: 0 });
  });
});
