import path from "node:path";
import { AgentdError, invalidArgument } from "../errors.js";
import { isInside, realpathOrNull } from "../util/paths.js";
import type { ModelSettings } from "./types.js";

/** Each provider's public endpoint and the server variable that holds its key. */
export const OFFICIAL_ENDPOINTS: Record<string, { baseUrl: string; apiKeyEnv: string }> = {
  openai: { baseUrl: "https://api.openai.com/v1", apiKeyEnv: "OPENAI_API_KEY" },
  anthropic: { baseUrl: "https://api.anthropic.com", apiKeyEnv: "ANTHROPIC_API_KEY" },
};

/** The providers' public endpoints, always allowed. */
export const OFFICIAL_BASE_URLS = Object.values(OFFICIAL_ENDPOINTS).map((e) => e.baseUrl);

/** The key variables a session may name unless the operator says otherwise. */
export const DEFAULT_API_KEY_ENVS = Object.values(OFFICIAL_ENDPOINTS).map((e) => e.apiKeyEnv);

/** An endpoint that may be sent the key held in one of the server's variables. */
export interface KeyedEndpoint {
  baseUrl: string;
  apiKeyEnv: string;
}

/**
 * What a client may choose for a model: which endpoints its prompts go to, which of the server's
 * environment variables may be sent as a key and to which endpoint, and which script files may be
 * read. A server key goes only to an endpoint it is paired with: each provider's key to that
 * provider's official endpoint, the default model's key to the default model's endpoint, and the
 * operator's `models.keyedEndpoints`. The server's own default model is trusted.
 */
export interface ModelAccess {
  allowedBaseUrls: string[];
  allowedApiKeyEnvs: string[];
  /** Normalised endpoint and variable pairs. */
  keyedEndpoints: KeyedEndpoint[];
  /** script_path names a file inside this folder; null allows none. */
  scriptsDir: string | null;
  /** Script files allowed wherever they are (the operator's default model's). */
  trustedScriptFiles: string[];
}

export function modelAccess(options: {
  allowedBaseUrls?: string[];
  allowedApiKeyEnvs?: string[];
  keyedEndpoints?: KeyedEndpoint[];
  scriptsDir?: string | null;
  trusted?: ModelSettings | null;
}): ModelAccess {
  const trusted = options.trusted ?? null;
  const official = Object.values(OFFICIAL_ENDPOINTS);
  const trustedPair = trusted && OFFICIAL_ENDPOINTS[trusted.provider] ? [endpointOf(trusted)] : [];
  const keyed = [...official, ...trustedPair, ...(options.keyedEndpoints ?? [])];
  return {
    allowedBaseUrls: [...OFFICIAL_BASE_URLS, ...(options.allowedBaseUrls ?? []), ...keyed.map((e) => e.baseUrl)].map(normalizeBaseUrl),
    allowedApiKeyEnvs: [...(options.allowedApiKeyEnvs ?? DEFAULT_API_KEY_ENVS), ...trustedPair.map((e) => e.apiKeyEnv)],
    keyedEndpoints: keyed.map((e) => ({ baseUrl: normalizeBaseUrl(e.baseUrl), apiKeyEnv: e.apiKeyEnv })),
    scriptsDir: options.scriptsDir ? path.resolve(options.scriptsDir) : null,
    trustedScriptFiles: trusted?.scriptPath ? [path.resolve(trusted.scriptPath)] : [],
  };
}

/** A URL in one spelling: lower-case scheme and host, no trailing slash. */
export function normalizeBaseUrl(url: string): string {
  if (!URL.canParse(url)) return url;
  const parsed = new URL(url);
  if (parsed.username || parsed.password || parsed.search || parsed.hash) return url;
  return `${parsed.protocol}//${parsed.host}${parsed.pathname.replace(/\/+$/, "")}`;
}

export function checkBaseUrl(access: ModelAccess, baseUrl: string): void {
  if (baseUrl === "" || access.allowedBaseUrls.includes(normalizeBaseUrl(baseUrl))) return;
  throw new AgentdError(
    "permission_denied",
    `base URL ${baseUrl} is not one this server sends requests to; the operator can allow it with models.allowedBaseUrls`,
  );
}

/** The endpoint a model's requests go to and the server variable its key would come from. */
export function endpointOf(settings: Pick<ModelSettings, "provider" | "baseUrl" | "apiKeyEnv">): KeyedEndpoint {
  const official = OFFICIAL_ENDPOINTS[settings.provider];
  return { baseUrl: settings.baseUrl || official?.baseUrl || "", apiKeyEnv: settings.apiKeyEnv || official?.apiKeyEnv || "" };
}

/** Whether the server may send the key in `apiKeyEnv` to `baseUrl`. */
export function mayLendKey(access: ModelAccess, endpoint: KeyedEndpoint): boolean {
  const baseUrl = normalizeBaseUrl(endpoint.baseUrl);
  return access.keyedEndpoints.some((e) => e.baseUrl === baseUrl && e.apiKeyEnv === endpoint.apiKeyEnv);
}

/**
 * A variable the session names must be one the server lends, and lent to this endpoint: a key must
 * never reach an endpoint its owner did not choose for it (OpenAI's key sent to a local server, say).
 */
export function checkApiKeyEnv(access: ModelAccess, settings: Pick<ModelSettings, "provider" | "baseUrl" | "apiKeyEnv">): void {
  const { apiKeyEnv } = settings;
  if (apiKeyEnv !== "" && access.allowedApiKeyEnvs.includes(apiKeyEnv) && !mayLendKey(access, endpointOf(settings))) {
    throw new AgentdError(
      "permission_denied",
      `api_key_env ${apiKeyEnv} is not lent to ${endpointOf(settings).baseUrl}; the operator can pair them in models.keyedEndpoints, or pass api_key with the request`,
    );
  }
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
