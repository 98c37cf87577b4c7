import { Ajv2020, type ErrorObject, type ValidateFunction } from "ajv/dist/2020.js";
import type { LlmToolDefinition } from "../llm/types.js";
import { builtinFileTools } from "./builtin/files.js";
import { codingTools } from "./builtin/index.js";
import type { Tool } from "./types.js";

/** What the model APIs (Anthropic, OpenAI) accept as a tool name. */
const TOOL_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

interface Entry {
  tool: Tool;
  validate: ValidateFunction;
}

/**
 * The tools a runtime offers. Schemas are compiled when a tool is registered, so a broken schema
 * fails at startup instead of on the model's first call.
 */
export class ToolRegistry {
  private readonly entries = new Map<string, Entry>();
  /** list()'s answer, kept until the next registration: turns ask for it at every model call. */
  private sorted: Tool[] | null = null;
  // allErrors: the model fixes every problem in one retry instead of one per round trip.
  // strictTypes/strictTuples off: they only log style warnings about otherwise valid schemas.
  private readonly ajv = new Ajv2020({ allErrors: true, strict: true, strictTypes: false, strictTuples: false });

  constructor(tools: Tool[] = []) {
    for (const tool of tools) this.register(tool);
  }

  /** A registry holding the built-in tools: read_file, write_file, list_dir, edit_file, glob, grep and bash. */
  static withBuiltins(): ToolRegistry {
    return new ToolRegistry([...builtinFileTools(), ...codingTools()]);
  }

  register(tool: Tool): void {
    if (!TOOL_NAME.test(tool.name)) {
      throw new Error(`invalid tool name "${tool.name}": use 1 to 64 letters, digits, "_" or "-"`);
    }
    if (this.entries.has(tool.name)) throw new Error(`a tool named "${tool.name}" is already registered`);
    // Model APIs require an object schema at the top level: arguments are always a JSON object.
    if (tool.inputSchema.type !== "object") {
      throw new Error(`the input schema of tool "${tool.name}" must have "type": "object"`);
    }
    let validate: ValidateFunction;
    try {
      validate = this.ajv.compile(tool.inputSchema);
    } catch (error) {
      throw new Error(`invalid input schema for tool "${tool.name}": ${error instanceof Error ? error.message : String(error)}`);
    }
    this.entries.set(tool.name, { tool, validate });
    this.sorted = null;
  }

  get(name: string): Tool | undefined {
    return this.entries.get(name)?.tool;
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  /** All tools, sorted by name. */
  list(): Tool[] {
    this.sorted ??= [...this.entries.values()].map((entry) => entry.tool).sort((a, b) => compare(a.name, b.name));
    return [...this.sorted];
  }

  /** What the model is told about the tools, sorted by name so prompts (and prompt caches) are stable. */
  definitions(): LlmToolDefinition[] {
    return this.list().map(({ name, description, inputSchema }) => ({ name, description, inputSchema }));
  }

  /**
   * Checks arguments against the tool's schema. Returns readable problems, such as
   * `/path must be string`; an empty array means valid. Throws for an unknown tool.
   */
  validate(name: string, args: unknown): string[] {
    const entry = this.entries.get(name);
    if (!entry) throw new Error(`unknown tool "${name}"`);
    if (entry.validate(args)) return [];
    return (entry.validate.errors ?? []).map(describeError);
  }
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** One Ajv error as a line a model can act on; adds the detail Ajv keeps out of its message. */
function describeError(error: ErrorObject): string {
  const where = error.instancePath === "" ? "arguments" : error.instancePath;
  const params: Record<string, unknown> = error.params;
  let detail = "";
  if (error.keyword === "additionalProperties") detail = ` (unexpected property "${String(params.additionalProperty)}")`;
  else if (error.keyword === "enum") detail = `: ${JSON.stringify(params.allowedValues)}`;
  else if (error.keyword === "const") detail = `: ${JSON.stringify(params.allowedValue)}`;
  return `${where} ${error.message ?? "is invalid"}${detail}`;
}
