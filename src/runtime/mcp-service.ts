import { realpath } from "node:fs/promises";
import path from "node:path";
import { AgentdError, invalidArgument } from "../errors.js";
import type { Logger } from "../logging.js";
import { checkServerName } from "../mcp/config.js";
import { McpManager } from "../mcp/manager.js";
import { agentToolsOf } from "../mcp/tools.js";
import type { McpServerStatus, McpTransportSpec } from "../mcp/types.js";
import type { Session } from "../session/session.js";
import type { Tool } from "../tools/types.js";
import { isWithin } from "../util/paths.js";
import type { Scope } from "./definitions-service.js";
import { checkChars, checkText, INPUT_LIMITS } from "./input-limits.js";

const GLOBAL = "global";

export interface VisibleServer {
  status: McpServerStatus;
  scope: Scope;
  /** The session that added it; "" for a global one. */
  sessionId: string;
}

export interface McpServiceOptions {
  /** Commands a client may name for a stdio server. */
  allowedCommands: string[];
  backoff: { baseMs: number; maxMs: number };
  connectTimeoutMs: number;
  lineage: (session: Session) => Session[];
  logger: Logger;
}

/**
 * The MCP servers sessions reach: the server's global ones (its config file), and those clients add
 * to a session, which its descendants reach too (one connection, shared). A nearer session's server
 * shadows a farther one's, and any global one, of the same name. Stdio servers are processes on this
 * host: a client may only name a command the operator allowed.
 */
export class McpService {
  private readonly manager: McpManager;

  constructor(private readonly options: McpServiceOptions) {
    this.manager = new McpManager({ logger: options.logger, backoff: options.backoff, connectTimeoutMs: options.connectTimeoutMs });
  }

  startGlobal(specs: Record<string, McpTransportSpec>): void {
    this.manager.startGlobal(specs);
  }

  /** Connects a restored session's servers again (in the background). */
  restore(session: Session): void {
    for (const { name, spec } of session.extensions.list("mcpServers")) {
      try {
        this.manager.add(session.id, name, spec);
      } catch (error) {
        this.options.logger.warn({ sessionId: session.id, mcpServer: name, err: error }, "cannot reconnect an MCP server of a restored session");
      }
    }
  }

  /** Checks a client's request, stores it with the session and starts connecting. */
  async add(session: Session, name: string, spec: McpTransportSpec): Promise<VisibleServer> {
    const problem = checkServerName(name);
    if (problem) throw invalidArgument(`name: ${problem}`);
    const checked = await this.checkSpec(session, spec);
    if (session.extensions.get("mcpServers", name)) {
      throw new AgentdError("already_exists", `session ${session.id} already has an MCP server named "${name}"; remove it first`);
    }
    this.manager.add(session.id, name, checked);
    session.extensions.add("mcpServers", { name, spec: checked });
    this.options.logger.info({ sessionId: session.id, mcpServer: name, transport: checked.type }, "MCP server added");
    return { status: this.manager.connection(session.id, name)!.status(), scope: "session", sessionId: session.id };
  }

  async remove(session: Session, name: string): Promise<void> {
    if (!session.extensions.remove("mcpServers", name)) {
      throw new AgentdError("not_found", `session ${session.id} has no MCP server named "${name}" of its own (inherited and global ones cannot be removed here)`);
    }
    await this.manager.remove(session.id, name).catch(() => undefined);
  }

  /** The servers a session reaches, sorted by name; with null, the global ones. */
  visible(session: Session | null): VisibleServer[] {
    const seen = new Map<string, VisibleServer>();
    const scopes: Array<{ scope: string; as: Scope; sessionId: string }> = session
      ? this.options.lineage(session).map((s, depth) => ({ scope: s.id, as: depth === 0 ? "session" : "inherited", sessionId: s.id }))
      : [];
    scopes.push({ scope: GLOBAL, as: "global", sessionId: "" });
    for (const { scope, as, sessionId } of scopes) {
      for (const status of this.manager.statuses(scope)) {
        if (!seen.has(status.name)) seen.set(status.name, { status, scope: as, sessionId });
      }
    }
    return [...seen.values()].sort((a, b) => (a.status.name < b.status.name ? -1 : 1));
  }

  /** The tools of every server a session reaches, named mcp__<server>__<tool>. */
  toolsFor(session: Session): Tool[] {
    return this.visible(session).flatMap(({ status, scope, sessionId }) => {
      const connection = this.manager.connection(scope === "global" ? GLOBAL : sessionId, status.name);
      return connection ? agentToolsOf(connection) : [];
    });
  }

  /** Closes the servers a destroyed session added (their processes end). */
  async closeSession(sessionId: string): Promise<void> {
    await this.manager.closeScope(sessionId);
  }

