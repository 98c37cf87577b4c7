import { lookup } from "node:dns/promises";
import { BlockList, isIP } from "node:net";
import { AgentdError, invalidArgument } from "../errors.js";
import type { Logger } from "../logging.js";
import { checkServerName } from "../mcp/config.js";
import { GLOBAL_SCOPE, McpManager } from "../mcp/manager.js";
import { agentToolsOf } from "../mcp/tools.js";
import type { McpServerStatus, McpTransportSpec } from "../mcp/types.js";
import type { Session } from "../session/session.js";
import type { Tool } from "../tools/types.js";
import type { Scope } from "./definitions-service.js";
import { checkChars, checkText, INPUT_LIMITS } from "./input-limits.js";


export interface VisibleServer {
  status: McpServerStatus;
  scope: Scope;
  /** The session that added it; "" for a global one. */
  sessionId: string;
}

export interface McpServiceOptions {
  /** Commands a client may name for a stdio server. */
  allowedCommands: string[];
  /** URL prefixes a client's server may have on a private address. */
  allowedPrivateUrls: string[];
  maxServersPerSession: number;
  /** Bounds every call, whatever the session's tool timeout. */
  callTimeoutMs: number;
  /** An empty folder of the server's where clients' stdio servers run: not one a client can write to. */
  clientServerCwd: string;
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

  /**
   * Connects a restored session's servers again (in the background), each checked again as when it
   * was added: one the configuration no longer allows stays off, and the log says why.
   */
  async restore(session: Session): Promise<void> {
    for (const { name, spec } of session.extensions.list("mcpServers")) {
      try {
        this.manager.add(session.id, name, await this.checkSpec(spec.type === "stdio" ? { ...spec, cwd: "" } : spec));
      } catch (error) {
        this.options.logger.warn({ sessionId: session.id, mcpServer: name, err: error }, "an MCP server of a restored session is not started");
      }
    }
  }

  /** Checks a client's request, stores it with the session and starts connecting. */
  async add(session: Session, name: string, spec: McpTransportSpec): Promise<VisibleServer> {
    const problem = checkServerName(name);
    if (problem) throw invalidArgument(`name: ${problem}`);
    const count = session.extensions.list("mcpServers").length;
    if (count >= this.options.maxServersPerSession) {
      throw new AgentdError("resource_exhausted", `session ${session.id} has ${count} MCP servers, the limit (mcp.maxServersPerSession); remove one first`);
    }
    const checked = await this.checkSpec(spec);
    // Checked after the waits above: the session may have been destroyed meanwhile, and a server
    // started now would outlive it.
    if (session.state === "closed") throw new AgentdError("not_found", `session ${session.id} not found`);
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
    scopes.push({ scope: GLOBAL_SCOPE, as: "global", sessionId: "" });
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
      const connection = this.manager.connection(scope === "global" ? GLOBAL_SCOPE : sessionId, status.name);
      return connection ? agentToolsOf(connection, this.options.callTimeoutMs) : [];
    });
  }

  /** Closes the servers a destroyed session added (their processes end). */
  async closeSession(sessionId: string): Promise<void> {
    await this.manager.closeScope(sessionId);
  }

  async closeAll(): Promise<void> {
    await this.manager.closeAll();
  }

  private async checkSpec(spec: McpTransportSpec): Promise<McpTransportSpec> {
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
      await this.checkAddress(url, spec.url);
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
    // Programs look for code in their working folder (python -m, npx): one the client can write to
    // would let it run its own code under an allowed command's name.
    if (spec.cwd !== "") {
      throw new AgentdError("permission_denied", "server.stdio.cwd cannot be set by a client: its servers run in an empty folder of the server's; pass paths as arguments");
    }
    return { ...spec, args: [...spec.args], env: { ...spec.env }, cwd: this.options.clientServerCwd };
  }

  /**
   * A client may name any public server; one on this host or a private network only under a prefix
   * the operator allowed, so that agentd cannot be used to reach what only it can reach.
   */
  private async checkAddress(url: URL, text: string): Promise<void> {
    if (this.options.allowedPrivateUrls.some((prefix) => text.startsWith(prefix))) return;
    const host = url.hostname.replace(/^\[|\]$/g, "");
    const addresses = await lookup(host, { all: true }).catch(() => {
      throw invalidArgument(`server.http.url: the host ${host} cannot be resolved`);
    });
    if (addresses.some(({ address }) => isPrivateAddress(address))) {
      throw new AgentdError(
        "permission_denied",
        `server.http.url points at a loopback, private or link-local address; ask the operator to allow it (mcp.allowedPrivateUrls)`,
      );
    }
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
const LOADER_VARIABLE = new RegExp(
  "^(" +
    [
      // the dynamic loader, the C library's module paths, where programs and configuration are found
      "LD_.*", "DYLD_.*", "GCONV_PATH", "LOCPATH", "NLSPATH", "PATH", "HOME", "XDG_.*", "TMPDIR",
      // shells
      "ENV", "BASH_ENV", "BASH_FUNC_.*", "SHELLOPTS", "BASHOPTS", "PS4", "ZDOTDIR", "IFS", "CDPATH",
      // language runtimes and their package managers
      "NODE_.*", "NPM_.*", "YARN_.*", "PNPM_.*", "BUN_.*", "DENO_.*", "UV_.*", "PIP_.*", "PYTHON.*", "CONDA.*", "VIRTUAL_ENV",
      "PERL.*", "RUBY.*", "GEM_.*", "BUNDLE_.*", "JAVA_.*", "_JAVA_.*", "JDK_.*", "CLASSPATH", "MAVEN_.*", "GRADLE_.*",
      "DOTNET_.*", "CORECLR_.*", "COMPLUS_.*", "GO(PATH|ROOT|FLAGS|PROXY|TOOLCHAIN|ENV|EXPERIMENT|DEBUG)", "CARGO_.*", "RUST.*", "PHP.*", "LUA_.*", "GIT_.*",
    ].join("|") +
    ")$",
  "i",
);

/** Addresses of this host, private networks, link-local and unique-local ranges, and unspecified ones. */
const PRIVATE = new BlockList();
for (const [network, prefix] of [["0.0.0.0", 8], ["10.0.0.0", 8], ["100.64.0.0", 10], ["127.0.0.0", 8], ["169.254.0.0", 16], ["172.16.0.0", 12], ["192.168.0.0", 16]] as const) {
  PRIVATE.addSubnet(network, prefix, "ipv4");
}
for (const [network, prefix] of [["::", 128], ["::1", 128], ["fc00::", 7], ["fe80::", 10]] as const) PRIVATE.addSubnet(network, prefix, "ipv6");

function isPrivateAddress(address: string): boolean {
  const family = isIP(address) === 6 ? "ipv6" : "ipv4";
  // An IPv4 address written as IPv6 (::ffff:127.0.0.1) is judged as IPv4.
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1];
  return mapped ? PRIVATE.check(mapped, "ipv4") : PRIVATE.check(address, family);
}

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
