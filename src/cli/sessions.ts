import { parseArgs } from "node:util";
import { status, type ServiceError } from "@grpc/grpc-js";
import { connect, connectOptions, CONNECT_HELP } from "./connect.js";
import { MODEL_HELP, modelConfigFromFlags, modelOptions } from "./model-options.js";
import {
  ChildPolicy,
  CompactionMethod,
  CompactionTrigger,
  ContextChangeKind,
  MessageKind,
  Role,
  SessionState,
  StopReason,
  type AgentEvent,
  type ContextUsage,
  type Message,
  type Session,
  type SubscribeResponse,
} from "../gen/agentd/v1/runtime.js";

const HELP = `agentd sessions: manage sessions

  agentd sessions list [--owner NAME]
  agentd sessions get ID
  agentd sessions create [--owner NAME] [--provider P --model M [--base-url URL] [--context-window N] | --script FILE]
  agentd sessions destroy ID [--orphan]
  agentd sessions messages ID                the transcript, each message marked by where it stands in the context
  agentd sessions cancel|pause|resume ID
  agentd sessions start ID PROMPT            start a turn the server runs on its own; prints its id
  agentd sessions follow ID [--after N | --from-oldest] [--descendants]
                                             its events, then live; Ctrl-C leaves
  agentd sessions context ID                 how full the model's context is
  agentd sessions compact ID [INSTRUCTIONS]  summarise the older part of the context (--undo: undo the last)
  agentd sessions clear ID                   start the model's context afresh (the transcript stays)
  agentd sessions rewind ID TURN_ID          the context ends before that turn (workspace files are not restored)
  agentd sessions fork ID [TURN_ID]          a new session with the history before that turn

${CONNECT_HELP}

create: the new session's model (without these, the server's default):
${MODEL_HELP}

follow:
  --after N         replay the events after sequence N first (default: none, from now on)
  --from-oldest     replay every event still kept (with --after N: those after N, or from the
                    oldest kept when some of them are gone, instead of OUT_OF_RANGE)
  --descendants     also the live events of its child sessions, each line labelled with the
                    child's id prefix
  Text streams on stdout, one line per other event on stderr ([sequence] kind: details). A stream
  the server ends (RESOURCE_EXHAUSTED for a reader too slow, OUT_OF_RANGE for events no longer
  kept, ...) is reported with its status, and the command exits 1.

messages: a message the model's next call sees has no tag; the others are tagged
  [out of context] (compacted away or cleared) or [rewound]; [summary] marks a compaction's
  summary and [context start] the first message of the context after the last compaction or clear.`;

