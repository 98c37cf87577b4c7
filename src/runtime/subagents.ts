import type { Observable } from "rxjs";
import type { CancelReason } from "../agent/cancellation.js";
import { abortError } from "../llm/abort.js";
import { errorMessage } from "../errors.js";
import type { SessionEvent } from "../events/types.js";
import type { Session } from "../session/session.js";
import type { UsageTotals } from "../session/types.js";
import { loadAgentsDir } from "../subagents/load.js";
import { parseAgentDefinition } from "../subagents/parse.js";
import type { AgentDefinition } from "../subagents/types.js";
import type { Tool, ToolContext, ToolReturn } from "../tools/types.js";
import { readDefinitionFile } from "../definitions/read-file.js";
import type { DefinitionKind, Parsed, Visible } from "./definitions-service.js";
import { isToolPattern } from "./input-limits.js";

function toParsed(result: { definition: AgentDefinition } | { problem: { file: string; line: number; message: string } }): Parsed<AgentDefinition> {
  if ("problem" in result) return result;
  const { definition } = result;
  return { item: definition, stored: { name: definition.name, text: definition.text, dir: null } };
}

/** Subagent definitions: Markdown files whose front matter names the agent and whose body is its system prompt. */
export const AGENT_DEFINITIONS: DefinitionKind<AgentDefinition> = {
  noun: "subagent definition",
  list: "agents",
  rootsSetting: "agents.allowedRoots",
  loadDir: (root) => loadAgentsDir(root),
  loadPath: async (file) => {
    const read = await readDefinitionFile(file);
    return "problem" in read ? read : toParsed(parseAgentDefinition(read.text, { file }));
  },
  parse: (stored, file) => toParsed(parseAgentDefinition(stored.text, { file })),
  check: (definition, seesSkill) => {
    const tool = definition.tools?.find((name) => !isToolPattern(name));
    if (tool !== undefined) return `tools: "${tool.slice(0, 80)}" is not a tool name or glob`;
    const skill = definition.skills.find((name) => !seesSkill(name));
    return skill === undefined ? null : `skills: the session has no skill named "${skill}"; load it first`;
  },
};

/** What the task tool needs of the runtime. */
export interface SubagentHost {
  session(sessionId: string): Session | undefined;
  definitions(session: Session): Visible<AgentDefinition>[];
  /** How many ancestors a session has. */
  depthOf(session: Session): number;
  /** Creates the child session that runs `definition` for `parent`. Throws AgentdErrors a model can read. */
  createChild(parent: Session, definition: AgentDefinition): Promise<Session>;
  /** Starts the child's turn with what its parent's turn was started with (a per-turn API key). */
  startTurn(child: Session, prompt: string, parentTurnId: string): { events: Observable<SessionEvent>; cancel(reason: CancelReason): boolean };
  /** The task is over: the child goes, unless the configuration keeps subagents' sessions. */
  taskEnded(child: Session): void;
}

export interface SubagentLimits {
  maxDepth: number;
  maxTasksPerTurn: number;
}

export const TASK_TOOL = "task";

/**
 * The `task` tool: hands a task to a subagent, a child session running one of the definitions the
 * session sees, and returns the child's final answer. The child's events are relayed on the
 * parent's stream, tagged with the child's id; cancelling the parent's turn cancels the child's;
 * the child's usage is added to the parent's turn.
 */
