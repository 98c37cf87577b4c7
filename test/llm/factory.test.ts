import { turnContext } from "../helpers/turn-context.js";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { AgentdError } from "../../src/errors.js";
import { AnthropicClient } from "../../src/llm/anthropic.js";
import { LlmClientFactory } from "../../src/llm/factory.js";
import { modelAccess } from "../../src/llm/model-access.js";
import { OpenAiClient } from "../../src/llm/openai.js";
import { ScriptedClient } from "../../src/llm/scripted.js";
import type { ModelSettings } from "../../src/llm/types.js";
import { collect } from "./fake-server.js";

const settings = (overrides: Partial<ModelSettings>): ModelSettings => ({
  provider: "openai",
  model: "gpt-test",
  baseUrl: "",
  apiKeyEnv: "",
  scriptPath: "",
  scriptJson: "",
  ...overrides,
});

/** Runs `fn` and returns the AgentdError it throws. */
function failure(fn: () => unknown): AgentdError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(AgentdError);
    return error as AgentdError;
  }
  throw new Error("expected an AgentdError");
}

describe("LlmClientFactory", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "agentd-factory-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const access = modelAccess({
    scriptsDir: dir,
    allowedBaseUrls: ["http://127.0.0.1:11434/v1/", "http://127.0.0.1:1"],
    allowedApiKeyEnvs: ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "MY_KEY", "CUSTOM"],
    keyedEndpoints: [
      { baseUrl: "https://api.anthropic.com", apiKeyEnv: "MY_KEY" },
      { baseUrl: "https://api.openai.com/v1", apiKeyEnv: "CUSTOM" },
    ],
  });
  const factory = new LlmClientFactory({ env: {}, access });

  describe("validate", () => {
    it("rejects an unknown provider, listing the known ones", () => {
      const error = failure(() => factory.validate(settings({ provider: "gemini" })));
      expect(error.kind).toBe("invalid_argument");
      expect(error.message).toContain('unknown model provider "gemini"');
      expect(error.message).toContain("openai, anthropic, scripted");
    });

    it("requires a model name for openai and anthropic", () => {
      for (const provider of ["openai", "anthropic"]) {
        const error = failure(() => factory.validate(settings({ provider, model: " " })));
        expect(error.kind).toBe("invalid_argument");
        expect(error.message).toContain(`provider "${provider}" needs a model name`);
      }
    });

    it("rejects a base URL that is not http(s)", () => {
      const error = failure(() => factory.validate(settings({ baseUrl: "ftp://example.com" })));
      expect(error.kind).toBe("invalid_argument");
    });

    it("does not require an API key", () => {
      expect(() => factory.validate(settings({}))).not.toThrow();
      expect(() => factory.validate(settings({ provider: "anthropic", model: "claude-test" }))).not.toThrow();
    });

    it("requires a script for the scripted provider", () => {
      const error = failure(() => factory.validate(settings({ provider: "scripted", model: "" })));
      expect(error.kind).toBe("invalid_argument");
      expect(error.message).toContain("set script_path");
      expect(error.message).toContain("script_json");
    });

    it("rejects both scriptPath and scriptJson", () => {
      const error = failure(() =>
        factory.validate(settings({ provider: "scripted", scriptPath: "a.json", scriptJson: '{"steps":[{}]}' })),
      );
      expect(error.message).toContain("not both");
    });

    it("reports a script missing from the scripts folder", () => {
      const error = failure(() => factory.validate(settings({ provider: "scripted", scriptPath: "missing.json" })));
      expect(error.kind).toBe("invalid_argument");
      expect(error.message).toBe(`scripted model: script missing.json not found in the scripts folder ${dir}`);
    });

    it("reads no script outside the scripts folder, and says nothing of what is there", () => {
      for (const scriptPath of ["/etc/passwd", "../../../../etc/passwd", "/no/such/file.json", `${dir}/../outside.json`]) {
        const error = failure(() => factory.validate(settings({ provider: "scripted", scriptPath })));
        expect(error.kind).toBe("permission_denied");
        expect(error.message).toBe(`scripted model: script_path must name a file inside the server's scripts folder ${dir} (or send script_json)`);
      }
      // Nor through a symlink inside the folder.
      symlinkSync("/etc/passwd", path.join(dir, "link.json"));
      expect(failure(() => factory.validate(settings({ provider: "scripted", scriptPath: "link.json" }))).kind).toBe("permission_denied");
      // A file that is not JSON is reported by position, never quoted.
      writeFileSync(path.join(dir, "secret.json"), "root:x:0:0:root:/root:/bin/bash");
      const error = failure(() => factory.validate(settings({ provider: "scripted", scriptPath: "secret.json" })));
      expect(error.message).toBe("scripted model: script secret.json is not valid JSON");
    });

    it("reads only regular files of a sane size, so a FIFO cannot block the server", () => {
      execFileSync("mkfifo", [path.join(dir, "pipe.json")]);
      const fifo = failure(() => factory.validate(settings({ provider: "scripted", scriptPath: "pipe.json" })));
      expect(fifo.message).toBe("scripted model: script pipe.json is not a regular file");
      writeFileSync(path.join(dir, "big.json"), " ".repeat(1024 * 1024 + 1));
      const big = failure(() => factory.validate(settings({ provider: "scripted", scriptPath: "big.json" })));
      expect(big.message).toBe("scripted model: script big.json is 1048577 bytes; the limit is 1048576");
    });

    it("reads the operator's default script wherever it is", () => {
      const elsewhere = mkdtempSync(path.join(tmpdir(), "agentd-default-script-"));
      const file = path.join(elsewhere, "default.json");
      writeFileSync(file, JSON.stringify({ steps: [{ text: "default" }] }));
      const trusted = settings({ provider: "scripted", scriptPath: file });
      const withDefault = new LlmClientFactory({ env: {}, access: modelAccess({ scriptsDir: dir, trusted }) });
      expect(() => withDefault.validate(trusted)).not.toThrow();
      expect(failure(() => factory.validate(trusted)).kind).toBe("permission_denied");
      rmSync(elsewhere, { recursive: true, force: true });
    });

    it("sends requests and keys only to endpoints and variables the operator allowed", () => {
      const url = failure(() => factory.validate(settings({ baseUrl: "http://attacker.example/v1" })));
      expect(url.kind).toBe("permission_denied");
      expect(url.message).toContain("models.allowedBaseUrls");
      const env = failure(() => factory.validate(settings({ apiKeyEnv: "AWS_SECRET_ACCESS_KEY" })));
      expect(env.kind).toBe("permission_denied");
      expect(env.message).toContain("models.allowedApiKeyEnvs");
      // Official endpoints and the allowed ones pass, in any spelling of the same URL.
      for (const baseUrl of ["https://api.openai.com/v1", "https://API.openai.com/v1/", "http://127.0.0.1:11434/v1"]) {
        expect(() => factory.validate(settings({ baseUrl }))).not.toThrow();
      }
      expect(() => factory.create(settings({ baseUrl: "http://attacker.example/v1" }), { apiKey: "sk-secret" })).toThrow(AgentdError);
      // A server key goes only to the endpoint it is paired with, even among allowed ones.
      const elsewhere = failure(() => factory.validate(settings({ baseUrl: "http://127.0.0.1:1", apiKeyEnv: "OPENAI_API_KEY" })));
      expect(elsewhere.kind).toBe("permission_denied");
      expect(elsewhere.message).toContain("models.keyedEndpoints");
      const crossed = failure(() => factory.validate(settings({ apiKeyEnv: "ANTHROPIC_API_KEY" })));
      expect(crossed.message).toBe(
        "api_key_env ANTHROPIC_API_KEY is not lent to https://api.openai.com/v1; the operator can pair them in models.keyedEndpoints, or pass api_key with the request",
      );
      // URLs with credentials, a query or a fragment are refused outright.
      for (const baseUrl of ["http://user:pw@127.0.0.1:1", "http://127.0.0.1:1/?x=1", "http://127.0.0.1:1/#f"]) {
        expect(failure(() => factory.validate(settings({ baseUrl }))).kind).toBe("invalid_argument");
      }
    });

    it("reports an invalid script, in a file or inline", () => {
      const file = path.join(dir, "bad.json");
      writeFileSync(file, JSON.stringify({ steps: [{ toolCalls: [{ name: "" }] }] }));
      const fromFile = failure(() => factory.validate(settings({ provider: "scripted", scriptPath: file })));
      expect(fromFile.message).toBe(`scripted model: script ${file} is invalid: steps[0].toolCalls[0].name must be a non-empty string`);
      const inline = failure(() => factory.validate(settings({ provider: "scripted", scriptJson: "{" })));
      expect(inline.kind).toBe("invalid_argument");
      expect(inline.message).toBe("scripted model: script from script_json is not valid JSON (at position 1)");
    });
  });

  describe("create", () => {
    it("fails with FAILED_PRECONDITION when no key is available", () => {
      const error = failure(() => factory.create(settings({})));
      expect(error.kind).toBe("failed_precondition");
      expect(error.message).toBe(
        'no API key for provider "openai": set OPENAI_API_KEY in the server\'s environment or pass api_key with the request',
      );
      const anthropic = failure(() => factory.create(settings({ provider: "anthropic", model: "claude-test", apiKeyEnv: "MY_KEY" })));
      expect(anthropic.message).toBe(
        'no API key for provider "anthropic": set MY_KEY in the server\'s environment or pass api_key with the request',
      );
    });

    it("takes the key from the request, else from the environment variable", () => {
      expect(factory.create(settings({}), { apiKey: "sk-from-request" })).toBeInstanceOf(OpenAiClient);
      const withEnv = new LlmClientFactory({ env: { ANTHROPIC_API_KEY: "k", CUSTOM: "k2" }, access });
      expect(withEnv.create(settings({ provider: "anthropic", model: "claude-test" }))).toBeInstanceOf(AnthropicClient);
      expect(withEnv.create(settings({ apiKeyEnv: "CUSTOM" }))).toBeInstanceOf(OpenAiClient);
    });

    it("needs no key for openai with a custom base URL (local servers)", () => {
      expect(factory.create(settings({ baseUrl: "http://127.0.0.1:11434/v1" }))).toBeInstanceOf(OpenAiClient);
      // Anthropic has no keyless servers.
      const error = failure(() => factory.create(settings({ provider: "anthropic", model: "c", baseUrl: "http://127.0.0.1:1" })));
      expect(error.kind).toBe("failed_precondition");
    });

    it("creates a scripted client from a file in the scripts folder, or inline", async () => {
      const file = path.join(dir, "ok.json");
      writeFileSync(file, JSON.stringify({ steps: [{ text: "from file" }] }));
      const relative = "ok.json";
      const fromFile = factory.create(settings({ provider: "scripted", model: "", scriptPath: relative }));
      expect(fromFile).toBeInstanceOf(ScriptedClient);
      const request = { systemPrompt: "", messages: [], tools: [] };
      const chunks = await collect(fromFile.stream(request, turnContext()));
      expect(chunks.filter((c) => c.type === "text").map((c) => (c.type === "text" ? c.delta : "")).join("")).toBe("from file");
      const inline = factory.create(settings({ provider: "scripted", scriptJson: '{"steps":[{"text":"inline"}]}' }));
      expect(inline.provider).toBe("scripted");
    });
  });
});
