import { describe, expect, it } from "vitest";
import type { ContextOp } from "../../src/context/types.js";
import { contextIndexes, messageMarks, modelMessages, replay, TRUNCATION_NOTE } from "../../src/context/view.js";
import { exchange, summary } from "./messages.js";

const compact = (at: number, keepFrom: number, summaryIndex: number | null): ContextOp => ({
  type: "compact",
  at,
  keepFrom,
  summaryIndex,
  method: summaryIndex === null ? "truncation" : "summary",
  trigger: "manual",
  atMs: 1,
});

describe("the context view", () => {
  it("is the whole transcript when nothing was done", () => {
    const messages = [...exchange("t1"), ...exchange("t2")];
    expect(modelMessages(messages, replay([]))).toEqual(messages);
  });

  it("after a compaction: the summary first, then the kept messages, never the summary where it was appended", () => {
    const messages = [...exchange("t1"), ...exchange("t2"), summary("S"), ...exchange("t3")];
    const view = replay([compact(5, 2, 4)]);
    const sent = modelMessages(messages, view);
    expect(sent.map((m) => m.text)).toEqual([expect.stringContaining("<summary>\nS\n</summary>"), "t2 prompt", "t2 answer", "t3 prompt", "t3 answer"]);
    expect(sent[0]).toMatchObject({ role: "user", kind: "summary", id: messages[4]!.id });
    expect(contextIndexes(messages, view)).toEqual([2, 3, 5, 6]);
  });

  it("a truncation keeps an earlier summary and notes what it dropped", () => {
    const messages = [...exchange("t1"), summary("S"), ...exchange("t2"), ...exchange("t3")];
    const view = replay([compact(3, 2, 2), compact(7, 5, null)]);
    const sent = modelMessages(messages, view);
    expect(sent[0]!.text).toContain("<summary>\nS\n</summary>");
    expect(sent[0]!.text).toContain(TRUNCATION_NOTE);
    expect(sent.slice(1).map((m) => m.text)).toEqual(["t3 prompt", "t3 answer"]);
  });

  it("a clear starts afresh: no summary, nothing before it", () => {
    const messages = [...exchange("t1"), summary("S"), ...exchange("t2"), ...exchange("t3")];
    const view = replay([compact(3, 2, 2), { type: "clear", at: 5, atMs: 2 }]);
    expect(modelMessages(messages, view).map((m) => m.text)).toEqual(["t3 prompt", "t3 answer"]);
  });

  it("a rewind gives the context the model had when the turn started, less that turn and the later ones", () => {
    // t1, t2, summary (of t1), t3, t4; then rewind to t2, which started before the compaction.
    const messages = [...exchange("t1"), ...exchange("t2"), summary("S"), ...exchange("t3"), ...exchange("t4"), ...exchange("t5")];
    const ops: ContextOp[] = [compact(5, 2, 4), { type: "rewind", at: 9, from: 2, turnId: "t2", atMs: 3 }];
    expect(modelMessages(messages, replay(ops)).map((m) => m.text)).toEqual(["t1 prompt", "t1 answer", "t5 prompt", "t5 answer"]);
    // Rewinding to t4 instead keeps the compaction.
    const later: ContextOp[] = [compact(5, 2, 4), { type: "rewind", at: 9, from: 7, turnId: "t4", atMs: 3 }];
    expect(modelMessages(messages, replay(later)).map((m) => m.text.slice(0, 9))).toEqual(["[This con", "t2 prompt", "t2 answer", "t3 prompt", "t3 answer", "t5 prompt", "t5 answer"]);
  });

  it("an undone compaction gives back what its summary stood for, and the summary leaves the context", () => {
    const messages = [...exchange("t1"), ...exchange("t2"), summary("S"), ...exchange("t3")];
    const view = replay([compact(5, 2, 4), { type: "uncompact", at: 7, atMs: 2 }]);
    expect(modelMessages(messages, view).map((m) => m.text)).toEqual(["t1 prompt", "t1 answer", "t2 prompt", "t2 answer", "t3 prompt", "t3 answer"]);
    // Two compactions, the second undone: the first one stands.
    const twice = replay([{ type: "clear", at: 0, atMs: 0 }, compact(5, 2, 4), compact(7, 5, null), { type: "uncompact", at: 7, atMs: 3 }]);
    expect(twice).toMatchObject({ start: 2, summaryIndex: 4, truncated: false });
  });

  it("rewinds nest: the second one keeps the first one's range out", () => {
    const messages = [...exchange("t1"), ...exchange("t2"), ...exchange("t3"), ...exchange("t4")];
    const ops: ContextOp[] = [
      { type: "rewind", at: 4, from: 2, turnId: "t2", atMs: 1 },
      { type: "rewind", at: 8, from: 6, turnId: "t4", atMs: 2 },
    ];
    expect(contextIndexes(messages, replay(ops))).toEqual([0, 1, 4, 5]);
  });

  it("marks each message of a page: in context, the context's start, rewound", () => {
    const messages = [...exchange("t1"), ...exchange("t2"), summary("S"), ...exchange("t3")];
    const view = replay([compact(5, 2, 4), { type: "rewind", at: 7, from: 5, turnId: "t3", atMs: 2 }]);
    const marks = messageMarks(messages, view, 1, 6);
    expect(marks.map((m) => m.inContext)).toEqual([false, true, true, true, false, false]);
    expect(marks.map((m) => m.contextStart)).toEqual([false, true, false, false, false, false]);
    expect(marks.map((m) => m.rewound)).toEqual([false, false, false, false, true, true]);
  });
});
