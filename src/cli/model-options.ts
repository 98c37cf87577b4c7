import { readFileSync } from "node:fs";
import type { ModelConfig } from "../gen/agentd/v1/runtime.js";
import { parseScript } from "../llm/scripted.js";
import type { ModelSettings } from "../llm/types.js";

/**
 * Flags that describe a model, shared by `serve` (server default), `chat` (per session, new or
 * reconfigured) and `sessions create`.
 */
export const modelOptions = {
  provider: { type: "string" },
  model: { type: "string" },
  "base-url": { type: "string" },
  "api-key-env": { type: "string" },
  script: { type: "string" },
  "context-window": { type: "string" },
} as const;

/** The help lines of the model flags, for the commands that take them. */
export const MODEL_HELP = `  --provider P      openai (any OpenAI-compatible endpoint), anthropic or scripted
  --model M         the provider's model name, such as gpt-4o-mini or claude-sonnet-4-5
  --base-url URL    another endpoint of the provider (vLLM, Ollama, ...; the server must allow it)
  --api-key-env VAR the server's environment variable that holds the API key
  --script FILE     the scripted provider with this script (read here, sent inline)
  --context-window N
                    the model's context window in tokens (default: known models' own)`;

export interface ModelFlagValues {
  provider?: string;
  model?: string;
  "base-url"?: string;
  "api-key-env"?: string;
  script?: string;
  "context-window"?: string;
}

/**
 * A model from flags, or null when none of them was given. `--script` alone means the scripted
 * provider; any other model flag without `--provider` (or `--script`) is an error rather than
 * being ignored.
 */
export function modelFromOptions(values: ModelFlagValues): ModelSettings | null {
  const provider = values.provider ?? (values.script ? "scripted" : undefined);
  if (!provider) {
    const orphan = (["model", "base-url", "api-key-env", "context-window"] as const).find((flag) => values[flag] !== undefined);
    if (orphan) throw new Error(`--${orphan} needs --provider (or --script for the scripted model)`);
    return null;
  }
  const contextWindow = contextWindowFlag(values["context-window"]);
  return {
    provider,
    model: values.model ?? (provider === "scripted" ? "script" : ""),
    baseUrl: values["base-url"] ?? "",
    apiKeyEnv: values["api-key-env"] ?? "",
    scriptPath: values.script ?? "",
    scriptJson: "",
    ...(contextWindow === undefined ? {} : { contextWindow }),
  };
}

/**
 * The model a client sends for a session, from flags; undefined when no model flag was given. A
 * script is read here and sent inline, so the server needs no access to this machine's files; it is
 * checked first, so a mistake names the file rather than "script_json".
 */
export function modelConfigFromFlags(values: ModelFlagValues): Partial<ModelConfig> | undefined {
  const model = modelFromOptions(values);
  if (!model) return undefined;
  let scriptJson = "";
  if (model.scriptPath) {
    try {
      scriptJson = readFileSync(model.scriptPath, "utf8");
    } catch (error) {
      throw new Error(`cannot read script file ${model.scriptPath} (${(error as NodeJS.ErrnoException).code ?? "unreadable"})`);
    }
    try {
      parseScript(scriptJson, model.scriptPath);
    } catch (error) {
      throw new Error((error as Error).message);
    }
  }
  return { ...model, scriptPath: "", scriptJson };
}

function contextWindowFlag(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const parsed = Number(value);
  if (value.trim() === "" || !Number.isSafeInteger(parsed) || parsed <= 0) {
    throw new Error(`--context-window must be a positive number of tokens, got "${value}"`);
  }
  return parsed;
}