export function createTaskTool(host: SubagentHost, limits: SubagentLimits): { tool: Tool; turnEnded(sessionId: string, turnId: string): void } {
  const tasksPerTurn = new Map<string, number>();
  const tool: Tool = {
    name: TASK_TOOL,
    description:
      "Hand a self-contained task to a subagent (see the subagents listed in your instructions). It works in a fresh conversation " +
      "with its own instructions and tools, and returns its final answer; it does not see this conversation, so say everything it needs in prompt.",
    inputSchema: {
      type: "object",
      properties: {
        agent: { type: "string", description: "The name of the subagent definition to run." },
        prompt: { type: "string", minLength: 1, description: "The task, with all the context the subagent needs." },
        description: { type: "string", description: "A few words on the task, for the people watching." },
      },
      required: ["agent", "prompt"],
      additionalProperties: false,
    },
    // The child's own calls go through the child's policy; the task itself can change things through them.
    readOnly: false,
    // Bounded by the child's own limits and by the parent's cancellation, not by one tool call's limit.
    timeoutMs: 0,
    async execute(args, context): Promise<ToolReturn> {
      const parent = host.session(context.sessionId);
      if (!parent) throw new Error("the session is gone");
      const name = String(args.agent);
      const visible = host.definitions(parent);
      const definition = visible.find((v) => v.item.name === name)?.item;
      if (!definition) {
        const names = visible.map((v) => v.item.name);
        throw new Error(`no subagent named "${name}"; ${names.length > 0 ? `available: ${names.join(", ")}` : "none are available"}`);
      }
      if (host.depthOf(parent) + 1 > limits.maxDepth) {
        throw new Error(`subagents may be at most ${limits.maxDepth} deep (subagents.maxDepth); do this task yourself`);
      }
      const key = `${parent.id}/${context.turnId}`;
      const count = (tasksPerTurn.get(key) ?? 0) + 1;
      if (count > limits.maxTasksPerTurn) throw new Error(`a turn may hand out at most ${limits.maxTasksPerTurn} tasks (subagents.maxTasksPerTurn)`);
      tasksPerTurn.set(key, count);
      const child = await host.createChild(parent, definition);
      try {
        return await runChildTurn(host, parent, child, definition.name, String(args.prompt), context);
      } finally {
        host.taskEnded(child);
      }
    },
  };
  return { tool, turnEnded: (sessionId, turnId) => tasksPerTurn.delete(`${sessionId}/${turnId}`) };
}

async function runChildTurn(host: SubagentHost, parent: Session, child: Session, agent: string, prompt: string, context: ToolContext): Promise<ToolReturn> {
  context.signal.throwIfAborted();
  const handle = host.startTurn(child, prompt, context.turnId);
  const usage: UsageTotals = { inputTokens: 0, outputTokens: 0 };
  const onAbort = () => handle.cancel("parent_cancelled");
  context.signal.addEventListener("abort", onAbort, { once: true });
  let subscription: { unsubscribe(): void } | undefined;
  try {
    const outcome = await new Promise<ToolReturn>((resolve, reject) => {
      subscription = handle.events.subscribe({
        next: (event) => {
          parent.relaySubagentEvent(context.turnId, child.id, agent, event);
          if (event.turnId === "") return;
          const payload = event.payload;
          if (payload.type === "usage") Object.assign(usage, payload.turn);
          else if (payload.type === "turn_completed") {
            resolve({ output: payload.result.text || "(the subagent gave no answer)", usage: payload.result.usage });
          } else if (payload.type === "turn_failed") {
            resolve({ output: `the subagent ${agent} failed: ${payload.error.message}`, isError: true, usage: { ...usage } });
          } else if (payload.type === "turn_cancelled") {
            if (context.signal.aborted) {
              // The calling turn stops without a result to add this to: the session still pays for it.
              if (usage.inputTokens > 0 || usage.outputTokens > 0) parent.addUsage({ ...usage }, true);
              reject(abortError(context.signal));
            }
            else resolve({ output: `the subagent ${agent} was cancelled (${payload.reason})`, isError: true, usage: { ...usage } });
          }
        },
        error: (error: unknown) => resolve({ output: `the subagent ${agent} stopped: ${errorMessage(error)}`, isError: true, usage: { ...usage } }),
        // After a terminal event this changes nothing; without one (the child closed), the task still ends.
        complete: () => resolve({ output: `the subagent ${agent} ended without an answer`, isError: true, usage: { ...usage } }),
      });
    });
    return { ...outcome, output: `[subagent ${agent}, session ${child.id}]\n${outcome.output}` };
  } finally {
    subscription?.unsubscribe();
    context.signal.removeEventListener("abort", onAbort);
  }
}
