import { createInterface } from "node:readline/promises";
import { parseArgs } from "node:util";
import { events, type AgentdClient } from "../client/client.js";
import { connect, connectOptions, CONNECT_HELP } from "./connect.js";
import { status, type ClientReadableStream, type ServiceError } from "@grpc/grpc-js";
import type { AgentEvent, ModelConfig, StreamGenerateResponse } from "../gen/agentd/v1/runtime.js";
import { answerConfirmation, type Ask } from "./confirm.js";
import { MODEL_HELP, modelConfigFromFlags, modelOptions } from "./model-options.js";

const HELP = `agentd chat: talk to an agent session from the terminal

  agentd chat [options] [PROMPT...]

${CONNECT_HELP}
  --session ID      continue an existing session instead of creating one
  --owner NAME      owner of a new session
  --yes             approve every tool call that asks, without asking

The model of a new session (or of --session, which is reconfigured); without these, the server's default:
${MODEL_HELP}

With a PROMPT, runs one turn and exits. Without, reads prompts line by line; Ctrl-C cancels a
running turn, Ctrl-C at the prompt (or Ctrl-D) leaves. A tool call that needs approval (writing
files, running commands; see the session's permission rules) is shown and you answer
y (once), n (no), a (always: adds an allow rule) or e (edit its arguments).`;

export async function runChat(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      ...connectOptions,
      session: { type: "string" },
      owner: { type: "string", default: "" },
      yes: { type: "boolean", default: false },
      help: { type: "boolean", short: "h" },
      ...modelOptions,
    },
    allowPositionals: true,
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const client = connect(values);
  try {
    const sessionId = await openSession(client, values.session, values.owner, modelConfigFromFlags(values));
    console.error(`session ${sessionId}`);
    const confirm = { client, autoApprove: values.yes === true };
    if (positionals.length > 0) return (await runTurn(client, sessionId, positionals.join(" "), confirm)) ? 0 : 1;
    await repl(client, sessionId, confirm);
    return 0;
  } finally {
    client.close();
  }
}

async function openSession(
  client: AgentdClient,
  sessionId: string | undefined,
  owner: string,
  model: Partial<ModelConfig> | undefined,
): Promise<string> {
  if (sessionId) {
    if (model) await client.configureSession({ sessionId, config: { model } });
    else await client.getSession({ sessionId });
    return sessionId;
  }
  const { session } = await client.createSession({ owner, config: model ? { model } : {} });
  return session!.id;
}

/** What a turn needs to answer confirmations: the client, and whether --yes approves them all. */
interface Confirming {
  client: AgentdClient;
  autoApprove: boolean;
}

async function repl(client: AgentdClient, sessionId: string, confirm: Confirming): Promise<void> {
  const interactive = process.stdin.isTTY === true;
  const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: interactive });
  let running: ClientReadableStream<StreamGenerateResponse> | null = null;
  // In a terminal, readline receives Ctrl-C itself: it cancels the running turn, or leaves at the prompt.
  rl.on("SIGINT", () => (running ? running.cancel() : rl.close()));
  try {
    rl.setPrompt(interactive ? "> " : "");
    rl.prompt();
    // Iterating the lines (rather than asking one question at a time) keeps piped lines that arrive
    // while a turn runs: readline buffers them until the loop comes back.
    for await (const line of rl) {
      if (line.trim() !== "") {
        running = client.streamGenerate({ sessionId, prompt: line });
        // While a turn runs, a question to the person takes the next line they type.
        const ask = interactive ? (question: string) => rl.question(question).catch(() => null) : null;
        await streamTurn(running, { ...confirm, ask });
        running = null;
      }
      rl.prompt();
    }
  } finally {
    rl.close();
  }
}

/** Runs one turn outside the REPL; Ctrl-C cancels it. */
async function runTurn(client: AgentdClient, sessionId: string, prompt: string, confirm: Confirming): Promise<boolean> {
  const call = client.streamGenerate({ sessionId, prompt });
  const onInterrupt = () => call.cancel();
  process.on("SIGINT", onInterrupt);
  // A terminal is asked; a pipe is not (there is nobody to answer).
  const terminal = process.stdin.isTTY ? createInterface({ input: process.stdin, output: process.stderr }) : null;
  try {
    return await streamTurn(call, { ...confirm, ask: terminal ? (question) => terminal.question(question).catch(() => null) : null });
  } finally {
    terminal?.close();
    process.off("SIGINT", onInterrupt);
  }
}

