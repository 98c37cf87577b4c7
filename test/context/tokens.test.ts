import { describe, expect, it } from "vitest";
import { encodingFor, ESTIMATE, MESSAGE_OVERHEAD, messageTokens, tokenCounterFor } from "../../src/context/tokens.js";
import { contextWindowOf } from "../../src/context/windows.js";
import type { ModelSettings } from "../../src/llm/types.js";
import { assistant, user } from "./messages.js";

const model = (provider: string, name: string, contextWindow?: number): ModelSettings => ({
  provider,
  model: name,
  baseUrl: "",
  apiKeyEnv: "",
  scriptPath: "",
  scriptJson: "",
  ...(contextWindow === undefined ? {} : { contextWindow }),
});

describe("counting tokens", () => {
  it("uses OpenAI's encodings for OpenAI's models and the estimate for the rest", () => {
    expect(encodingFor(model("openai", "gpt-4o-mini"))).toBe("o200k_base");
    expect(encodingFor(model("openai", "gpt-5"))).toBe("o200k_base");
    expect(encodingFor(model("openai", "o3-mini"))).toBe("o200k_base");
    expect(encodingFor(model("openai", "gpt-4-turbo"))).toBe("cl100k_base");
    expect(encodingFor(model("openai", "llama3.1"))).toBeNull();
    expect(encodingFor(model("anthropic", "claude-sonnet-4-5"))).toBeNull();
    expect(encodingFor(null)).toBeNull();
  });

  it("counts with the real tokenizer, special tokens included, and samples very long texts", async () => {
    const counter = await tokenCounterFor(model("openai", "gpt-4o"));
    expect(counter.method).toBe("o200k_base");
    expect(counter.count("hello world")).toBe(2);
    expect(counter.count("<|endoftext|>")).toBeGreaterThan(1);
    const long = "The quick brown fox jumps over the lazy dog. ".repeat(5000);
    const exactish = counter.count(long.slice(0, 20_000)) * (long.length / 20_000);
    expect(Math.abs(counter.count(long) - exactish) / exactish).toBeLessThan(0.05);
    expect(await tokenCounterFor(model("openai", "gpt-4o-mini"))).toBe(counter);
  });

  it("estimates one token per 4 characters, plus each message's framing", async () => {
    expect(await tokenCounterFor(model("scripted", "x"))).toBe(ESTIMATE);
    expect(ESTIMATE.count("12345678")).toBe(2);
    expect(messageTokens(user("12345678"), ESTIMATE)).toBe(2 + MESSAGE_OVERHEAD);
    const withCall = assistant("", "t", ["c1"]);
    expect(messageTokens(withCall, ESTIMATE)).toBe(MESSAGE_OVERHEAD + ESTIMATE.count("read_file") + ESTIMATE.count('{"path":"a.txt"}') + MESSAGE_OVERHEAD);
  });
});

describe("context windows", () => {
  it("come from the configuration first, then from the table by the longest prefix", () => {
    expect(contextWindowOf(model("openai", "gpt-4o-mini", 5000))).toEqual({ tokens: 5000, source: "config" });
    expect(contextWindowOf(model("openai", "gpt-4o-2024-08-06"))).toEqual({ tokens: 128_000, source: "known_model" });
    expect(contextWindowOf(model("openai", "gpt-4-32k"))).toEqual({ tokens: 32_768, source: "known_model" });
    expect(contextWindowOf(model("openai", "gpt-4"))).toEqual({ tokens: 8_192, source: "known_model" });
    expect(contextWindowOf(model("anthropic", "claude-sonnet-4-5"))).toEqual({ tokens: 200_000, source: "known_model" });
    expect(contextWindowOf(model("openai", "llama3.1"))).toEqual({ tokens: 0, source: "" });
    expect(contextWindowOf(model("scripted", "script"))).toEqual({ tokens: 0, source: "" });
    expect(contextWindowOf(null)).toEqual({ tokens: 0, source: "" });
  });
});
