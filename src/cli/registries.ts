import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { McpServerState, Scope, type DefinitionProblem, type McpServerInfo, type McpServerConfig } from "../gen/agentd/v1/runtime.js";
import { connect, connectOptions, CONNECT_HELP } from "./connect.js";

const SCOPE_NAMES: Record<Scope, string> = {
  [Scope.SCOPE_UNSPECIFIED]: "?",
  [Scope.SCOPE_GLOBAL]: "global",
  [Scope.SCOPE_SESSION]: "session",
  [Scope.SCOPE_INHERITED]: "inherited",
  [Scope.UNRECOGNIZED]: "?",
};

const STATE_NAMES: Record<McpServerState, string> = {
  [McpServerState.MCP_SERVER_STATE_UNSPECIFIED]: "?",
  [McpServerState.MCP_SERVER_STATE_CONNECTING]: "connecting",
  [McpServerState.MCP_SERVER_STATE_CONNECTED]: "connected",
  [McpServerState.MCP_SERVER_STATE_FAILED]: "failed",
  [McpServerState.MCP_SERVER_STATE_DISCONNECTED]: "disconnected",
  [McpServerState.UNRECOGNIZED]: "?",
};

const SKILLS_HELP = `agentd skills: the skills sessions see

  agentd skills list [--session ID]          global skills, or those a session sees
  agentd skills show NAME [--session ID]     one skill's instructions
  agentd skills load PATH|--file SKILL.md --session ID
                                             a folder on the server, or a SKILL.md sent as text
  agentd skills unload NAME --session ID
  agentd skills reload                       read the server's skills folder again (admins)

${CONNECT_HELP}`;

export async function runSkills(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { ...connectOptions, session: { type: "string", default: "" }, file: { type: "string" }, help: { type: "boolean", short: "h" } },
    allowPositionals: true,
  });
  const [action, name = ""] = positionals;
  if (values.help || !action) return usage(SKILLS_HELP, values.help);
  const client = connect(values);
  const sessionId = values.session;
  try {
    switch (action) {
      case "list": {
        const { skills, problems } = await client.listSkills({ sessionId });
        if (skills.length === 0) console.log("no skills");
        for (const s of skills) console.log(`${s.name}  (${SCOPE_NAMES[s.scope]})  ${s.description}`);
        printProblems(problems);
        return 0;
      }
      case "show": {
        const { skill, body } = await client.getSkill({ sessionId, name });
        console.log(`# ${skill!.name} (${SCOPE_NAMES[skill!.scope]}${skill!.folder ? `, ${skill!.folder}` : ""})`);
        console.log(skill!.description);
        if (skill!.hasAllowedTools) console.log(`allowed-tools: ${skill!.allowedTools.join(" ")}`);
        console.log(`\n${body}`);
        return 0;
      }
      default:
        return await sharedAction(action, name, values, {
          help: SKILLS_HELP,
          noun: "skill",
          load: async (source) => (await client.loadSkill({ sessionId, source })).skill!.name,
          unload: () => client.unloadSkill({ sessionId, name }),
          reload: async () => {
            const { skills, problems } = await client.reloadSkills({});
            return { count: skills.length, problems };
          },
        });
    }
  } finally {
    client.close();
  }
}

const AGENTS_HELP = `agentd agents: the subagent definitions sessions see

  agentd agents list [--session ID]
  agentd agents load PATH|--file FILE.md --session ID
  agentd agents unload NAME --session ID
  agentd agents reload                       read the server's agents folder again (admins)

${CONNECT_HELP}`;

export async function runAgents(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { ...connectOptions, session: { type: "string", default: "" }, file: { type: "string" }, help: { type: "boolean", short: "h" } },
    allowPositionals: true,
  });
  const [action, name = ""] = positionals;
  if (values.help || !action) return usage(AGENTS_HELP, values.help);
  const client = connect(values);
  const sessionId = values.session;
  try {
    switch (action) {
      case "list": {
        const { agents, problems } = await client.listAgents({ sessionId });
        if (agents.length === 0) console.log("no subagent definitions");
        for (const a of agents) {
          const tools = a.allTools ? "all tools" : `tools: ${a.tools.join(", ") || "none"}`;
          console.log(`${a.name}  (${SCOPE_NAMES[a.scope]}; ${tools}${a.model ? `; model ${a.model}` : ""})  ${a.description}`);
        }
        printProblems(problems);
        return 0;
      }
      default:
        return await sharedAction(action, name, values, {
          help: AGENTS_HELP,
          noun: "subagent definition",
          load: async (source) => (await client.loadAgent({ sessionId, source })).agent!.name,
          unload: () => client.unloadAgent({ sessionId, name }),
          reload: async () => {
            const { agents, problems } = await client.reloadAgents({});
            return { count: agents.length, problems };
          },
        });
    }
  } finally {
    client.close();
  }
}

