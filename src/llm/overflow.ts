import { AgentdError } from "../errors.js";

/**
 * Whether a model call failed because the conversation is longer than the model's context window,
 * which compacting the context can fix. Providers say so in words, not codes: OpenAI's
 * `context_length_exceeded` ("This model's maximum context length is ..."), vLLM's same sentence,
 * Anthropic's "prompt is too long", HTTP 413, and similar wordings of other OpenAI-compatible
 * servers. A scripted step fails as an overflow with an error message containing
 * "context_length_exceeded".
 */
const OVERFLOW_PATTERNS = [
  /context_length_exceeded/i,
  /maximum context length/i,
  /context (?:window|length) (?:is |was )?(?:exceeded|too (?:long|small))/i,
  /exceeds? (?:the )?(?:model'?s? )?(?:maximum )?context (?:window|length)/i,
  /prompt is too long/i,
  /too many (?:input )?tokens/i,
  /input (?:is )?too long/i,
  /reduce the length of the messages/i,
  /HTTP 413\b/,
];

export function isContextOverflow(error: unknown): boolean {
  if (!(error instanceof AgentdError)) return false;
  if (!["invalid_argument", "out_of_range", "resource_exhausted", "failed_precondition"].includes(error.kind)) return false;
  return OVERFLOW_PATTERNS.some((pattern) => pattern.test(error.message));
}
