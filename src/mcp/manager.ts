import { AgentdError, invalidArgument, notFound } from "../errors.js";
import type { Logger } from "../logging.js";
import type { Backoff } from "./backoff.js";
import { checkServerName } from "./config.js";
import { McpConnection } from "./connection.js";
import type { McpServerStatus, McpTransportSpec } from "./types.js";

/** The scope of the servers every session sees: the server's own configuration. */
export const GLOBAL_SCOPE = "global";

export interface McpManagerOptions {
  logger: Logger;
  backoff?: Backoff;
  connectTimeoutMs?: number;
}

/**
 * Owns every MCP connection, by scope: GLOBAL_SCOPE for the server's configured ones, a session id
 * for those a session added. Which scopes a session sees is its caller's business; each scope is
 * asked for on its own.
 */
export class McpManager {
  private readonly scopes = new Map<string, Map<string, McpConnection>>();

  constructor(private readonly options: McpManagerOptions) {}

  /** Starts the servers of the configuration, in the global scope. */
  startGlobal(specs: Record<string, McpTransportSpec>): void {
    for (const [name, spec] of Object.entries(specs)) this.add(GLOBAL_SCOPE, name, spec);
  }

  /** Adds a server to a scope and starts connecting to it in the background. */
  add(scope: string, name: string, spec: McpTransportSpec): McpConnection {
    const problem = checkServerName(name);
    if (problem) throw invalidArgument(problem);
    const connections = this.scopes.get(scope) ?? new Map<string, McpConnection>();
    if (connections.has(name)) {
      throw new AgentdError("already_exists", `an MCP server named "${name}" already exists${describeScope(scope)}`);
    }
    const connection = new McpConnection(name, spec, {
      logger: scope === GLOBAL_SCOPE ? this.options.logger : this.options.logger.child({ mcpScope: scope }),
      ...(this.options.backoff ? { backoff: this.options.backoff } : {}),
      ...(this.options.connectTimeoutMs !== undefined ? { connectTimeoutMs: this.options.connectTimeoutMs } : {}),
    });
    connections.set(name, connection);
    this.scopes.set(scope, connections);
    connection.start();
    return connection;
  }

  /** Removes a server from its scope and closes it (for stdio, its process is gone when this resolves). */
  async remove(scope: string, name: string): Promise<void> {
    const connections = this.scopes.get(scope);
    const connection = connections?.get(name);
    if (!connections || !connection) throw notFound(`no MCP server named "${name}"${describeScope(scope)}`);
    connections.delete(name);
    if (connections.size === 0) this.scopes.delete(scope);
    await connection.close();
  }

  /** Closes every server of a scope (a session going away). */
  async closeScope(scope: string): Promise<void> {
    const connections = this.scopes.get(scope);
    if (!connections) return;
    this.scopes.delete(scope);
    await Promise.all([...connections.values()].map((connection) => connection.close()));
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.scopes.keys()].map((scope) => this.closeScope(scope)));
  }

  connection(scope: string, name: string): McpConnection | undefined {
    return this.scopes.get(scope)?.get(name);
  }

  /** The connections of a scope, by name. */
  connections(scope: string): McpConnection[] {
    return [...(this.scopes.get(scope)?.values() ?? [])].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  statuses(scope: string): McpServerStatus[] {
    return this.connections(scope).map((connection) => connection.status());
  }
}

function describeScope(scope: string): string {
  return scope === GLOBAL_SCOPE ? " in the server's configuration" : " in this session";
}
