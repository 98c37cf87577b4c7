import { isPlainObject } from "../util/values.js";
import type { Tool } from "../tools/types.js";
import type { McpConnection } from "./connection.js";
import type { McpToolInfo } from "./types.js";

/** MCP tools as the agent's tools: named mcp__<server>__<tool>, run by the connection. */

/** Model APIs accept at most this many characters in a tool name. */
const MAX_TOOL_NAME = 64;
const MAX_DESCRIPTION_CHARS = 2_048;

/** `mcp__<server>__<tool>` with anything outside [a-zA-Z0-9_-] turned into "_"; null when longer than 64 characters. */
export function mcpToolName(server: string, tool: string): string | null {
  const name = `mcp__${server}__${tool}`.replace(/[^a-zA-Z0-9_-]/g, "_");
  return name.length > MAX_TOOL_NAME || tool === "" ? null : name;
}

export interface NamedTools {
  /** Agent tool name → the server's tool. */
  named: Map<string, McpToolInfo>;
  /** Why a tool is left out, one line each. */
  skipped: string[];
}

/** Names a server's tools for the agent, leaving out names too long and names two tools would share. */
export function nameTools(server: string, tools: readonly McpToolInfo[]): NamedTools {
  const named = new Map<string, McpToolInfo>();
  const skipped: string[] = [];
  for (const tool of tools) {
    const name = mcpToolName(server, tool.name);
    if (name === null) skipped.push(`tool ${JSON.stringify(tool.name.slice(0, 80))}: its name mcp__${server}__<tool> would be over ${MAX_TOOL_NAME} characters`);
    else if (named.has(name)) skipped.push(`tool ${JSON.stringify(tool.name)}: its name ${name} is taken by tool ${JSON.stringify(named.get(name)?.name)}`);
    else named.set(name, tool);
  }
  return { named, skipped };
}

/**
 * One agent tool per tool the connection last listed (the connection warns about those left out).
 * The session's per-call timeout aborts the call's signal, which cancels the request on the server;
 * `maxCallMs` bounds a call even when the session sets no timeout.
 */
export function agentToolsOf(connection: McpConnection, maxCallMs: number): Tool[] {
  // Asked for at every model call of every session that reaches the server: built once per list.
  const cached = built.get(connection);
  if (cached && cached.listed === connection.listedTools && cached.maxCallMs === maxCallMs) return cached.tools;
  const tools = buildTools(connection, maxCallMs);
  built.set(connection, { listed: connection.listedTools, maxCallMs, tools });
  return tools;
}

const built = new WeakMap<McpConnection, { listed: readonly McpToolInfo[]; maxCallMs: number; tools: Tool[] }>();

function buildTools(connection: McpConnection, maxCallMs: number): Tool[] {
  const server = connection.name;
  return [...nameTools(server, connection.listedTools).named].map(([name, info]): Tool => ({
    name,
    description: bound(info.description, MAX_DESCRIPTION_CHARS) || `MCP tool ${info.name} of server ${server}`,
    inputSchema: objectSchema(info.inputSchema),
    readOnly: info.readOnlyHint,
    source: { kind: "mcp", server, tool: info.name },
    execute: (args, context) => connection.callTool(info.name, args, { signal: context.signal, timeoutMs: maxCallMs }),
  }));
}

/**
 * The server's schema made acceptable to model APIs: a top-level object (as MCP requires, though
 * not every server complies), without `$schema`, which names a draft some APIs and validators refuse.
 */
function objectSchema(schema: Record<string, unknown>): Record<string, unknown> {
  const { $schema: _ignored, ...rest } = schema;
  return { ...rest, type: "object", properties: isPlainObject(rest.properties) ? rest.properties : {} };
}


function bound(text: string, maxChars: number): string {
  return text.length <= maxChars ? text : `${text.slice(0, maxChars - 1)}…`;
}
