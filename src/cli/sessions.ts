import { parseArgs } from "node:util";
import { connect, connectOptions, CONNECT_HELP } from "./connect.js";
import { ChildPolicy, Role, SessionState, type Session } from "../gen/agentd/v1/runtime.js";

const HELP = `agentd sessions: manage sessions

  agentd sessions list [--owner NAME]
  agentd sessions get ID
  agentd sessions create [--owner NAME]
  agentd sessions destroy ID [--orphan]
  agentd sessions messages ID
  agentd sessions cancel|pause|resume ID

${CONNECT_HELP}`;

export async function runSessions(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      ...connectOptions,
      owner: { type: "string", default: "" },
      orphan: { type: "boolean", default: false },
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

function describe(session: Session): string {
  const state = SessionState[session.state].replace("SESSION_STATE_", "").toLowerCase();
  const parent = session.parentId ? ` child of ${session.parentId}` : "";
  return `${session.id}  ${state}  owner=${session.owner}  messages=${session.messageCount}${parent}`;
}
