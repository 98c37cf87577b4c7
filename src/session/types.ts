import type { LlmToolCall, ModelSettings } from "../llm/types.js";

export type SessionStateName = "idle" | "running" | "paused" | "closed";

export interface SessionLimits {
  maxToolRounds: number;
  /** 0 means no limit. */
  toolTimeoutMs: number;
}

export interface SessionConfig {
  /** null until a model is configured (by the request, the parent or the server default). */
  model: ModelSettings | null;
  systemPrompt: string;
  limits: SessionLimits;
}

/** A partial SessionConfig: what a request sets; everything else is kept or inherited. */
export interface SessionConfigPatch {
  model?: ModelSettings;
  systemPrompt?: string;
  limits?: Partial<SessionLimits>;
}

export interface StoredToolResult {
  callId: string;
  name: string;
  output: string;
  isError: boolean;
}

export interface StoredMessage {
  id: string;
  role: "user" | "assistant" | "tool";
  text: string;
  toolCalls: LlmToolCall[];
  toolResult?: StoredToolResult;
  /** ISO 8601. */
  createdAt: string;
  turnId: string;
}

export interface UsageTotals {
  inputTokens: number;
  outputTokens: number;
}

/** The durable form of a session: what the store writes and restores. */
export interface SessionRecord {
  version: 1;
  id: string;
  owner: string;
  parentId: string | null;
  /** A session that was running when written is restored idle: its turn did not survive. */
  state: SessionStateName;
  config: SessionConfig;
  workspace: string;
  ephemeral: boolean;
  labels: Record<string, string>;
  createdAt: string;
  updatedAt: string;
  usage: UsageTotals;
  lastSequence: number;
  messages: StoredMessage[];
}
