import { describe, expect, it } from "vitest";
import { SessionContext } from "../../src/context/session-context.js";
import type { ContextRecord } from "../../src/context/types.js";

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
