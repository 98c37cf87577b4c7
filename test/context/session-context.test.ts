import { describe, expect, it } from "vitest";
import { SessionContext } from "../../src/context/session-context.js";
import type { ContextRecord } from "../../src/context/types.js";
import { modelMessages, replay } from "../../src/context/view.js";
import type { Message } from "../../src/session/types.js";
import { exchange, summary } from "./messages.js";

describe("SessionContext restored with fewer messages than its operations name", () => {
  it("drops the operations (and the last call's size) recorded past the transcript, so the model's context is not left empty", () => {
    const record: ContextRecord = {
      ops: [
        { type: "clear", at: 4, atMs: 1 },
        { type: "clear", at: 50, atMs: 2 },
      ],
      lastCall: { inputTokens: 900, at: 52, ops: 2 },
    };
    const context = new SessionContext(record, () => {}, 20);
    expect(context.operations).toEqual([{ type: "clear", at: 4, atMs: 1 }]);
    expect(context.lastCall).toBeNull();
    const whole = new SessionContext(record, () => {}, 60);
    expect(whole.operations).toHaveLength(2);
    expect(whole.lastCall).toEqual(record.lastCall);
  });
});

describe("SessionContext's model messages", () => {
  it("are kept between calls and extended as the transcript grows, and rebuilt after each operation", () => {
    const messages: Message[] = [];
    const context = new SessionContext(undefined, () => {});
    // The oracle: the model's messages computed afresh from the transcript and the operations.
    const fresh = () => modelMessages(messages, replay(context.operations));
    const texts = (list: readonly Message[]) => list.map((m) => m.text);

    messages.push(...exchange("t1"), ...exchange("t2"));
    const first = context.modelMessages(messages);
    expect(texts(first)).toEqual(texts(fresh()));
    messages.push(...exchange("t3"));
    // The same list, extended: a model call costs the new messages, not the history.
    expect(context.modelMessages(messages)).toBe(first);
    expect(texts(first)).toEqual(["t1 prompt", "t1 answer", "t2 prompt", "t2 answer", "t3 prompt", "t3 answer"]);

    context.apply({ type: "rewind", at: 6, from: 2, turnId: "t2", atMs: 1 });
    messages.push(...exchange("t4"));
    expect(texts(context.modelMessages(messages))).toEqual(texts(fresh()));
    expect(texts(context.modelMessages(messages))).not.toContain("t2 prompt");

    context.apply({ type: "compact", at: 9, keepFrom: 6, summaryIndex: 8, method: "summary", trigger: "manual", atMs: 2 });
    messages.push(summary("what came before"));
    messages.push(...exchange("t5"));
    const compacted = context.modelMessages(messages);
    expect(texts(compacted)).toEqual(texts(fresh()));
    expect(compacted[0]!.kind).toBe("summary");
    messages.push(...exchange("t6"));
    expect(texts(context.modelMessages(messages))).toEqual(texts(fresh()));

    context.apply({ type: "clear", at: messages.length, atMs: 3 });
    expect(context.modelMessages(messages)).toEqual([]);
    messages.push(...exchange("t7"));
    expect(texts(context.modelMessages(messages))).toEqual(["t7 prompt", "t7 answer"]);
  });
});