/** Prints a turn's events as they arrive, answering confirmations; returns false when it failed or was cancelled. */
async function streamTurn(call: ClientReadableStream<StreamGenerateResponse>, confirm: Confirming & { ask: Ask | null }): Promise<boolean> {
  let ok = false;
  try {
    for await (const outer of events(call)) {
      // A subagent's events come wrapped, perhaps several levels deep; its questions are asked like ours.
      let event = outer;
      const agents: string[] = [];
      while (event.payload?.$case === "subagent" && event.payload.subagent.event) {
        agents.push(event.payload.subagent.agent);
        event = event.payload.subagent.event;
      }
      if (event.payload?.$case === "confirmationRequired" && event.payload.confirmationRequired.confirmation) {
        if (agents.length > 0) console.error(`\n[subagent ${agents.join(" › ")} asks]`);
        await answerConfirmation(confirm.client, event.payload.confirmationRequired.confirmation, confirm);
        continue;
      }
      if (agents.length > 0) renderSubagent(agents.join(" › "), event);
      else ok = render(event) ?? ok;
    }
  } catch (error) {
    const { code, details } = error as Partial<ServiceError>;
    console.error(code === status.CANCELLED ? "\n[cancelled]" : `\n[error] ${details ?? String(error)}`);
    // The server speaks of RPCs; at the terminal, the flags are what a person can change.
    if (code === status.FAILED_PRECONDITION && details?.includes("has no model")) {
      console.error("agentd chat: choose a model with --script FILE, or --provider and --model");
    }
    return false;
  }
  return ok;
}

/** A subagent's progress, on stderr: its tool calls and how it ended (its answer comes back as the task's result). */
function renderSubagent(agent: string, event: AgentEvent): void {
  const payload = event.payload;
  switch (payload?.$case) {
    case "turnStarted":
      console.error(`\n[${agent}] started`);
      break;
    case "toolCall":
      console.error(`[${agent}] [tool] ${payload.toolCall.name} ${payload.toolCall.argumentsJson}`);
      break;
    case "permissionDenied":
      console.error(`[${agent}] [denied] ${payload.permissionDenied.toolName}`);
      break;
    case "turnCompleted":
      console.error(`[${agent}] done`);
      break;
    case "error":
      console.error(`[${agent}] [error] ${payload.error.code}: ${payload.error.message}`);
      break;
    case "cancelled":
      console.error(`[${agent}] [cancelled] ${payload.cancelled.reason}`);
      break;
    default:
      break;
  }
}

/** Prints one event; returns the turn's outcome for terminal events. */
function render(event: AgentEvent): boolean | undefined {
  const payload = event.payload;
  switch (payload?.$case) {
    case "textDelta":
      process.stdout.write(payload.textDelta.text);
      return undefined;
    case "toolCall":
      console.error(`\n[tool] ${payload.toolCall.name} ${payload.toolCall.argumentsJson}`);
      return undefined;
    case "toolResult": {
      const { output, isError } = payload.toolResult;
      const preview = output.length > 200 ? `${output.slice(0, 200)}…` : output;
      console.error(`[${isError ? "tool error" : "tool result"}] ${preview}`);
      return undefined;
    }
    case "turnCompleted": {
      process.stdout.write("\n");
      const usage = payload.turnCompleted.result?.usage;
      const cost = (usage?.costUsd ?? 0) > 0 ? `, ${usage!.costUsd.toFixed(6)} USD` : "";
      console.error(`\n[done] ${usage?.inputTokens ?? 0} in / ${usage?.outputTokens ?? 0} out tokens${cost}`);
      return true;
    }
    case "error":
      console.error(`\n[error] ${payload.error.code}: ${payload.error.message}`);
      return false;
    case "cancelled":
      console.error(`\n[cancelled] ${payload.cancelled.reason}`);
      return false;
    case "permissionDenied":
      console.error(`[denied] ${payload.permissionDenied.toolName}${payload.permissionDenied.rule ? ` by rule ${payload.permissionDenied.rule}` : ""}`);
      return undefined;
    case "confirmationResolved": {
      const { runs, resolvedBy, reason } = payload.confirmationResolved;
      console.error(`[${runs ? "approved" : "not approved"} by ${resolvedBy}${reason ? `: ${reason}` : ""}]`);
      return undefined;
    }
    case "persistenceFailed":
      console.error(`\n[warning] the server could not save this session: ${payload.persistenceFailed.message}`);
      return undefined;
    default:
      return undefined;
  }
}
