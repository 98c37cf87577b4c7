import { parseArgs } from "node:util";
import { connect, connectOptions, CONNECT_HELP } from "./connect.js";
import { ChildPolicy, CompactionMethod, Role, SessionState, type ContextUsage, type Session, type SubscribeResponse } from "../gen/agentd/v1/runtime.js";

const HELP = `agentd sessions: manage sessions

  agentd sessions list [--owner NAME]
  agentd sessions get ID
  agentd sessions create [--owner NAME]
  agentd sessions destroy ID [--orphan]
  agentd sessions messages ID
  agentd sessions cancel|pause|resume ID
  agentd sessions start ID PROMPT            start a turn the server runs on its own; prints its id
  agentd sessions follow ID [--after N]      its events after sequence N (default: from now), then live; Ctrl-C leaves
  agentd sessions context ID                 how full the model's context is
  agentd sessions compact ID [INSTRUCTIONS]  summarise the older part of the context (--undo: undo the last)
  agentd sessions clear ID                   start the model's context afresh (the transcript stays)
  agentd sessions rewind ID TURN_ID          the context ends before that turn (workspace files are not restored)
  agentd sessions fork ID [TURN_ID]          a new session with the history before that turn

${CONNECT_HELP}`;

export async function runSessions(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      ...connectOptions,
      owner: { type: "string", default: "" },
      orphan: { type: "boolean", default: false },
      after: { type: "string" },
      undo: { type: "boolean", default: false },
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
      case "create":
        console.log(describe((await client.createSession({ owner: values.owner })).session!));
        return 0;
      case "destroy": {
        const childPolicy = values.orphan ? ChildPolicy.CHILD_POLICY_ORPHAN : ChildPolicy.CHILD_POLICY_CASCADE;
        const result = await client.destroySession({ sessionId: id, childPolicy });
        console.log(`destroyed ${result.destroyedSessionIds.join(", ")}`);
        if (result.orphanedSessionIds.length > 0) console.log(`orphaned ${result.orphanedSessionIds.join(", ")}`);
        return 0;
      }
      case "messages": {
        let pageToken = "";
        do {
          const page = await client.getMessages({ sessionId: id, pageToken });
          for (const m of page.messages) {
            const body = m.toolResult ? m.toolResult.output : m.text;
            const calls = m.toolCalls.map((c) => ` [calls ${c.name} ${c.argumentsJson}]`).join("");
            console.log(`${Role[m.role].replace("ROLE_", "").toLowerCase()}: ${body}${calls}`);
          }
          pageToken = page.nextPageToken;
        } while (pageToken !== "");
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
        return await follow(client, id, values.after);
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
    console.error(`agentd: ${(error as { details?: string }).details ?? String(error)}`);
    return 1;
  } finally {
    client.close();
  }
}

/** Prints a session's events as they come (one line each, text as it streams) until Ctrl-C. */
async function follow(client: ReturnType<typeof connect>, sessionId: string, after: string | undefined): Promise<number> {
  const afterSequence = after === undefined ? (await client.getSession({ sessionId })).session!.lastSequence : Number(after);
  if (!Number.isSafeInteger(afterSequence) || afterSequence < 0) throw new Error(`--after must be a sequence number, got "${after}"`);
  const call = client.subscribe({ sessionId, afterSequence });
  process.once("SIGINT", () => call.cancel());
  try {
    for await (const message of call as AsyncIterable<SubscribeResponse>) {
      if (message.caughtUp) console.error(`[caught up at ${message.caughtUp.sequence}; live from here]`);
      const event = message.event;
      if (!event?.payload) continue;
      if (event.payload.$case === "textDelta") process.stdout.write(event.payload.textDelta.text);
      else console.error(`\n[${event.sequence}] ${event.payload.$case}`);
    }
  } catch (error) {
    if ((error as { code?: number }).code === 1) return 0;
    throw error;
  }
  return 0;
}

function describeUsage(usage: ContextUsage | undefined): string {
  if (!usage) return "";
  const window = usage.contextWindow > 0 ? ` of ${usage.contextWindow} (${Math.round(usage.fraction * 100)}%)` : "";
  return `${usage.tokens} tokens${window}; ${usage.contextMessageCount} messages in context, ${usage.transcriptMessageCount} in the transcript${usage.note ? `\n${usage.note}` : ""}`;
}

function describe(session: Session): string {
  const state = SessionState[session.state].replace("SESSION_STATE_", "").toLowerCase();
  const parent = session.parentId ? ` child of ${session.parentId}` : "";
  return `${session.id}  ${state}  owner=${session.owner}  messages=${session.messageCount}${parent}`;
}
