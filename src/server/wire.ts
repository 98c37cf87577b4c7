import {
  ChildPolicy,
  ConfirmationOutcome,
  Decision,
  TimeoutAction,
  Role,
  SessionState,
  StopReason,
  type AgentEvent,
  type Message as MessageProto,
  type ModelConfig,
  type OwnerUsage as OwnerUsageProto,
  type ConfirmationResolved as ConfirmationResolvedProto,
  type ConfirmationSettings as ConfirmationSettingsProto,
  type PendingConfirmation as PendingConfirmationProto,
  type PermissionPolicy,
  type Session as SessionProto,
  type SessionConfig as SessionConfigProto,
  type TurnResult as TurnResultProto,
  type Usage,
} from "../gen/agentd/v1/runtime.js";
import type { EventPayload, SessionEvent, StopReason as DomainStopReason, TurnResult } from "../events/types.js";
import type { ModelSettings } from "../llm/types.js";
import type { PendingConfirmation, Resolution } from "../policy/confirmations.js";
import type { ConfirmationSettings, Decision as DomainDecision, PermissionRules } from "../policy/types.js";
import { invalidArgument } from "../errors.js";
import type { SessionView } from "../session/session.js";
import type { OwnerUsage } from "../costs/owner-spending.js";
import type { ChildPolicy as DomainChildPolicy, Message, SessionConfig, SessionConfigPatch, SessionStateName, UsageTotals } from "../session/types.js";
import { checkChildPolicy, checkLimits, checkModelConfig } from "./validation.js";
import { statusName } from "./status.js";
import { toCompactionProto, toContextChangeProto, toContextConfigProto, toContextPatch, withContextMarks } from "./context-wire.js";
import type { MessageMark } from "../context/types.js";
import { checkContextWindow } from "../context/settings.js";

/**
 * Conversion between the core's types and the wire messages, in one place. Request values are
 * checked by ./validation.ts on the way in.
 */

const STATES: Record<SessionStateName, SessionState> = {
  idle: SessionState.SESSION_STATE_IDLE,
  running: SessionState.SESSION_STATE_RUNNING,
  paused: SessionState.SESSION_STATE_PAUSED,
  closed: SessionState.SESSION_STATE_CLOSED,
};

const STOP_REASONS: Record<DomainStopReason, StopReason> = {
  end_turn: StopReason.STOP_REASON_END_TURN,
  max_tool_rounds: StopReason.STOP_REASON_MAX_TOOL_ROUNDS,
  max_tokens: StopReason.STOP_REASON_MAX_TOKENS,
};

const ROLES: Record<Message["role"], Role> = {
  user: Role.ROLE_USER,
  assistant: Role.ROLE_ASSISTANT,
  tool: Role.ROLE_TOOL,
};

/** `treeUsage`: what the session and its descendants spent; `ownerUsage`: its owner's spending (GetSession gives both). */
export function toSessionProto(session: SessionView, treeUsage?: Readonly<UsageTotals>, ownerUsage?: OwnerUsage): SessionProto {
  return {
    treeUsage: treeUsage ? toUsageProto(treeUsage) : undefined,
    ownerUsage: ownerUsage ? toOwnerUsageProto(ownerUsage) : undefined,
    id: session.id,
    owner: session.owner,
    parentId: session.parentId ?? "",
    state: STATES[session.state],
    config: toConfigProto(session.config),
    createTime: new Date(session.createdAt),
    updateTime: new Date(session.updatedAt),
    usage: toUsageProto(session.usage),
    messageCount: session.messageCount,
    lastSequence: session.lastSequence,
    workspace: session.workspace,
    ephemeral: session.ephemeral,
    labels: { ...session.labels },
    turnActive: session.activeTurnId !== null,
    activeTurnId: session.activeTurnId ?? "",
    persistenceError: session.persistenceError,
    agent: session.agent,
  };
}

function toConfigProto(config: Readonly<SessionConfig>): SessionConfigProto {
  const model = config.model;
  return {
    model: model
      ? {
          provider: model.provider,
          model: model.model,
          baseUrl: model.baseUrl,
          apiKeyEnv: model.apiKeyEnv,
          temperature: model.temperature,
          maxOutputTokens: model.maxOutputTokens,
          scriptPath: model.scriptPath,
          scriptJson: model.scriptJson,
          contextWindow: model.contextWindow,
        }
      : undefined,
    systemPrompt: config.systemPrompt,
    limits: { maxToolRounds: config.limits.maxToolRounds, toolTimeoutMs: config.limits.toolTimeoutMs, budgetUsd: config.limits.budgetUsd ?? 0 },
    permissions: {
      deny: [...config.permissions.deny],
      ask: [...config.permissions.ask],
      allow: [...config.permissions.allow],
      defaultDecision: DECISIONS[config.permissions.defaultDecision],
    },
    confirmation: {
      enabled: config.confirmation.enabled,
      timeoutMs: config.confirmation.timeoutMs,
      timeoutAction: config.confirmation.timeoutAction === "approve" ? TimeoutAction.TIMEOUT_ACTION_APPROVE : TimeoutAction.TIMEOUT_ACTION_REJECT,
    },
    tools: { allow: [...(config.tools ?? [])] },
    ...toContextConfigProto(config),
  };
}

