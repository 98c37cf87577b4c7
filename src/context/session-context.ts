import type { Message } from "../session/types.js";
import type { ContextOp, ContextRecord } from "./types.js";
import { modelMessages, replay, type ContextView } from "./view.js";

/**
 * A session's record of its model context: the operations done on it and the last model call's
 * reported size. The session owns one; the context service decides what to record.
 */
export class SessionContext {
  private ops: ContextOp[];
  private last: ContextRecord["lastCall"];
  private cached: { ops: number; view: ContextView } | null = null;
  /** A CompactSession is summarising: no turn may start meanwhile. */
  compacting = false;

  constructor(
    record: ContextRecord | undefined,
    private readonly onChange: () => void,
  ) {
    this.ops = [...(record?.ops ?? [])];
    this.last = record?.lastCall ?? null;
  }

  get operations(): readonly ContextOp[] {
    return this.ops;
  }

  get lastCall(): ContextRecord["lastCall"] {
    return this.last;
  }

  view(): ContextView {
    if (this.cached?.ops !== this.ops.length) this.cached = { ops: this.ops.length, view: replay(this.ops) };
    return this.cached.view;
  }

  /** What the model is sent of this transcript. */
  modelMessages(messages: readonly Message[]): Message[] {
    return modelMessages(messages, this.view());
  }

  apply(op: ContextOp): void {
    this.ops.push(op);
    this.onChange();
  }

  /** A model call's reported input tokens, for a transcript of `at` messages. */
  recordCall(inputTokens: number, at: number): void {
    if (inputTokens <= 0) return;
    this.last = { inputTokens, at, ops: this.ops.length };
    this.onChange();
  }

  /** Undefined while nothing was recorded, so records of sessions that never used it stay as they were. */
  toRecord(): ContextRecord | undefined {
    if (this.ops.length === 0 && this.last === null) return undefined;
    return { ops: structuredClone(this.ops), lastCall: this.last ? { ...this.last } : null };
  }
}
