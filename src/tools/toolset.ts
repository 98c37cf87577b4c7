import picomatch from "picomatch";
import type { LlmToolDefinition } from "../llm/types.js";
import type { ToolLookup } from "./executor.js";
import type { ToolRegistry } from "./registry.js";
import type { Tool } from "./types.js";

/**
 * The tools one session's model is offered at one moment: the runtime's registered tools and the
 * tools of the MCP servers the session reaches, minus those a tool selection leaves out. Built for
 * every model call, so a server's new tools show up on the next one.
 */
export class Toolset implements ToolLookup {
  private readonly extras = new Map<string, Tool>();

  constructor(
    private readonly base: ToolRegistry,
    /** Tools whose arguments someone else checks (MCP servers check their own). */
    extras: readonly Tool[],
    /** Whether the session may see a tool of that name. */
    private readonly offered: (name: string) => boolean,
  ) {
    for (const tool of extras) {
      // A registered tool keeps its name: a server cannot replace a built-in one.
      if (!base.has(tool.name) && !this.extras.has(tool.name)) this.extras.set(tool.name, tool);
    }
  }

  get(name: string): Tool | undefined {
    if (!this.offered(name)) return undefined;
    return this.base.get(name) ?? this.extras.get(name);
  }

  validate(name: string, args: unknown): string[] {
    if (this.base.has(name)) return this.base.validate(name, args);
    const tool = this.extras.get(name);
    if (!tool) throw new Error(`unknown tool "${name}"`);
    return [];
  }

  /** Every offered tool, sorted by name. */
  list(): Tool[] {
    const base = this.base.list().filter((tool) => this.offered(tool.name));
    if (this.extras.size === 0) return base;
    const all = [...base, ...[...this.extras.values()].filter((tool) => this.offered(tool.name))];
    return all.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** What the model is told, sorted by name so prompts (and prompt caches) are stable. */
  definitions(): LlmToolDefinition[] {
    return this.list().map(({ name, description, inputSchema }) => ({ name, description, inputSchema }));
  }
}

/**
 * A predicate for a chain of tool selections (a session's and its ancestors'): a tool is offered
 * when every selection that is set matches it, so a child never sees more than its parent.
 */
export function selectionFilter(selections: ReadonlyArray<readonly string[] | null>): (name: string) => boolean {
  const matchers = selections
    .filter((s): s is readonly string[] => s !== null)
    // An empty selection (a definition that names no usable tool) offers nothing.
    .map((patterns) => (patterns.length === 0 ? () => false : picomatch([...patterns], { dot: true })));
  return (name) => matchers.every((matches) => matches(name));
}
