import {
  ChildPolicy,
  Role,
  type Message,
  type ModelConfig,
  type Session as SessionProto,
  type SessionConfig as SessionConfigProto,
  type SessionLimits as SessionLimitsProto,
} from "../gen/agentd/v1/runtime.js";
import path from "node:path";
import { invalidArgument } from "../errors.js";
import type { ModelSettings } from "../llm/types.js";
import type { ChildPolicy as DomainChildPolicy } from "../session/manager.js";
import { toProtoState, type Session } from "../session/session.js";
import type { SessionConfig, SessionConfigPatch, StoredMessage } from "../session/types.js";

/** Converts between the wire messages and the domain; validation of request values happens here. */

export function toSessionProto(session: Session): SessionProto {
  return {
    id: session.id,
    owner: session.owner,
    parentId: session.parentId ?? "",
    state: toProtoState(session.state),
    config: toConfigProto(session.config),
    createTime: new Date(session.createdAt),
    updateTime: new Date(session.updatedAt),
    usage: {
      inputTokens: session.usage.inputTokens,
      outputTokens: session.usage.outputTokens,
      totalTokens: session.usage.inputTokens + session.usage.outputTokens,
    },
    messageCount: session.messageCount,
    lastSequence: session.lastSequence,
    workspace: session.workspace,
    ephemeral: session.ephemeral,
    labels: { ...session.labels },
    turnActive: session.activeTurnId !== null,
    activeTurnId: session.activeTurnId ?? "",
    persistenceError: session.persistenceError,
  };
}

function toConfigProto(config: SessionConfig): SessionConfigProto {
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
        }
      : undefined,
    systemPrompt: config.systemPrompt,
    limits: { maxToolRounds: config.limits.maxToolRounds, toolTimeoutMs: config.limits.toolTimeoutMs },
  };
}

export function toMessageProto(message: StoredMessage): Message {
  return {
    id: message.id,
    role: ROLES[message.role],
    text: message.text,
    toolCalls: message.toolCalls.map((call) => ({ id: call.id, name: call.name, argumentsJson: call.argumentsJson })),
    toolResult: message.toolResult ? { ...message.toolResult } : undefined,
    createTime: new Date(message.createdAt),
    turnId: message.turnId,
  };
}

const ROLES: Record<StoredMessage["role"], Role> = {
  user: Role.ROLE_USER,
  assistant: Role.ROLE_ASSISTANT,
  tool: Role.ROLE_TOOL,
};

/** A request's SessionConfig as a patch: unset fields stay unset. */
export function toConfigPatch(config: SessionConfigProto | undefined): SessionConfigPatch {
  if (!config) return {};
  return {
    model: config.model ? toModelSettings(config.model) : undefined,
    systemPrompt: config.systemPrompt,
    limits: config.limits ? toLimitsPatch(config.limits) : undefined,
  };
}

function toModelSettings(model: ModelConfig): ModelSettings {
  if (model.provider.trim() === "") {
    throw invalidArgument('config.model.provider is required when config.model is set ("openai", "anthropic" or "scripted")');
  }
  if (model.temperature !== undefined && !(model.temperature >= 0 && model.temperature <= 2)) {
    throw invalidArgument(`config.model.temperature must be between 0 and 2, got ${model.temperature}`);
  }
  if (model.maxOutputTokens !== undefined && model.maxOutputTokens < 1) {
    throw invalidArgument(`config.model.max_output_tokens must be positive, got ${model.maxOutputTokens}`);
  }
  return {
    provider: model.provider.trim(),
    model: model.model.trim(),
    baseUrl: model.baseUrl,
    apiKeyEnv: model.apiKeyEnv,
    temperature: model.temperature,
    maxOutputTokens: model.maxOutputTokens,
    scriptPath: model.scriptPath,
    scriptJson: model.scriptJson,
  };
}

function toLimitsPatch(limits: SessionLimitsProto): SessionConfigPatch["limits"] {
  const { maxToolRounds, toolTimeoutMs } = limits;
  if (maxToolRounds !== undefined && (maxToolRounds < 1 || maxToolRounds > 1000)) {
    throw invalidArgument(`config.limits.max_tool_rounds must be between 1 and 1000, got ${maxToolRounds}`);
  }
  if (toolTimeoutMs !== undefined && toolTimeoutMs < 0) {
    throw invalidArgument(`config.limits.tool_timeout_ms must be zero (no limit) or positive, got ${toolTimeoutMs}`);
  }
  return { maxToolRounds, toolTimeoutMs };
}

export function toChildPolicy(policy: ChildPolicy): DomainChildPolicy {
  switch (policy) {
    case ChildPolicy.CHILD_POLICY_ORPHAN:
      return "orphan";
    case ChildPolicy.CHILD_POLICY_UNSPECIFIED:
    case ChildPolicy.CHILD_POLICY_CASCADE:
      return "cascade";
    default:
      throw invalidArgument(`child_policy ${String(policy)} is not known; use CHILD_POLICY_CASCADE or CHILD_POLICY_ORPHAN`);
  }
}

/** A workspace named by a client must be absolute: a relative one would depend on the server's cwd. */
export function checkWorkspace(workspace: string): string {
  if (workspace !== "" && !path.isAbsolute(workspace)) {
    throw invalidArgument(`workspace must be an absolute path, got "${workspace}"`);
  }
  return workspace;
}

/** Label keys and values are free text, but bounded so a client cannot bloat every stored record. */
export function checkLabels(labels: Record<string, string>): Record<string, string> {
  const entries = Object.entries(labels);
  if (entries.length > 64) throw invalidArgument(`at most 64 labels are allowed, got ${entries.length}`);
  for (const [key, value] of entries) {
    if (key === "" || key.length > 128) throw invalidArgument(`label keys must be 1 to 128 characters, got "${key}"`);
    if (value.length > 1024) throw invalidArgument(`label "${key}" is longer than 1024 characters`);
  }
  return labels;
}
