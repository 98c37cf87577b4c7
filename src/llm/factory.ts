import { readFileSync, statSync } from "node:fs";
import { AgentdError, failedPrecondition, invalidArgument } from "../errors.js";
import { AnthropicClient } from "./anthropic.js";
import { OpenAiClient } from "./openai.js";
import { parseScript, ScriptedClient, type Script } from "./scripted.js";
import { checkApiKeyEnv, checkBaseUrl, endpointOf, mayLendKey, modelAccess, resolveScriptFile, type ModelAccess } from "./model-access.js";
import type { LlmClient, ModelProgress, ModelSettings } from "./types.js";

export interface LlmFactoryOptions {
  /** Where API keys are looked up; default process.env. */
  env?: NodeJS.ProcessEnv;
  /** SDK retries for connection errors, 408/409/429 and 5xx; default 2. */
  maxRetries?: number;
  /** Which endpoints, key variables and script files sessions may use; default: the official endpoints only. */
  access?: ModelAccess;
}

export const KNOWN_PROVIDERS = ["openai", "anthropic", "scripted"] as const;


/** A script file may be as large as a script sent inline. */
const MAX_SCRIPT_FILE_BYTES = 1024 * 1024;

/**
 * Inline scripts parsed lately, by their text: sessions of one test or bench share a script, and
 * parsing it again for every session and every turn is wasted work. Small scripts only.
 */
const SCRIPT_CACHE_ENTRIES = 64;
const SCRIPT_CACHE_MAX_CHARS = 64 * 1024;

/** Local OpenAI-compatible servers (vLLM, Ollama) need no key, but the SDK insists on one. */
const PLACEHOLDER_KEY = "not-needed";

/** Checks model settings and builds a client for them. Keys are read at create(), never stored here. */
export class LlmClientFactory {
  private readonly env: NodeJS.ProcessEnv;
  private readonly maxRetries: number;
  private readonly access: ModelAccess;
  private readonly parsedScripts = new Map<string, Script>();

  constructor(options: LlmFactoryOptions = {}) {
    this.env = options.env ?? process.env;
    this.maxRetries = options.maxRetries ?? 2;
    this.access = options.access ?? modelAccess({});
  }

  /**
   * Throws INVALID_ARGUMENT for settings that can never work, PERMISSION_DENIED for an endpoint, key
   * variable or script file the server does not allow. Keys are not checked: they may come per request.
   */
  validate(settings: ModelSettings): void {
    switch (settings.provider) {
      case "openai":
      case "anthropic":
        if (settings.model.trim() === "") {
          throw invalidArgument(
            `provider "${settings.provider}" needs a model name (such as ${settings.provider === "openai" ? '"gpt-4o-mini"' : '"claude-sonnet-4-5"'})`,
          );
        }
        if (settings.baseUrl !== "" && !isHttpUrl(settings.baseUrl)) {
          throw invalidArgument(`base URL "${settings.baseUrl}" is not an http(s) URL without credentials, query or fragment`);
        }
        checkBaseUrl(this.access, settings.baseUrl);
        checkApiKeyEnv(this.access, settings);
        return;
      case "scripted":
        this.loadScript(settings);
        return;
      default:
        throw invalidArgument(`unknown model provider "${settings.provider}"; known providers: ${KNOWN_PROVIDERS.join(", ")}`);
    }
  }

