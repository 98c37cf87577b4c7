import {
  McpServerState,
  Scope,
  type AgentInfo,
  type DefinitionProblem as DefinitionProblemProto,
  type McpServerConfig,
  type McpServerInfo,
  type SkillInfo,
} from "../gen/agentd/v1/runtime.js";
import type { DefinitionProblem } from "../definitions/problems.js";
import { invalidArgument } from "../errors.js";
import type { McpServerState as DomainState, McpTransportSpec } from "../mcp/types.js";
import type { DefinitionSource, Scope as DomainScope, Visible } from "../runtime/definitions-service.js";
import type { VisibleServer } from "../runtime/mcp-service.js";
import type { Skill } from "../skills/types.js";
import type { AgentDefinition } from "../subagents/types.js";

/** Conversions for the skill, subagent and MCP registries. */

const SCOPES: Record<DomainScope, Scope> = {
  global: Scope.SCOPE_GLOBAL,
  session: Scope.SCOPE_SESSION,
  inherited: Scope.SCOPE_INHERITED,
};

const MCP_STATES: Record<DomainState, McpServerState> = {
  connecting: McpServerState.MCP_SERVER_STATE_CONNECTING,
  connected: McpServerState.MCP_SERVER_STATE_CONNECTED,
  failed: McpServerState.MCP_SERVER_STATE_FAILED,
  disconnected: McpServerState.MCP_SERVER_STATE_DISCONNECTED,
};

export function toSkillInfo({ item, scope, sessionId }: Visible<Skill>): SkillInfo {
  return {
    name: item.name,
    description: item.description,
    scope: SCOPES[scope],
    sessionId,
    folder: item.dir ?? "",
    allowedTools: [...(item.allowedTools ?? [])],
    hasAllowedTools: item.allowedTools !== null,
    license: item.license,
    metadata: { ...item.metadata },
  };
}

export function toAgentInfo({ item, scope, sessionId }: Visible<AgentDefinition>): AgentInfo {
  return {
    name: item.name,
    description: item.description,
    scope: SCOPES[scope],
    sessionId,
    tools: [...(item.tools ?? [])],
    allTools: item.tools === null,
    model: item.model,
    skills: [...item.skills],
  };
}

export function toProblemProto(problem: DefinitionProblem): DefinitionProblemProto {
  return { file: problem.file, line: problem.line, message: problem.message };
}

export function toMcpServerInfo({ status, scope, sessionId }: VisibleServer): McpServerInfo {
  return {
    name: status.name,
    scope: SCOPES[scope],
    sessionId,
    transport: status.transport,
    target: status.target,
    state: MCP_STATES[status.state],
    error: status.error,
    serverName: status.serverName,
    serverVersion: status.serverVersion,
    toolCount: status.toolCount,
    attempts: status.attempts,
    nextRetryTime: status.nextRetryAtMs > 0 ? new Date(status.nextRetryAtMs) : undefined,
  };
}

export function toMcpTransportSpec(config: McpServerConfig | undefined): McpTransportSpec {
  const transport = config?.transport;
  if (!transport) throw invalidArgument("server must have stdio (command, args, env, cwd) or http (url, headers)");
  if (transport.$case === "stdio") {
    const { command, args, env, cwd } = transport.stdio;
    return { type: "stdio", command, args: [...args], env: { ...env }, cwd };
  }
  const { url, headers, sseOnly } = transport.http;
  return { type: sseOnly ? "sse" : "http", url, headers: { ...headers } };
}

export function toDefinitionSource(source: { $case: "path"; path: string } | { $case: "content"; content: string } | undefined, noun: string): DefinitionSource {
  if (!source) throw invalidArgument(`give the ${noun} as path (on the server) or as content (its text)`);
  return source.$case === "path" ? { path: source.path } : { content: source.content };
}