export async function runSessions(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      ...connectOptions,
      owner: { type: "string", default: "" },
      orphan: { type: "boolean", default: false },
      after: { type: "string" },
      descendants: { type: "boolean", default: false },
      "from-oldest": { type: "boolean", default: false },
      undo: { type: "boolean", default: false },
      ...modelOptions,
      help: { type: "boolean", short: "h" },
    },
    allowPositionals: true,
  });
  const [action, id = ""] = positionals;
  if (values.help || !action) {
    console.log(HELP);
    return values.help ? 0 : 2;
  }
  const client = connect(values);
  try {
    switch (action) {
      case "list": {
        let pageToken = "";
        do {
          const page = await client.listSessions({ owner: values.owner, pageToken, pageSize: 100 });
          page.sessions.forEach((s) => console.log(describe(s)));
          pageToken = page.nextPageToken;
        } while (pageToken !== "");
        return 0;
      }
      case "get":
        console.log(JSON.stringify((await client.getSession({ sessionId: id })).session, null, 2));
        return 0;
      case "create": {
        const model = modelConfigFromFlags(values);
        console.log(describe((await client.createSession({ owner: values.owner, config: model ? { model } : {} })).session!));
        return 0;
      }
      case "destroy": {
        const childPolicy = values.orphan ? ChildPolicy.CHILD_POLICY_ORPHAN : ChildPolicy.CHILD_POLICY_CASCADE;
        const result = await client.destroySession({ sessionId: id, childPolicy });
        console.log(`destroyed ${result.destroyedSessionIds.join(", ")}`);
        if (result.orphanedSessionIds.length > 0) console.log(`orphaned ${result.orphanedSessionIds.join(", ")}`);
        return 0;
      }
      case "messages": {
        let pageToken = "";
        let total = 0;
        let inContext = 0;
        do {
          const page = await client.getMessages({ sessionId: id, pageToken });
          for (const m of page.messages) {
            const body = m.toolResult ? m.toolResult.output : m.text;
            const calls = m.toolCalls.map((c) => ` [calls ${c.name} ${c.argumentsJson}]`).join("");
            console.log(`${contextTags(m)}${Role[m.role].replace("ROLE_", "").toLowerCase()}: ${body}${calls}`);
            total += 1;
            if (m.inContext) inContext += 1;
          }
          pageToken = page.nextPageToken;
        } while (pageToken !== "");
        console.error(`${total} messages, ${inContext} of them in the model's context`);
        return 0;
      }
      case "cancel": {
        const result = await client.cancel({ sessionId: id });
        console.log(result.cancelled ? `cancelled turn ${result.turnId}` : "no turn was running");
        return 0;
      }
      case "pause":
        console.log(describe((await client.pause({ sessionId: id })).session!));
        return 0;
      case "start": {
        const prompt = positionals.slice(2).join(" ");
        const started = await client.startTurn({ sessionId: id, prompt });
        console.log(`turn ${started.turnId} started; follow it with: agentd sessions follow ${id} --after ${started.afterSequence}`);
        return 0;
      }
      case "follow":
        return await follow(client, id, { after: values.after, descendants: values.descendants, fromOldest: values["from-oldest"] });
      case "context":
        console.log(describeUsage((await client.getContextUsage({ sessionId: id })).usage));
        return 0;
      case "compact": {
        const reply = await client.compactSession({ sessionId: id, instructions: positionals.slice(2).join(" "), undo: values.undo });
        const c = reply.compaction;
        if (c) console.log(`${CompactionMethod[c.method].replace("COMPACTION_METHOD_", "").toLowerCase()}: ${c.tokensBefore} → ${c.tokensAfter} tokens, ${c.messagesBefore} → ${c.messagesAfter} messages${c.reason ? ` (${c.reason})` : ""}`);
        else console.log("the last compaction was undone");
        console.log(describeUsage(reply.usage));
        return 0;
      }
      case "clear": {
        const reply = await client.clearContext({ sessionId: id });
        console.log(`${reply.messagesCleared} messages left the model's context; the transcript keeps them`);
        return 0;
      }
      case "rewind": {
        const reply = await client.rewindSession({ sessionId: id, turnId: positionals[2] ?? "" });
        console.log(`${reply.messagesRewound} messages rewound. ${reply.note}`);
        return 0;
      }
      case "fork": {
        const reply = await client.forkSession({ sessionId: id, turnId: positionals[2] ?? "" });
        console.log(`${describe(reply.session!)}\n${reply.messagesCopied} messages copied. ${reply.note}`);
        return 0;
      }
      case "resume":
        console.log(describe((await client.resume({ sessionId: id })).session!));
        return 0;
      default:
        console.error(`unknown action "${action}"\n\n${HELP}`);
        return 2;
    }
  } catch (error) {
    const { code, details } = error as Partial<ServiceError>;
    if (typeof code === "number" && details !== undefined) console.error(`agentd: ${statusName(code)}: ${details}`);
    else console.error(`agentd: ${error instanceof Error ? error.message : String(error)}`);
    return 1;
  } finally {
    client.close();
  }
}

interface FollowOptions {
  after: string | undefined;
  descendants: boolean;
  fromOldest: boolean;
}

/**
 * Prints a session's events as they come until Ctrl-C: text as it streams on stdout, one line per
 * other event on stderr. A stream the server ends with an error is reported with its status and
 * exits non-zero.
 */