  /**
   * Builds a client. The key passed with the request wins over the environment; `progress` is where
   * a scripted model keeps its position (the session's). Throws INVALID_ARGUMENT for bad settings
   * and FAILED_PRECONDITION when no key is available. `agent` names the subagent definition a child
   * session runs: a scripted model plays that agent's steps of the script.
   */
  create(settings: ModelSettings, { apiKey, progress, agent = "" }: { apiKey?: string; progress?: ModelProgress; agent?: string } = {}): LlmClient {
    // The script file is read once, here.
    if (settings.provider === "scripted") return new ScriptedClient(scriptFor(this.loadScript(settings), agent), progress);
    this.validate(settings);
    const endpoint = endpointOf(settings);
    const keyEnv = endpoint.apiKeyEnv;
    // A server key goes only to the endpoint it is paired with; a key from the request goes where its sender chose.
    const lent = mayLendKey(this.access, endpoint) ? this.env[keyEnv] : undefined;
    let key = apiKey || lent || "";
    if (key === "" && settings.provider === "openai" && settings.baseUrl !== "") key = PLACEHOLDER_KEY;
    if (key === "") {
      throw failedPrecondition(
        lent === undefined && !mayLendKey(this.access, endpoint)
          ? `no API key for ${endpoint.baseUrl}: the server lends ${keyEnv} only to the endpoints it is paired with (models.keyedEndpoints); pass api_key with the request`
          : `no API key for provider "${settings.provider}": set ${keyEnv} in the server's environment or pass api_key with the request`,
      );
    }
    const options = {
      apiKey: key,
      model: settings.model.trim(),
      baseUrl: settings.baseUrl,
      maxRetries: this.maxRetries,
      temperature: settings.temperature,
      maxOutputTokens: settings.maxOutputTokens,
      apiKeyEnv: keyEnv,
    };
    return settings.provider === "openai" ? new OpenAiClient(options) : new AnthropicClient(options);
  }

  private parsedScript(text: string): Script {
    const cached = this.parsedScripts.get(text);
    if (cached) return cached;
    const script = parseScript(text, "from script_json");
    if (text.length <= SCRIPT_CACHE_MAX_CHARS) {
      if (this.parsedScripts.size >= SCRIPT_CACHE_ENTRIES) this.parsedScripts.delete(this.parsedScripts.keys().next().value!);
      this.parsedScripts.set(text, script);
    }
    return script;
  }

  private loadScript(settings: ModelSettings): Script {
    const hasPath = settings.scriptPath.trim() !== "";
    const hasJson = settings.scriptJson.trim() !== "";
    if (hasPath && hasJson) {
      throw invalidArgument("the scripted provider takes one script: set script_path or script_json, not both");
    }
    if (hasJson) return this.parsedScript(settings.scriptJson);
    if (!hasPath) {
      throw invalidArgument(
        "the scripted provider needs a script: set script_path (a JSON file on the server) or script_json (the script itself)",
      );
    }
    const file = resolveScriptFile(this.access, settings.scriptPath);
    let text: string;
    try {
      // Only a regular file of a sane size: a FIFO or a device would block the server on read.
      const stats = statSync(file);
      if (!stats.isFile()) throw invalidArgument(`scripted model: script ${settings.scriptPath} is not a regular file`);
      if (stats.size > MAX_SCRIPT_FILE_BYTES) {
        throw invalidArgument(`scripted model: script ${settings.scriptPath} is ${stats.size} bytes; the limit is ${MAX_SCRIPT_FILE_BYTES}`);
      }
      text = readFileSync(file, "utf8");
    } catch (error) {
      if (error instanceof AgentdError) throw error;
      const reason = (error as NodeJS.ErrnoException).code ?? "unreadable";
      throw invalidArgument(`scripted model: cannot read script file ${settings.scriptPath} (${reason})`);
    }
    return parseScript(text, settings.scriptPath);
  }
}

function isHttpUrl(value: string): boolean {
  if (!URL.canParse(value)) return false;
  const url = new URL(value);
  return (url.protocol === "http:" || url.protocol === "https:") && !url.username && !url.password && !url.search && !url.hash;
}

/** The steps a session plays: a subagent's own when the script has an `agents` section, else the script's. */
function scriptFor(script: Script, agent: string): Script {
  if (agent === "" || script.agents === undefined) return script;
  const own = script.agents[agent];
  if (!own) {
    const known = Object.keys(script.agents).join(", ") || "none";
    throw failedPrecondition(`scripted model: the script has no steps for subagent "${agent}" (agents: ${known}); add agents.${agent}`);
  }
  return own;
}
