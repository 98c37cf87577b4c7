#!/usr/bin/env node
import { runChat } from "./chat.js";
import { runServe } from "./serve.js";
import { runAgents, runMcp, runSkills } from "./registries.js";
import { runSessions } from "./sessions.js";
import { runToken } from "./token.js";

const USAGE = `agentd: a gRPC runtime for LLM agent sessions

Usage:
  agentd serve [--host H] [--port P] [--data-dir DIR] [--log-level L] [--log-format auto|json|pretty]
               [--store file|memory] [--config FILE]
               [--provider P --model M [--base-url URL] [--script FILE]] [--max-sessions N] [--max-sessions-per-owner N]
  agentd chat [--server ADDR] [--session ID] [--provider P --model M [--base-url URL] [--script FILE]] [PROMPT...]
  agentd sessions list|get|create|destroy|messages|cancel|pause|resume [ID] [--server ADDR] [--token T]
  agentd sessions start|follow|context|compact|clear|rewind|fork ID ...
  agentd skills list|show|load|unload|reload [NAME|PATH] [--session ID]
  agentd agents list|load|unload|reload [NAME|PATH] [--session ID]
  agentd mcp list|add|remove [NAME] [--session ID] [--url URL | -- COMMAND ARGS...]
  agentd token create --owner NAME [--role user|admin] [--name LABEL]

Run "agentd <command> --help" for the options of one command.`;

const commands: Record<string, (args: string[]) => Promise<number>> = {
  serve: runServe,
  chat: runChat,
  sessions: runSessions,
  token: runToken,
  skills: runSkills,
  agents: runAgents,
  mcp: runMcp,
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
