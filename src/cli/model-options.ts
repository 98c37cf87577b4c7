import type { ModelSettings } from "../llm/types.js";

/** Flags that describe a model, shared by `serve` (server default) and `chat` (per session). */
export const modelOptions = {
  provider: { type: "string" },
  model: { type: "string" },
  "base-url": { type: "string" },
  "api-key-env": { type: "string" },
  script: { type: "string" },
} as const;

export interface ModelFlagValues {
  provider?: string;
  model?: string;
  "base-url"?: string;
  "api-key-env"?: string;
  script?: string;
}

/** A model from flags, or null when no provider was given. `--script` alone means the scripted provider. */
export function modelFromOptions(values: ModelFlagValues): ModelSettings | null {
  const provider = values.provider ?? (values.script ? "scripted" : undefined);
  if (!provider) return null;
  return {
    provider,
    model: values.model ?? (provider === "scripted" ? "script" : ""),
    baseUrl: values["base-url"] ?? "",
    apiKeyEnv: values["api-key-env"] ?? "",
    scriptPath: values.script ?? "",
    scriptJson: "",
  };
}