async function follow(client: ReturnType<typeof connect>, sessionId: string, options: FollowOptions): Promise<number> {
  const { after } = options;
  let afterSequence: number;
  if (after !== undefined) afterSequence = Number(after);
  else if (options.fromOldest) afterSequence = 0;
  else afterSequence = (await client.getSession({ sessionId })).session!.lastSequence;
  if (after !== undefined && (after.trim() === "" || !Number.isSafeInteger(afterSequence) || afterSequence < 0)) {
    throw new Error(`--after must be a sequence number, got "${after}"`);
  }
  const call = client.subscribe({ sessionId, afterSequence, includeDescendants: options.descendants, fromOldestKept: options.fromOldest });
  let leaving = false;
  const leave = () => {
    leaving = true;
    call.cancel();
  };
  process.once("SIGINT", leave);
  // Whose text ends the last line of stdout, unterminated (null: none): an event line, or another
  // session's text, ends that line first; a descendant's text starts with its id prefix.
  let textFrom: string | null = null;
  // The last sequence of the followed session seen: where to pick up after a dropped connection.
  let lastSeen: number | undefined;
  const endText = () => {
    if (textFrom !== null) process.stdout.write("\n");
    textFrom = null;
  };
  try {
    for await (const message of call as AsyncIterable<SubscribeResponse>) {
      // On stderr only: a turn's text may go on across the end of the replay.
      if (message.caughtUp) console.error(`[caught up at ${message.caughtUp.sequence}; live from here]`);
      const event = message.event;
      if (!event?.payload) continue;
      const from = event.sessionId || sessionId;
      const descendant = from !== sessionId;
      if (!descendant && event.sequence > 0) lastSeen = event.sequence;
      if (event.payload.$case === "textDelta") {
        if (textFrom !== from) {
          endText();
          if (descendant) process.stdout.write(`[${shortId(from)}] `);
          textFrom = from;
        }
        process.stdout.write(event.payload.textDelta.text);
        continue;
      }
      endText();
      console.error(`[${descendant ? `${shortId(from)}:` : ""}${event.sequence}] ${describeEvent(event)}`);
    }
  } catch (error) {
    const { code, details } = error as Partial<ServiceError>;
    endText();
    if (code === status.CANCELLED && leaving) return 0;
    console.error(`agentd sessions follow: ${statusName(code)}: ${details ?? String(error)}`);
    const resumeAt = /after_sequence (\d+)/.exec(details ?? "")?.[1] ?? lastSeen;
    if (code === status.OUT_OF_RANGE) {
      console.error(`--from-oldest replays what is still kept: agentd sessions follow ${sessionId} --from-oldest`);
    } else if (resumeAt !== undefined) {
      console.error(`pick up where it stopped with: agentd sessions follow ${sessionId} --after ${resumeAt}`);
    }
    return 1;
  } finally {
    process.off("SIGINT", leave);
  }
  endText();
  console.error("[the session's stream ended]");
  return 0;
}

