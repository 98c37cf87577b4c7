import { describe, expect, it } from "vitest";
import { planCompaction } from "../../src/context/plan.js";
import { replay } from "../../src/context/view.js";
import type { Message } from "../../src/session/types.js";
import { assistant, exchange, result, user } from "./messages.js";

const byLength = (message: Message) => message.text.length + (message.toolResult?.output.length ?? 0);

describe("planning a compaction", () => {
  it("keeps the last two whole turns and cuts before the others", () => {
    const messages = ["t1", "t2", "t3", "t4"].flatMap(exchange);
    const plan = planCompaction(messages, replay([]), { keepTokens: null, tokensOf: byLength })!;
    expect(plan.keepFrom).toBe(4);
    expect(plan.head.map((m) => m.text)).toEqual(["t1 prompt", "t1 answer", "t2 prompt", "t2 answer"]);
    expect(plan.kept).toBe(4);
  });

  it("keeps fewer turns when they do not fit the share of the window", () => {
    const messages = [...exchange("t1"), user("t2 prompt"), assistant("x".repeat(500), "t2"), ...exchange("t3")];
    const plan = planCompaction(messages, replay([]), { keepTokens: 100, tokensOf: byLength })!;
    expect(plan.keepFrom).toBe(4);
  });

  it("never separates a tool call from its result, and cuts inside one long turn between steps", () => {
    const big = "y".repeat(1000);
    const messages = [
      user("do it", "t1"),
      assistant("", "t1", ["c1", "c2"]),
      result("c1", "t1", big),
      result("c2", "t1", big),
      assistant("", "t1", ["c3"]),
      result("c3", "t1", big),
      assistant("", "t1", ["c4"]),
      result("c4", "t1", "small"),
    ];
    const plan = planCompaction(messages, replay([]), { keepTokens: 100, tokensOf: byLength })!;
    // The newest step (call c4 and its result) stays; the cut is right before its assistant message.
    expect(plan.keepFrom).toBe(6);
    const kept = messages.slice(plan.keepFrom);
    const calls = new Set(kept.flatMap((m) => m.toolCalls.map((c) => c.id)));
    for (const m of kept) if (m.toolResult) expect(calls.has(m.toolResult.callId)).toBe(true);
  });

  it("with wholeNewestTurn, cuts into the newest turn only when it alone is too big", () => {
    const one = exchange("t1");
    // By default a single turn loses its prompt (a turn's long run of steps needs that)...
    expect(planCompaction(one, replay([]), { keepTokens: null, tokensOf: byLength })!.keepFrom).toBe(1);
    // ...which a CompactSession would do for nothing.
    expect(planCompaction(one, replay([]), { keepTokens: null, tokensOf: byLength, wholeNewestTurn: true })).toBeNull();
    expect(planCompaction(one, replay([]), { keepTokens: 100, tokensOf: byLength, wholeNewestTurn: true })).toBeNull();
    const long = [user("do it", "t1"), assistant("", "t1", ["c1"]), result("c1", "t1", "y".repeat(1000)), assistant("done", "t1")];
    expect(planCompaction(long, replay([]), { keepTokens: 100, tokensOf: byLength, wholeNewestTurn: true })!.keepFrom).toBe(3);
    // Older turns are compacted as ever.
    expect(planCompaction(["t1", "t2"].flatMap(exchange), replay([]), { keepTokens: null, tokensOf: byLength, wholeNewestTurn: true })!.keepFrom).toBe(2);
  });

  it("finds nothing to compact in a context of one prompt, or of nothing", () => {
    expect(planCompaction([user("only")], replay([]), { keepTokens: null, tokensOf: byLength })).toBeNull();
    expect(planCompaction([], replay([]), { keepTokens: null, tokensOf: byLength })).toBeNull();
  });

  it("plans only over the context: what an earlier compaction cut stays out", () => {
    const messages = ["t1", "t2", "t3", "t4", "t5"].flatMap(exchange);
    const view = replay([{ type: "clear", at: 4, atMs: 1 }]);
    const plan = planCompaction(messages, view, { keepTokens: null, tokensOf: byLength })!;
    expect(plan.head.map((m) => m.turnId)).toEqual(["t3", "t3"]);
  });
});
