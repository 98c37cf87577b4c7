import { invalidArgument } from "../errors.js";
import { RuleSet } from "../policy/rules.js";
import type { SessionConfigPatch } from "../session/types.js";
import { hasLoneSurrogate } from "../util/text.js";

/**
 * The largest values a client may send, so that no request can bloat every stored record, every
 * listing, or an error message that echoes it. Errors name the field and the limit, and never
 * echo an oversize value.
 */
export const INPUT_LIMITS = {
  idChars: 128,
  ownerChars: 128,
  labelCount: 64,
  labelKeyChars: 128,
  labelValueChars: 1024,
  systemPromptBytes: 256 * 1024,
  promptBytes: 1024 * 1024,
  scriptJsonBytes: 1024 * 1024,
  scriptPathChars: 1024,
  workspaceChars: 4096,
  providerChars: 64,
  modelNameChars: 256,
  baseUrlChars: 2048,
  apiKeyEnvChars: 128,
  apiKeyBytes: 8 * 1024,
  pageTokenChars: 1024,
  toolSelectionCount: 256,
  toolPatternChars: 128,
  /** A SKILL.md or subagent definition given as text. */
  definitionBytes: 256 * 1024,
  definitionNameChars: 64,
  /** Skills, and subagent definitions, one session may load. */
  definitionsPerSession: 64,
  mcpServerNameChars: 32,
  mcpArgCount: 64,
  mcpArgChars: 4096,
  mcpEnvCount: 64,
  mcpEnvValueBytes: 8 * 1024,
  mcpUrlChars: 2048,
  /** CompactSession's instructions for the summary. */
  compactInstructionsBytes: 16 * 1024,
} as const;

const ID = /^[A-Za-z0-9_-]+$/;
const OWNER = /^[^\u0000-\u001f\u007f-\u009f]+$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

const bytes = (value: string) => Buffer.byteLength(value, "utf8");

/** A session id: server-made ids are UUIDs; anything else is refused before any lookup. */
export function checkId(field: string, value: string): string {
  if (value === "") throw invalidArgument(`${field} is required`);
  if (value.length > INPUT_LIMITS.idChars || !ID.test(value)) {
    throw invalidArgument(`${field} must be 1 to ${INPUT_LIMITS.idChars} letters, digits, "-" or "_"`);
  }
  return value;
}

export function checkOwner(value: string): string {
  if (value === "") return value;
  if (value.length > INPUT_LIMITS.ownerChars || !OWNER.test(value) || hasLoneSurrogate(value)) {
    throw invalidArgument(`owner must be at most ${INPUT_LIMITS.ownerChars} characters of well-formed text, without control characters`);
  }
  return value;
}

export function checkText(field: string, value: string, maxBytes: number): string {
  const size = bytes(value);
  if (size > maxBytes) throw invalidArgument(`${field} is ${size} bytes; the limit is ${maxBytes}`);
  return value;
}

export function checkChars(field: string, value: string, maxChars: number): string {
  if (value.length > maxChars) throw invalidArgument(`${field} is ${value.length} characters; the limit is ${maxChars}`);
  if (value.includes("\u0000")) throw invalidArgument(`${field} must not contain NUL characters`);
  return value;
}

/** Label keys and values are free text, but bounded. */
export function checkLabels(labels: Record<string, string>): Record<string, string> {
  const entries = Object.entries(labels);
  const { labelCount, labelKeyChars, labelValueChars } = INPUT_LIMITS;
  if (entries.length > labelCount) throw invalidArgument(`at most ${labelCount} labels are allowed, got ${entries.length}`);
  for (const [key, value] of entries) {
    if (key === "" || key.length > labelKeyChars || !OWNER.test(key)) {
      throw invalidArgument(`label keys must be 1 to ${labelKeyChars} characters, without control characters`);
    }
    if (value.length > labelValueChars) {
      throw invalidArgument(`label "${key}" is ${value.length} characters; the limit is ${labelValueChars}`);
    }
    if (value.includes("\u0000")) throw invalidArgument(`label "${key}" must not contain NUL characters`);
  }
  return labels;
}

/** Longest a confirmation may be set to wait: a day. */
const MAX_CONFIRMATION_TIMEOUT_MS = 24 * 60 * 60 * 1000;

export function checkConfigPatch(patch: SessionConfigPatch): SessionConfigPatch {
  // Rules are compiled now, so a bad one is refused when it is set, naming the rule.
  if (patch.permissions) new RuleSet(patch.permissions);
  const timeoutMs = patch.confirmation?.timeoutMs;
  if (timeoutMs !== undefined && !(Number.isInteger(timeoutMs) && timeoutMs >= 0 && timeoutMs <= MAX_CONFIRMATION_TIMEOUT_MS)) {
    throw invalidArgument(`config.confirmation.timeout_ms must be 0 (wait for ever) to ${MAX_CONFIRMATION_TIMEOUT_MS}, got ${timeoutMs}`);
  }
  if (patch.systemPrompt !== undefined) checkText("config.system_prompt", patch.systemPrompt, INPUT_LIMITS.systemPromptBytes);
  if (patch.tools) checkToolSelection(patch.tools);
  const model = patch.model;
  if (model) {
    checkChars("config.model.provider", model.provider, INPUT_LIMITS.providerChars);
    checkChars("config.model.model", model.model, INPUT_LIMITS.modelNameChars);
    checkChars("config.model.base_url", model.baseUrl, INPUT_LIMITS.baseUrlChars);
    checkChars("config.model.script_path", model.scriptPath, INPUT_LIMITS.scriptPathChars);
    checkText("config.model.script_json", model.scriptJson, INPUT_LIMITS.scriptJsonBytes);
    if (model.apiKeyEnv !== "" && (model.apiKeyEnv.length > INPUT_LIMITS.apiKeyEnvChars || !ENV_NAME.test(model.apiKeyEnv))) {
      throw invalidArgument(`config.model.api_key_env must be an environment variable name of at most ${INPUT_LIMITS.apiKeyEnvChars} characters`);
    }
  }
  return patch;
}

/** Tool names or globs: the characters tool names have, and glob marks. */
const TOOL_PATTERN = /^[A-Za-z0-9_*?{},\[\]!-]+$/;

/** Whether `pattern` can select tools: a tool name or a glob of one, bounded. */
export function isToolPattern(pattern: string): boolean {
  return pattern.length <= INPUT_LIMITS.toolPatternChars && TOOL_PATTERN.test(pattern);
}

function checkToolSelection(tools: string[]): void {
  const { toolSelectionCount, toolPatternChars } = INPUT_LIMITS;
  if (tools.length > toolSelectionCount) throw invalidArgument(`config.tools.allow has ${tools.length} entries; the limit is ${toolSelectionCount}`);
  for (const pattern of tools) {
    if (!isToolPattern(pattern)) {
      throw invalidArgument(`config.tools.allow entries are tool names or globs of 1 to ${toolPatternChars} letters, digits, "_", "-" and glob marks`);
    }
  }
}

/** A key travels in an HTTP header: printable ASCII only, and bounded. */
export function checkApiKey(value: string): string {
  checkText("api_key", value, INPUT_LIMITS.apiKeyBytes);
  if (!/^[\x21-\x7e]*$/.test(value)) throw invalidArgument("api_key must be printable ASCII without spaces");
  return value;
}