const MCP_HELP = `agentd mcp: the MCP servers sessions reach

  agentd mcp list [--session ID]             global servers, or those a session reaches, with their state
  agentd mcp add NAME --session ID --url URL [--header "Name: value"]... [--sse]
  agentd mcp add NAME --session ID [--env NAME=VALUE]... -- COMMAND [ARG...]
                                             (the command must be on the server's mcp.allowedCommands;
                                             options go before "--": what follows is the command line)
  agentd mcp remove NAME --session ID

${CONNECT_HELP}`;

export async function runMcp(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      ...connectOptions,
      session: { type: "string", default: "" },
      url: { type: "string" },
      header: { type: "string", multiple: true, default: [] },
      sse: { type: "boolean", default: false },
      env: { type: "string", multiple: true, default: [] },
      help: { type: "boolean", short: "h" },
    },
    allowPositionals: true,
  });
  const [action, name = "", ...command] = positionals;
  if (values.help || !action) return usage(MCP_HELP, values.help);
  const client = connect(values);
  const sessionId = values.session;
  try {
    switch (action) {
      case "list": {
        const { servers } = await client.listMcpServers({ sessionId });
        if (servers.length === 0) console.log("no MCP servers");
        servers.forEach((s) => console.log(describeServer(s)));
        return 0;
      }
      case "add": {
        const server = serverConfig(values, command);
        const reply = await client.addMcpServer({ sessionId, name, server });
        console.log(`${describeServer(reply.server!)}\n(connecting in the background: see "agentd mcp list --session ${sessionId}")`);
        return 0;
      }
      case "remove":
        await client.removeMcpServer({ sessionId, name });
        console.log(`removed ${name}`);
        return 0;
      default:
        return usage(MCP_HELP, false);
    }
  } finally {
    client.close();
  }
}

type DefinitionSourceArg = { $case: "path"; path: string } | { $case: "content"; content: string };

/** load, unload and reload: the same for skills and subagent definitions. */
async function sharedAction(
  action: string,
  name: string,
  values: { session: string; file?: string },
  commands: {
    help: string;
    noun: string;
    load(source: DefinitionSourceArg): Promise<string>;
    unload(): Promise<unknown>;
    reload(): Promise<{ count: number; problems: DefinitionProblem[] }>;
  },
): Promise<number> {
  switch (action) {
    case "load": {
      // A file here is sent as text; a path names a folder or file on the server.
      const source: DefinitionSourceArg = values.file ? { $case: "content", content: readFileSync(values.file, "utf8") } : { $case: "path", path: name };
      console.log(`loaded ${await commands.load(source)} into session ${values.session}`);
      return 0;
    }
    case "unload":
      await commands.unload();
      console.log(`unloaded ${name}`);
      return 0;
    case "reload": {
      const { count, problems } = await commands.reload();
      console.log(`${count} ${commands.noun}${count === 1 ? "" : "s"} loaded`);
      printProblems(problems);
      return problems.length > 0 ? 1 : 0;
    }
    default:
      return usage(commands.help, false);
  }
}

function serverConfig(values: { url?: string; header: string[]; sse: boolean; env: string[] }, command: string[]): McpServerConfig {
  if (values.url) {
    const headers = Object.fromEntries(values.header.map((h) => split(h, ":", "--header")));
    return { transport: { $case: "http", http: { url: values.url, headers, sseOnly: values.sse } } };
  }
  const [program, ...args] = command;
  if (!program) throw new Error('give --url URL, or the command after "--"');
  // A secret meant for --env must not end up on the command line, where ps and listings show it.
  const misplaced = args.find((arg) => /^--(env|header|url|session|server|token)(=|$)/.test(arg));
  if (misplaced) throw new Error(`${misplaced} comes after "--", where it would be an argument of the command; put agentd's options before "--"`);
  const env = Object.fromEntries(values.env.map((e) => split(e, "=", "--env")));
  return { transport: { $case: "stdio", stdio: { command: program, args, env, cwd: "" } } };
}

function split(text: string, separator: string, flag: string): [string, string] {
  const at = text.indexOf(separator);
  if (at <= 0) throw new Error(`${flag} takes NAME${separator}VALUE`);
  return [text.slice(0, at).trim(), text.slice(at + 1).trim()];
}

function describeServer(s: McpServerInfo): string {
  const who = s.serverName ? ` ${s.serverName}${s.serverVersion ? ` ${s.serverVersion}` : ""}` : "";
  const retry = s.nextRetryTime ? `, retry at ${s.nextRetryTime.toISOString()}` : "";
  const error = s.error ? ` (${s.error}${retry})` : "";
  return `${s.name}  ${STATE_NAMES[s.state]}${error}  ${s.transport} ${s.target}  ${s.toolCount} tools${who}  [${SCOPE_NAMES[s.scope]}]`;
}

function printProblems(problems: DefinitionProblem[]): void {
  for (const p of problems) console.error(`not loaded: ${p.file}:${p.line}: ${p.message}`);
}

function usage(help: string, asked: boolean | undefined): number {
  console.log(help);
  return asked ? 0 : 2;
}
