import { describe, expect, it } from "vitest";
import { SessionContext } from "../../src/context/session-context.js";
import type { ContextRecord } from "../../src/context/types.js";
import { modelMessages, replay } from "../../src/context/view.js";
import type { Message } from "../../src/session/types.js";
import { assistant, exchange, summary, user } from "./messages.js";

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

/** A small deterministic generator, so a failure names a seed that reproduces it. */
function rng(seed: number) {
  return () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
}

describe("SessionContext's kept model messages, over random transcripts and operations", () => {
  it("equal a fresh computation after every step", () => {
    for (let seed = 1; seed <= 300; seed++) {
      const r = rng(seed);
      let messages: Message[] = [];
      const context = new SessionContext(undefined, () => {});
      let lastWasCompact = false;
      for (let step = 0; step < 40; step++) {
        const x = r();
        const turn = `t${step}`;
        const compacted = lastWasCompact;
        lastWasCompact = false;
        if (x < 0.5) {
          messages.push(user(`${turn} p`, turn), assistant(`${turn} a`, turn));
        } else if (x < 0.6 && messages.length > 0) {
          messages.push(summary(`sum ${step}`));
          const at = messages.length;
          context.apply({ type: "compact", at, keepFrom: Math.floor(r() * (at - 1)), summaryIndex: at - 1, method: "summary", trigger: "manual", atMs: step });
          lastWasCompact = true;
        } else if (x < 0.65 && messages.length > 0) {
          const at = messages.length;
          context.apply({ type: "compact", at, keepFrom: Math.floor(r() * at), summaryIndex: null, method: "truncation", trigger: "manual", atMs: step });
          lastWasCompact = true;
        } else if (x < 0.72 && compacted) {
          context.apply({ type: "uncompact", at: messages.length, atMs: step });
        } else if (x < 0.8) {
          context.apply({ type: "clear", at: messages.length, atMs: step });
        } else if (x < 0.9 && messages.length > 0) {
          context.apply({ type: "rewind", at: messages.length, from: Math.floor(r() * messages.length), turnId: "x", atMs: step });
        } else if (x < 0.95) {
          // The transcript replaced by another array (as a restore makes a new session's).
          messages = [...messages];
        }
        if (r() < 0.6) {
          const fresh = modelMessages(messages, replay(context.operations));
          expect(context.modelMessages(messages).map((m) => m.text), `seed ${seed} step ${step}`).toEqual(fresh.map((m) => m.text));
        }
      }
    }
  });
});
