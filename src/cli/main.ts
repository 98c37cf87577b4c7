#!/usr/bin/env node

const USAGE = `agentd: a gRPC runtime for LLM agent sessions

Usage:
  agentd serve [--host H] [--port P] [--data-dir DIR] [--log-level L] [--log-format auto|json|pretty]
               [--store file|memory] [--config FILE]
               [MODEL] [--max-sessions N] [--max-sessions-per-owner N]
  agentd chat [--server ADDR] [--session ID] [MODEL] [PROMPT...]
  agentd sessions list|get|destroy|messages|cancel|pause|resume [ID] [--server ADDR] [--token T]
  agentd sessions create [--owner NAME] [MODEL]
  agentd sessions start ID PROMPT
  agentd sessions follow ID [--after N | --from-oldest] [--descendants]
  agentd sessions context|compact|clear|rewind|fork ID ...
  agentd skills list|show|load|unload|reload [NAME|PATH] [--session ID]
  agentd agents list|load|unload|reload [NAME|PATH] [--session ID]
  agentd mcp list|add|remove [NAME] [--session ID] [--url URL | -- COMMAND ARGS...]
  agentd usage [--owner NAME]
  agentd token create --owner NAME [--role user|admin] [--name LABEL]

MODEL is --provider P --model M [--base-url URL] [--api-key-env VAR] [--context-window N], or --script FILE.
Run "agentd <command> --help" for the options of one command.`;

// Each command's module is loaded when it runs: a client command does not load the server's.
const commands: Record<string, (args: string[]) => Promise<number>> = {
  serve: async (args) => (await import("./serve.js")).runServe(args),
  chat: async (args) => (await import("./chat.js")).runChat(args),
  sessions: async (args) => (await import("./sessions.js")).runSessions(args),
  token: async (args) => (await import("./token.js")).runToken(args),
  usage: async (args) => (await import("./usage.js")).runUsage(args),
  skills: async (args) => (await import("./registries.js")).runSkills(args),
  agents: async (args) => (await import("./registries.js")).runAgents(args),
  mcp: async (args) => (await import("./registries.js")).runMcp(args),
};

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === "--help" || command === "-h" || command === "help") {
    console.log(USAGE);
    return command === undefined ? 2 : 0;
  }
  const run = commands[command];
  if (!run) {
    console.error(`agentd: unknown command "${command}"\n\n${USAGE}`);
    return 2;
  }
  return run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(`agentd: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  },
);
