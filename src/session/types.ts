import type { ContextSettings } from "../context/types.js";
import type { LlmToolCall, ModelSettings } from "../llm/types.js";
import type { ConfirmationSettings, PermissionRules } from "../policy/types.js";

export type SessionStateName = "idle" | "running" | "paused" | "closed";

export interface SessionLimits {
  maxToolRounds: number;
  /** 0 means no limit. */
  toolTimeoutMs: number;
  /** The most the session may spend, in US dollars; absent or 0: no budget. */
  budgetUsd?: number;
}

export interface SessionConfig {
  /** null until a model is configured (by the request, the parent or the server default). */
  model: ModelSettings | null;
  systemPrompt: string;
  limits: SessionLimits;
  permissions: PermissionRules;
  confirmation: ConfirmationSettings;
  /** Tool names or globs the model is offered; null for every tool. Ancestors' selections apply too. */
  tools: string[] | null;
  /** Automatic compaction; absent fields take the defaults (on, at 0.8 of the window). */
  context?: Partial<ContextSettings>;
}

/** A partial SessionConfig: what a request sets; everything else is kept or inherited. */
export interface SessionConfigPatch {
  model?: ModelSettings;
  systemPrompt?: string;
  limits?: Partial<SessionLimits>;
  /** Replaces the whole policy. */
  permissions?: PermissionRules;
  confirmation?: Partial<ConfirmationSettings>;
  /** Replaces the selection; null selects every tool. */
  tools?: string[] | null;
  /** Fields that are set change; the others are kept or inherited. */
  context?: Partial<ContextSettings>;
}

export interface ToolResult {
  callId: string;
  name: string;
  output: string;
  isError: boolean;
}

/** One entry of a session's conversation. */
export interface Message {
  id: string;
  role: "user" | "assistant" | "tool";
  text: string;
  toolCalls: LlmToolCall[];
  toolResult?: ToolResult;
  /** ISO 8601. */
  createdAt: string;
  turnId: string;
  /**
   * Absent for the conversation's own messages. "summary": a compaction's summary of the older
   * part (role "user"); the model sees it in place of that part, never where it was appended.
   */
  kind?: "summary";
}

export interface UsageTotals {
  inputTokens: number;
  outputTokens: number;
  /** What the tokens cost in US dollars at the server's prices; absent: 0 (records from before prices). */
  costUsd?: number;
}

export type ChildPolicy = "cascade" | "orphan";