const DECISIONS: Record<DomainDecision, Decision> = {
  allow: Decision.DECISION_ALLOW,
  ask: Decision.DECISION_ASK,
  deny: Decision.DECISION_DENY,
};

const OUTCOMES: Record<Resolution["outcome"], ConfirmationOutcome> = {
  approved: ConfirmationOutcome.CONFIRMATION_OUTCOME_APPROVED,
  rejected: ConfirmationOutcome.CONFIRMATION_OUTCOME_REJECTED,
  timed_out: ConfirmationOutcome.CONFIRMATION_OUTCOME_TIMED_OUT,
  cancelled: ConfirmationOutcome.CONFIRMATION_OUTCOME_CANCELLED,
};

export function toPendingConfirmationProto(c: PendingConfirmation): PendingConfirmationProto {
  return {
    id: c.id,
    sessionId: c.sessionId,
    turnId: c.turnId,
    callId: c.callId,
    toolName: c.toolName,
    argumentsJson: c.argumentsJson,
    rule: c.rule ?? "",
    createTime: new Date(c.createdAtMs),
    deadline: c.deadlineMs > 0 ? new Date(c.deadlineMs) : undefined,
    readOnly: c.readOnly,
  };
}

export function toResolutionProto(confirmationId: string, callId: string, r: Resolution): ConfirmationResolvedProto {
  return {
    confirmationId,
    callId,
    outcome: OUTCOMES[r.outcome],
    runs: r.runs,
    resolvedBy: r.resolvedBy,
    reason: r.reason,
    editedArgumentsJson: r.editedArgumentsJson ?? "",
  };
}

export function toOwnerUsageProto(spent: OwnerUsage): OwnerUsageProto {
  return {
    owner: spent.owner,
    usage: toUsageProto(spent.usage),
    budgetUsd: spent.budgetUsd,
    period: spent.period,
    periodStart: spent.periodStart ?? undefined,
    periodEnd: spent.periodEnd ?? undefined,
  };
}

function toUsageProto(usage: Readonly<UsageTotals>): Usage {
  return { inputTokens: usage.inputTokens, outputTokens: usage.outputTokens, totalTokens: usage.inputTokens + usage.outputTokens, costUsd: usage.costUsd ?? 0 };
}

/** `mark`: how the message stands towards the model's context (GetMessages); absent, it is not marked. */
export function toMessageProto(message: Message, mark?: MessageMark): MessageProto {
  const proto = {
    id: message.id,
    role: ROLES[message.role],
    text: message.text,
    toolCalls: message.toolCalls.map((call) => ({ id: call.id, name: call.name, argumentsJson: call.argumentsJson })),
    toolResult: message.toolResult ? { ...message.toolResult } : undefined,
    createTime: new Date(message.createdAt),
    turnId: message.turnId,
  };
  return withContextMarks(proto, message, mark);
}

export function toTurnResultProto(result: TurnResult): TurnResultProto {
  return {
    turnId: result.turnId,
    text: result.text,
    stopReason: STOP_REASONS[result.stopReason],
    usage: toUsageProto(result.usage),
    toolRounds: result.toolRounds,
  };
}

export function toEventProto(event: SessionEvent): AgentEvent {
  return {
    sessionId: event.sessionId,
    sequence: event.sequence,
    time: new Date(event.timeMs),
    turnId: event.turnId,
    payload: toPayloadProto(event.payload),
  };
}