/** One event as a line: its kind, and what a person following wants to know of it. */
function describeEvent(event: AgentEvent): string {
  const payload = event.payload;
  switch (payload?.$case) {
    case undefined:
      return "(empty)";
    case "turnStarted":
      return `turnStarted ${event.turnId}: ${JSON.stringify(payload.turnStarted.prompt)}`;
    case "textDelta":
      return `textDelta ${JSON.stringify(payload.textDelta.text)}`;
    case "toolCall":
      return `toolCall ${payload.toolCall.name} ${payload.toolCall.argumentsJson}`;
    case "toolResult": {
      const { name, output, isError } = payload.toolResult;
      return `toolResult ${name}${isError ? " (error)" : ""}: ${preview(output)}`;
    }
    case "usage": {
      const turn = payload.usage.turn;
      return `usage: ${turn?.inputTokens ?? 0} in / ${turn?.outputTokens ?? 0} out tokens this turn`;
    }
    case "turnCompleted": {
      const result = payload.turnCompleted.result;
      const usage = result?.usage;
      return `turnCompleted ${enumName(StopReason, result?.stopReason ?? 0, "STOP_REASON_")}: ${usage?.inputTokens ?? 0} in / ${usage?.outputTokens ?? 0} out tokens`;
    }
    case "error":
      return `error ${payload.error.code}: ${payload.error.message}`;
    case "cancelled":
      return `cancelled: ${payload.cancelled.reason || "no reason given"}`;
    case "persistenceFailed":
      return `persistenceFailed (attempt ${payload.persistenceFailed.attempts}): ${payload.persistenceFailed.message}`;
    case "stateChanged":
      return `stateChanged: ${enumName(SessionState, payload.stateChanged.state, "SESSION_STATE_")}`;
    case "permissionDenied": {
      const { toolName, rule } = payload.permissionDenied;
      return `permissionDenied ${toolName}${rule ? ` by rule ${rule}` : ""}`;
    }
    case "confirmationRequired": {
      const c = payload.confirmationRequired.confirmation;
      return `confirmationRequired ${c?.toolName ?? ""} ${c?.argumentsJson ?? ""} (answer it: confirmation ${c?.id ?? ""})`;
    }
    case "confirmationResolved": {
      const { runs, resolvedBy, reason } = payload.confirmationResolved;
      return `confirmationResolved: ${runs ? "approved" : "not approved"} by ${resolvedBy}${reason ? `: ${reason}` : ""}`;
    }
    case "callInDoubt":
      return `callInDoubt ${payload.callInDoubt.toolName} (call ${payload.callInDoubt.callId})`;
    case "subagent": {
      const { agent, childSessionId, event: inner } = payload.subagent;
      return `subagent ${agent} (${shortId(childSessionId)}): ${inner ? describeEvent(inner) : "(empty)"}`;
    }
    case "contextCompacted": {
      const c = payload.contextCompacted;
      const method = enumName(CompactionMethod, c.method, "COMPACTION_METHOD_");
      const trigger = enumName(CompactionTrigger, c.trigger, "COMPACTION_TRIGGER_");
      return `contextCompacted (${trigger} ${method}): ${c.tokensBefore} → ${c.tokensAfter} tokens, ${c.messagesBefore} → ${c.messagesAfter} messages${c.reason ? ` (${c.reason})` : ""}`;
    }
    case "contextChanged": {
      const c = payload.contextChanged;
      const kind = enumName(ContextChangeKind, c.kind, "CONTEXT_CHANGE_KIND_");
      return `contextChanged (${kind}${c.turnId ? ` to before ${c.turnId}` : ""}): ${c.messagesAffected} messages affected, ${c.messagesAfter} in context now`;
    }
  }
}

/** A message's marks in the model's context, as a tag before its line; empty for an ordinary message the model sees. */
export function contextTags(message: Pick<Message, "kind" | "inContext" | "contextStart" | "rewound">): string {
  const tags: string[] = [];
  if (message.kind === MessageKind.MESSAGE_KIND_SUMMARY) tags.push("summary");
  if (message.contextStart) tags.push("context start");
  if (message.rewound) tags.push("rewound");
  else if (!message.inContext) tags.push("out of context");
  return tags.length > 0 ? `[${tags.join(", ")}] ` : "";
}

function preview(text: string): string {
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

function shortId(id: string): string {
  return id.slice(0, 8);
}

function enumName(names: Record<number, string>, value: number, prefix: string): string {
  return (names[value] ?? String(value)).replace(prefix, "").toLowerCase();
}

/** A gRPC status code by name, such as RESOURCE_EXHAUSTED. */
function statusName(code: number | undefined): string {
  return code === undefined ? "ERROR" : (status[code] ?? `status ${code}`);
}

function describeUsage(usage: ContextUsage | undefined): string {
  if (!usage) return "";
  const window = usage.contextWindow > 0 ? ` of ${usage.contextWindow} (${Math.round(usage.fraction * 100)}%)` : "";
  return `${usage.tokens} tokens${window}; ${usage.contextMessageCount} messages in context, ${usage.transcriptMessageCount} in the transcript${usage.note ? `\n${usage.note}` : ""}`;
}

function describe(session: Session): string {
  const state = SessionState[session.state].replace("SESSION_STATE_", "").toLowerCase();
  const parent = session.parentId ? ` child of ${session.parentId}` : "";
  const model = session.config?.model?.provider ? `  model=${session.config.model.provider}/${session.config.model.model}` : "";
  return `${session.id}  ${state}  owner=${session.owner}  messages=${session.messageCount}${model}${parent}`;
}