  async closeAll(): Promise<void> {
    await this.manager.closeAll();
  }

  private async checkSpec(session: Session, spec: McpTransportSpec): Promise<McpTransportSpec> {
    if (spec.type !== "stdio") {
      checkChars("server.http.url", spec.url, INPUT_LIMITS.mcpUrlChars);
      let url: URL;
      try {
        url = new URL(spec.url);
      } catch {
        throw invalidArgument("server.http.url is not a URL");
      }
      if (url.protocol !== "http:" && url.protocol !== "https:") throw invalidArgument("server.http.url must be an http or https URL");
      checkPairs("server.http.headers", spec.headers);
      return { ...spec, headers: { ...spec.headers } };
    }
    checkChars("server.stdio.command", spec.command, INPUT_LIMITS.workspaceChars);
    if (spec.command === "") throw invalidArgument("server.stdio.command is required");
    if (spec.args.length > INPUT_LIMITS.mcpArgCount) throw invalidArgument(`server.stdio.args may have at most ${INPUT_LIMITS.mcpArgCount} entries`);
    for (const arg of spec.args) checkText("server.stdio.args", arg, INPUT_LIMITS.mcpArgChars);
    if (!this.options.allowedCommands.some((entry) => allows(entry, spec))) {
      throw new AgentdError(
        "permission_denied",
        `the command "${spec.command}" (with these arguments) is not on the server's list of MCP server commands (mcp.allowedCommands); ask the operator to add it, or configure the server in mcpServers`,
      );
    }
    checkPairs("server.stdio.env", spec.env);
    const loader = Object.keys(spec.env).find((name) => LOADER_VARIABLE.test(name));
    if (loader) {
      throw new AgentdError("permission_denied", `server.stdio.env may not set ${loader}: it changes what the allowed command runs`);
    }
    return { ...spec, args: [...spec.args], env: { ...spec.env }, cwd: await this.checkCwd(session, spec.cwd) };
  }

  /** A client's server runs in the session's workspace, or below it. */
  private async checkCwd(session: Session, cwd: string): Promise<string> {
    const workspace = await realpath(session.workspace).catch(() => session.workspace);
    if (cwd === "") return workspace;
    checkChars("server.stdio.cwd", cwd, INPUT_LIMITS.workspaceChars);
    if (!path.isAbsolute(cwd)) throw invalidArgument("server.stdio.cwd must be an absolute path");
    const real = await realpath(cwd).catch(() => null);
    if (real === null || !isWithin(real, workspace)) {
      throw new AgentdError("permission_denied", "server.stdio.cwd must be an existing folder inside the session's workspace");
    }
    return real;
  }
}

/**
 * An allowed command is a program, which then takes any arguments, or a program with the arguments
 * it must start with ("npx -y @modelcontextprotocol/server-github"): the operator decides how much
 * of the command line a client may choose.
 */
function allows(entry: string, spec: { command: string; args: string[] }): boolean {
  const [command, ...prefix] = entry.trim().split(/\s+/);
  return command === spec.command && prefix.every((arg, i) => spec.args[i] === arg);
}

/**
 * Variables that make a program load other code (the dynamic loader's, interpreters' start-up
 * options and search paths, the shell's start-up file) or find another program (PATH): a client
 * setting them would run what it likes under an allowed command's name.
 */
const LOADER_VARIABLE =
  /^(LD_.*|DYLD_.*|PATH|NODE_OPTIONS|NODE_PATH|PYTHON(PATH|HOME|STARTUP|INSPECT)|PERL5?(OPT|LIB)|RUBY(OPT|LIB)|BASH_ENV|ENV|SHELLOPTS|BASHOPTS|PS4|JAVA_TOOL_OPTIONS|_JAVA_OPTIONS|GIT_.*|NPM_CONFIG_.*|npm_config_.*)$/;

function checkPairs(field: string, pairs: Record<string, string>): void {
  const entries = Object.entries(pairs);
  if (entries.length > INPUT_LIMITS.mcpEnvCount) throw invalidArgument(`${field} may have at most ${INPUT_LIMITS.mcpEnvCount} entries`);
  for (const [key, value] of entries) {
    if (!/^[A-Za-z0-9_.-]{1,128}$/.test(key)) throw invalidArgument(`${field} names must be 1 to 128 letters, digits, "_", "." or "-"`);
    // The value is a secret: its size is checked, it is never echoed.
    if (Buffer.byteLength(value, "utf8") > INPUT_LIMITS.mcpEnvValueBytes || /[\u0000\r\n]/.test(value)) {
      throw invalidArgument(`${field}.${key} must be at most ${INPUT_LIMITS.mcpEnvValueBytes} bytes, without NUL or line breaks`);
    }
  }
}