function toPayloadProto(payload: EventPayload): AgentEvent["payload"] {
  switch (payload.type) {
    case "turn_started":
      return { $case: "turnStarted", turnStarted: { prompt: payload.prompt } };
    case "text_delta":
      return { $case: "textDelta", textDelta: { text: payload.text } };
    case "tool_call":
      return { $case: "toolCall", toolCall: { ...payload.call } };
    case "tool_result":
      return { $case: "toolResult", toolResult: { ...payload.result } };
    case "usage":
      return {
        $case: "usage",
        usage: { step: toUsageProto(payload.step), turn: toUsageProto(payload.turn), session: toUsageProto(payload.session) },
      };
    case "turn_completed":
      return { $case: "turnCompleted", turnCompleted: { result: toTurnResultProto(payload.result) } };
    case "turn_failed":
      return { $case: "error", error: { code: statusName(payload.error.kind), message: payload.error.message } };
    case "turn_cancelled":
      return { $case: "cancelled", cancelled: { reason: payload.reason } };
    case "persistence_failed":
      return { $case: "persistenceFailed", persistenceFailed: { message: payload.message, attempts: payload.attempts } };
    case "state_changed":
      return { $case: "stateChanged", stateChanged: { state: STATES[payload.state] } };
    case "permission_denied":
      return { $case: "permissionDenied", permissionDenied: { callId: payload.callId, toolName: payload.toolName, rule: payload.rule ?? "" } };
    case "confirmation_required":
      return { $case: "confirmationRequired", confirmationRequired: { confirmation: toPendingConfirmationProto(payload.confirmation) } };
    case "call_in_doubt":
      return { $case: "callInDoubt", callInDoubt: { callId: payload.callId, toolName: payload.toolName } };
    case "confirmation_resolved":
      return { $case: "confirmationResolved", confirmationResolved: toResolutionProto(payload.confirmationId, payload.callId, payload.resolution) };
    case "context_compacted":
      return { $case: "contextCompacted", contextCompacted: toCompactionProto(payload.report) };
    case "context_changed":
      return { $case: "contextChanged", contextChanged: toContextChangeProto(payload.change) };
    case "subagent_event":
      return { $case: "subagent", subagent: { childSessionId: payload.childSessionId, agent: payload.agent, event: toEventProto(payload.event) } };
    default:
      return unreachable(payload);
  }
}

/** A request's SessionConfig as a patch: unset fields stay unset. */
export function toConfigPatch(config: SessionConfigProto | undefined): SessionConfigPatch {
  if (!config) return {};
  return {
    model: config.model ? toModelSettings(config.model) : undefined,
    systemPrompt: config.systemPrompt,
    limits: config.limits ? checkLimits(config.limits) : undefined,
    permissions: config.permissions ? toPermissionRules(config.permissions) : undefined,
    confirmation: config.confirmation ? toConfirmationPatch(config.confirmation) : undefined,
    // An empty selection is "every tool", as on the way out.
    tools: config.tools ? (config.tools.allow.length > 0 ? [...config.tools.allow] : null) : undefined,
    context: toContextPatch(config),
  };
}

function toPermissionRules(policy: PermissionPolicy): PermissionRules {
  const decision = (Object.entries(DECISIONS) as Array<[DomainDecision, Decision]>).find(([, value]) => value === policy.defaultDecision)?.[0];
  if (decision === undefined && policy.defaultDecision !== Decision.DECISION_UNSPECIFIED) {
    throw invalidArgument(`config.permissions.default_decision ${String(policy.defaultDecision)} is not known; use DECISION_ALLOW, DECISION_ASK or DECISION_DENY`);
  }
  return { deny: [...policy.deny], ask: [...policy.ask], allow: [...policy.allow], defaultDecision: decision ?? "ask" };
}

function toConfirmationPatch(settings: ConfirmationSettingsProto): Partial<ConfirmationSettings> {
  const action = settings.timeoutAction;
  if (![TimeoutAction.TIMEOUT_ACTION_UNSPECIFIED, TimeoutAction.TIMEOUT_ACTION_REJECT, TimeoutAction.TIMEOUT_ACTION_APPROVE].includes(action)) {
    throw invalidArgument(`config.confirmation.timeout_action ${String(action)} is not known; use TIMEOUT_ACTION_REJECT or TIMEOUT_ACTION_APPROVE`);
  }
  return {
    enabled: settings.enabled,
    timeoutMs: settings.timeoutMs,
    timeoutAction: action === TimeoutAction.TIMEOUT_ACTION_UNSPECIFIED ? undefined : action === TimeoutAction.TIMEOUT_ACTION_APPROVE ? "approve" : "reject",
  };
}

function toModelSettings(model: ModelConfig): ModelSettings {
  checkModelConfig(model);
  return {
    provider: model.provider.trim(),
    model: model.model.trim(),
    baseUrl: model.baseUrl,
    apiKeyEnv: model.apiKeyEnv,
    temperature: model.temperature,
    maxOutputTokens: model.maxOutputTokens,
    scriptPath: model.scriptPath,
    scriptJson: model.scriptJson,
    ...(checkContextWindow(model.contextWindow) === undefined ? {} : { contextWindow: model.contextWindow }),
  };
}

export function toChildPolicy(policy: ChildPolicy): DomainChildPolicy {
  checkChildPolicy(policy);
  return policy === ChildPolicy.CHILD_POLICY_ORPHAN ? "orphan" : "cascade";
}

/** Makes the compiler insist that every event type has a case above. */
function unreachable(payload: never): never {
  throw new Error(`no wire form for event ${JSON.stringify(payload)}`);
}
