import path from "node:path";
import { AgentdError, invalidArgument } from "../errors.js";
import { isInside, realpathOrNull } from "../util/paths.js";
import type { ModelSettings } from "./types.js";

/** The providers' public endpoints, always allowed. */
export const OFFICIAL_BASE_URLS = ["https://api.openai.com/v1", "https://api.anthropic.com"];

/** The key variables a session may name unless the operator says otherwise. */
export const DEFAULT_API_KEY_ENVS = ["OPENAI_API_KEY", "ANTHROPIC_API_KEY"];

/**
 * What a client may choose for a model: which endpoints its key and prompts go to, which of the
 * server's environment variables may be sent as a key, and which script files may be read. The
 * server's own default model is trusted: its endpoint, key variable and script are always allowed.
 */
export interface ModelAccess {
  allowedBaseUrls: string[];
  allowedApiKeyEnvs: string[];
  /** script_path names a file inside this folder; null allows none. */
  scriptsDir: string | null;
  /** Script files allowed wherever they are (the operator's default model's). */
  trustedScriptFiles: string[];
}

export function modelAccess(options: {
  allowedBaseUrls?: string[];
  allowedApiKeyEnvs?: string[];
  scriptsDir?: string | null;
  trusted?: ModelSettings | null;
}): ModelAccess {
  const trusted = options.trusted ?? null;
  return {
    allowedBaseUrls: [...OFFICIAL_BASE_URLS, ...(options.allowedBaseUrls ?? []), ...(trusted?.baseUrl ? [trusted.baseUrl] : [])].map(normalizeBaseUrl),
    allowedApiKeyEnvs: [...(options.allowedApiKeyEnvs ?? DEFAULT_API_KEY_ENVS), ...(trusted?.apiKeyEnv ? [trusted.apiKeyEnv] : [])],
    scriptsDir: options.scriptsDir ? path.resolve(options.scriptsDir) : null,
    trustedScriptFiles: trusted?.scriptPath ? [path.resolve(trusted.scriptPath)] : [],
  };
}

/** A URL in one spelling: lower-case scheme and host, no trailing slash. */
export function normalizeBaseUrl(url: string): string {
  if (!URL.canParse(url)) return url;
  const parsed = new URL(url);
  return `${parsed.protocol}//${parsed.host}${parsed.pathname.replace(/\/+$/, "")}`;
}

export function checkBaseUrl(access: ModelAccess, baseUrl: string): void {
  if (baseUrl === "" || access.allowedBaseUrls.includes(normalizeBaseUrl(baseUrl))) return;
  throw new AgentdError(
    "permission_denied",
    `base URL ${baseUrl} is not one this server sends requests to; the operator can allow it with models.allowedBaseUrls`,
  );
}

export function checkApiKeyEnv(access: ModelAccess, apiKeyEnv: string): void {
  if (apiKeyEnv === "" || access.allowedApiKeyEnvs.includes(apiKeyEnv)) return;
  throw new AgentdError(
    "permission_denied",
    `api_key_env ${apiKeyEnv} is not a variable this server lends to sessions (allowed: ${access.allowedApiKeyEnvs.join(", ")}); the operator can allow it with models.allowedApiKeyEnvs`,
  );
}

/**
 * The real path of an allowed script file. Relative paths are taken from the scripts folder. The
 * messages say where scripts may live, and whether a file inside that folder exists; never whether
 * one outside does, nor what a file holds.
 */
export function resolveScriptFile(access: ModelAccess, scriptPath: string): string {
  const { scriptsDir } = access;
  const target = path.resolve(scriptsDir ?? "/", scriptPath);
  const real = realpathOrNull(target);
  if (real !== null && access.trustedScriptFiles.some((file) => realpathOrNull(file) === real)) return real;
  const denied = new AgentdError(
    "permission_denied",
    scriptsDir === null
      ? "scripted model: this server reads no script files; send the script inline with script_json"
      : `scripted model: script_path must name a file inside the server's scripts folder ${scriptsDir} (or send script_json)`,
  );
  const dir = scriptsDir === null ? null : realpathOrNull(scriptsDir);
  if (scriptsDir === null || dir === null) throw denied;
  if (real === null) {
    if (isInside(target, scriptsDir)) throw invalidArgument(`scripted model: script ${scriptPath} not found in the scripts folder ${scriptsDir}`);
    throw denied;
  }
  if (!isInside(real, dir)) throw denied;
  return real;
}
