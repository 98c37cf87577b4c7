import type { Session } from "../session/session.js";
import type { AgentDefinition } from "../subagents/types.js";
import { ToolRegistry } from "../tools/registry.js";
import { selectionFilter, Toolset } from "../tools/toolset.js";
import type { RuleSet } from "../policy/rules.js";
import { createSkillTool } from "../skills/skill-tool.js";
import type { DefinitionsService } from "./definitions-service.js";
import type { McpService } from "./mcp-service.js";
import type { SkillsService } from "./skills-service.js";
import { createTaskTool, TASK_TOOL, type SubagentHost, type SubagentLimits } from "./subagents.js";
import type { SessionCapabilities } from "./turn-runner.js";

export const SKILL_TOOL = "skill";

/**
 * What a session can use beyond its conversation: the runtime's tools, its MCP servers' tools,
 * its skills and subagents, all narrowed by its (and its ancestors') tool selections. The `skill`
 * and `task` tools are offered only when there is something to read or hand out.
 */
export class Capabilities implements SessionCapabilities {
  private readonly registry: ToolRegistry;
  private readonly tasks: ReturnType<typeof createTaskTool>;

  constructor(
    tools: ToolRegistry,
    private readonly deps: {
      skills: SkillsService;
      agents: DefinitionsService<AgentDefinition>;
      mcp: McpService;
      lineage: (session: Session) => Session[];
      subagents: SubagentLimits;
      host: SubagentHost;
    },
  ) {
    this.tasks = createTaskTool(deps.host, deps.subagents);
    this.registry = new ToolRegistry([...tools.list(), createSkillTool(deps.skills), this.tasks.tool]);
  }

  toolset(session: Session): Toolset {
    const lineage = this.deps.lineage(session);
    const selected = selectionFilter(lineage.map((s) => s.config.tools));
    // Asked once per toolset, when first needed: a toolset is asked about every name.
    let skills: boolean | undefined;
    let tasks: boolean | undefined;
    const hasSkills = () => (skills ??= this.deps.skills.registry.visible(session).length > 0);
    const mayDelegate = () => (tasks ??= this.mayDelegate(session, lineage.length - 1));
    return new Toolset(this.registry, this.deps.mcp.toolsFor(session), (name) => {
      if (!selected(name)) return false;
      if (name === SKILL_TOOL) return hasSkills();
      if (name === TASK_TOOL) return mayDelegate();
      return true;
    });
  }

  systemPrompt(session: Session): string {
    const toolset = this.toolset(session);
    const skills = toolset.get(SKILL_TOOL) ? this.deps.skills.catalogue(session) : "";
    const agents = toolset.get(TASK_TOOL) ? agentCatalogue(this.deps.agents.visible(session).map((v) => v.item)) : "";
    if (skills === "" && agents === "") return session.config.systemPrompt;
    return [session.config.systemPrompt, skills, agents].filter((part) => part !== "").join("\n\n");
  }

  rules(session: Session, turnId: string): RuleSet {
    return this.deps.skills.rulesFor(session, turnId);
  }

  turnEnded(session: Session, turnId: string): void {
    this.deps.skills.endTurn(session.id, turnId);
    this.tasks.turnEnded(session.id, turnId);
  }

  private mayDelegate(session: Session, depth: number): boolean {
    return depth < this.deps.subagents.maxDepth && this.deps.agents.visible(session).length > 0;
  }
}

/** The subagents a model may hand tasks to: names and descriptions, like the skills catalogue. */
function agentCatalogue(definitions: readonly AgentDefinition[]): string {
  if (definitions.length === 0) return "";
  const lines = definitions.map((d) => `- ${d.name}: ${d.description}`);
  return [
    "## Subagents",
    "You can hand a self-contained task to one of these subagents with the `task` tool (agent, prompt). Each works in a fresh conversation and returns its final answer.",
    ...lines,
  ].join("\n");
}
