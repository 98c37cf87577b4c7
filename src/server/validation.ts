import { invalidArgument } from "../errors.js";
import { ChildPolicy, type ModelConfig, type SessionLimits } from "../gen/agentd/v1/runtime.js";

/** Checks of request values that the wire types cannot express; each names the field it is about. */

export function checkModelConfig(model: ModelConfig): void {
  if (model.provider.trim() === "") {
    throw invalidArgument('config.model.provider is required when config.model is set ("openai", "anthropic" or "scripted")');
  }
  if (model.temperature !== undefined && !(model.temperature >= 0 && model.temperature <= 2)) {
    throw invalidArgument(`config.model.temperature must be between 0 and 2, got ${model.temperature}`);
  }
  if (model.maxOutputTokens !== undefined && model.maxOutputTokens < 1) {
    throw invalidArgument(`config.model.max_output_tokens must be positive, got ${model.maxOutputTokens}`);
  }
}

export function checkLimits(limits: SessionLimits): { maxToolRounds?: number; toolTimeoutMs?: number; budgetUsd?: number } {
  const { maxToolRounds, toolTimeoutMs, budgetUsd } = limits;
  if (budgetUsd !== undefined && !(Number.isFinite(budgetUsd) && budgetUsd >= 0 && budgetUsd <= 1e9)) {
    throw invalidArgument(`config.limits.budget_usd must be 0 (no budget) or a positive number of US dollars up to 1e9, got ${budgetUsd}`);
  }
  if (maxToolRounds !== undefined && (maxToolRounds < 1 || maxToolRounds > 1000)) {
    throw invalidArgument(`config.limits.max_tool_rounds must be between 1 and 1000, got ${maxToolRounds}`);
  }
  if (toolTimeoutMs !== undefined && toolTimeoutMs < 0) {
    throw invalidArgument(`config.limits.tool_timeout_ms must be zero (no limit) or positive, got ${toolTimeoutMs}`);
  }
  return { maxToolRounds, toolTimeoutMs, budgetUsd };
}

export function checkChildPolicy(policy: ChildPolicy): void {
  const known = [ChildPolicy.CHILD_POLICY_UNSPECIFIED, ChildPolicy.CHILD_POLICY_CASCADE, ChildPolicy.CHILD_POLICY_ORPHAN];
  if (!known.includes(policy)) {
    throw invalidArgument(`child_policy ${String(policy)} is not known; use CHILD_POLICY_CASCADE or CHILD_POLICY_ORPHAN`);
  }
}
