import {
  CompactionMethod,
  CompactionTrigger,
  ContextChangeKind,
  MessageKind,
  type ContextChanged,
  type ContextCompacted,
  type ContextUsage as ContextUsageProto,
  type Message as MessageProto,
  type SessionConfig as SessionConfigProto,
} from "../gen/agentd/v1/runtime.js";
import { checkContextSettings, contextSettingsOf } from "../context/settings.js";
import type { CompactionReport, ContextChange, ContextSettings, ContextUsage, MessageMark } from "../context/types.js";
import type { Message, SessionConfig } from "../session/types.js";

/** Conversions of context management between the core's types and the wire's. */

const METHODS: Record<CompactionReport["method"], CompactionMethod> = {
  summary: CompactionMethod.COMPACTION_METHOD_SUMMARY,
  truncation: CompactionMethod.COMPACTION_METHOD_TRUNCATION,
};

const TRIGGERS: Record<CompactionReport["trigger"], CompactionTrigger> = {
  manual: CompactionTrigger.COMPACTION_TRIGGER_MANUAL,
  automatic: CompactionTrigger.COMPACTION_TRIGGER_AUTOMATIC,
  overflow: CompactionTrigger.COMPACTION_TRIGGER_OVERFLOW,
};

export function toCompactionProto(report: CompactionReport): ContextCompacted {
  return {
    trigger: TRIGGERS[report.trigger],
    method: METHODS[report.method],
    tokensBefore: report.tokensBefore,
    tokensAfter: report.tokensAfter,
    messagesBefore: report.messagesBefore,
    messagesAfter: report.messagesAfter,
    summaryMessageId: report.summaryMessageId,
    reason: report.reason,
    summaryUsage: {
      inputTokens: report.summaryUsage.inputTokens,
      outputTokens: report.summaryUsage.outputTokens,
      totalTokens: report.summaryUsage.inputTokens + report.summaryUsage.outputTokens,
      costUsd: report.summaryUsage.costUsd ?? 0,
    },
  };
}

const CHANGE_KINDS: Record<ContextChange["kind"], ContextChangeKind> = {
  clear: ContextChangeKind.CONTEXT_CHANGE_KIND_CLEAR,
  rewind: ContextChangeKind.CONTEXT_CHANGE_KIND_REWIND,
  undo_compaction: ContextChangeKind.CONTEXT_CHANGE_KIND_UNDO_COMPACTION,
};

export function toContextChangeProto(change: ContextChange): ContextChanged {
  return { kind: CHANGE_KINDS[change.kind], messagesAffected: change.messages, turnId: change.turnId, messagesAfter: change.messagesAfter };
}

export function toContextUsageProto(usage: ContextUsage): ContextUsageProto {
  return {
    tokens: usage.tokens,
    contextWindow: usage.contextWindow,
    contextWindowSource: usage.windowSource,
    fraction: usage.fraction,
    autoCompact: usage.autoCompact,
    autoCompactThreshold: usage.autoCompactThreshold,
    contextMessageCount: usage.contextMessages,
    transcriptMessageCount: usage.transcriptMessages,
    lastCompactTime: usage.lastCompactedAtMs > 0 ? new Date(usage.lastCompactedAtMs) : undefined,
    countMethod: usage.countMethod,
    note: usage.note,
  };
}

/** A message's kind and, when known, how it stands towards the model's context. */
export function withContextMarks(
  proto: Omit<MessageProto, "kind" | "inContext" | "contextStart" | "rewound">,
  message: Message,
  mark: MessageMark | undefined,
): MessageProto {
  return {
    ...proto,
    kind: message.kind === "summary" ? MessageKind.MESSAGE_KIND_SUMMARY : MessageKind.MESSAGE_KIND_UNSPECIFIED,
    inContext: mark?.inContext ?? false,
    contextStart: mark?.contextStart ?? false,
    rewound: mark?.rewound ?? false,
  };
}

/** The context fields of a request's SessionConfig; undefined when it sets none. */
export function toContextPatch(config: SessionConfigProto): Partial<ContextSettings> | undefined {
  if (config.autoCompact === undefined && config.autoCompactThreshold === undefined) return undefined;
  return checkContextSettings({
    ...(config.autoCompact === undefined ? {} : { autoCompact: config.autoCompact }),
    ...(config.autoCompactThreshold === undefined ? {} : { autoCompactThreshold: config.autoCompactThreshold }),
  });
}

/** The effective context settings, for a Session reply. */
export function toContextConfigProto(config: Readonly<SessionConfig>): Pick<SessionConfigProto, "autoCompact" | "autoCompactThreshold"> {
  const { autoCompact, autoCompactThreshold } = contextSettingsOf(config);
  return { autoCompact, autoCompactThreshold };
}
