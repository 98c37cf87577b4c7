/**
 * The vocabulary of context management: what a session stores about the model's context, and what
 * compaction, clear and rewind report. The transcript itself is never changed: every operation is
 * recorded here and the model's context is computed from the transcript and these records.
 */

import type { UsageTotals } from "../session/types.js";

/** How the older part of the context was shortened: the model summarised it, or it was dropped. */
export type CompactionMethod = "summary" | "truncation";

/** Who asked: a client (CompactSession), the threshold before a model call, or a provider's overflow error. */
export type CompactionTrigger = "manual" | "automatic" | "overflow";

/** One change to the model's context, in the order they happened. Indexes are transcript positions. */
export type ContextOp =
  | {
      type: "compact";
      /** The transcript's length once the compaction was recorded (its summary message included). */
      at: number;
      /** The first message kept verbatim. */
      keepFrom: number;
      /** The summary message standing for what came before keepFrom; null for a truncation. */
      summaryIndex: number | null;
      method: CompactionMethod;
      trigger: CompactionTrigger;
      atMs: number;
    }
  | { type: "clear"; at: number; atMs: number }
  /** Undoes the compaction just before it (CompactSession with undo). */
  | { type: "uncompact"; at: number; atMs: number }
  | {
      type: "rewind";
      at: number;
      /** The first message of the turn rewound to: [from, at) leaves the context. */
      from: number;
      turnId: string;
      atMs: number;
    };

/** What a session stores about its context (SessionRecord.context); absent means "the whole transcript". */
export interface ContextRecord {
  ops: ContextOp[];
  /**
   * The last model call's reported input tokens, the transcript's length then, and how many
   * operations there were: when an operation came since, the count no longer describes the context.
   */
  lastCall: { inputTokens: number; at: number; ops: number } | null;
}

/** The settings of a session (SessionConfig.context), inherited by its children. */
export interface ContextSettings {
  /** Compact before a model call once the context passes the threshold, and after an overflow error. */
  autoCompact: boolean;
  /** A fraction of the context window, in (0, 1]. */
  autoCompactThreshold: number;
}

export const DEFAULT_CONTEXT_SETTINGS: ContextSettings = { autoCompact: true, autoCompactThreshold: 0.8 };

/** What a compaction did, for its reply and the `context_compacted` event. */
export interface CompactionReport {
  trigger: CompactionTrigger;
  method: CompactionMethod;
  tokensBefore: number;
  tokensAfter: number;
  messagesBefore: number;
  messagesAfter: number;
  /** The summary message's id; "" for a truncation. */
  summaryMessageId: string;
  /** Why it truncated instead of summarising ("" for a summary). */
  reason: string;
  /** The summary's model call; zero for a truncation. */
  summaryUsage: UsageTotals;
}

/** What ClearContext, RewindSession and an undone compaction did, for the `context_changed` event. */
export interface ContextChange {
  kind: "clear" | "rewind" | "undo_compaction";
  /** Messages that left the context (clear, rewind) or came back into it (undo). */
  messages: number;
  /** The turn rewound to; "" for the other kinds. */
  turnId: string;
  /** Messages in the model's context afterwards (a summary counts as one). */
  messagesAfter: number;
}

/** What GetContextUsage tells. */
export interface ContextUsage {
  /** What the model's next call would take: the last call's reported input plus an estimate of what came since. */
  tokens: number;
  /** 0 when unknown. */
  contextWindow: number;
  /** "config" (ModelConfig.context_window), "known_model" (the table of known models) or "" (unknown). */
  windowSource: "config" | "known_model" | "";
  /** tokens / contextWindow; 0 when the window is unknown. */
  fraction: number;
  /** Whether automatic compaction applies: on, and the window is known. */
  autoCompact: boolean;
  autoCompactThreshold: number;
  contextMessages: number;
  transcriptMessages: number;
  /** Epoch ms of the last compaction; 0 for never. */
  lastCompactedAtMs: number;
  /** How `tokens` was counted, such as "reported+o200k_base" or "estimate". */
  countMethod: string;
  /** A sentence for people: what is unknown, what applies. */
  note: string;
}

/** How one message of the transcript stands towards the model's context, for GetMessages. */
export interface MessageMark {
  inContext: boolean;
  /** The first message of the context after the last compaction or clear. */
  contextStart: boolean;
  /** In a part of the transcript a RewindSession took out of the context. */
  rewound: boolean;
}
