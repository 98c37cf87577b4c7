import { parseArgs } from "node:util";
import { hashToken, newToken, parseTokenEntry, type TokenEntry } from "../server/auth/tokens.js";

const HELP = `agentd token: make bearer tokens for the server's tokens file (auth.tokensFile)

  agentd token create --owner NAME [--role user|admin] [--name LABEL] [--json]

Prints a new token, once (the server keeps only its SHA-256), and the entry to add to the
"tokens" array of the tokens file. Clients send it as 'authorization: Bearer <token>'.

  --owner NAME   the owner the token's calls act as
  --role ROLE    user (default: own sessions only) or admin (every session)
  --name LABEL   a label for people, such as the device or service holding the token
  --json         print {"token": ..., "entry": {...}} on one line instead`;

export async function runToken(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: {
        owner: { type: "string" },
        role: { type: "string", default: "user" },
        name: { type: "string" },
        json: { type: "boolean", default: false },
        help: { type: "boolean", short: "h" },
      },
      allowPositionals: true,
    });
  } catch (error) {
    console.error(`agentd token: ${(error as Error).message}\n\n${HELP}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [action, ...extra] = positionals;
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (action !== "create" || extra.length > 0) {
    console.error(action === undefined ? HELP : `agentd token: unknown action "${[action, ...extra].join(" ")}"\n\n${HELP}`);
    return 2;
  }
  if (values.owner === undefined) {
    console.error(`agentd token create: --owner is required\n\n${HELP}`);
    return 2;
  }

  const token = newToken();
  let entry: TokenEntry;
  try {
    // The same checks the server applies when it loads the file.
    const raw: Record<string, unknown> = { sha256: hashToken(token), owner: values.owner, role: values.role };
    if (values.name !== undefined) raw.name = values.name;
    entry = parseTokenEntry(raw, 0);
  } catch (error) {
    console.error(`agentd token create: ${(error as Error).message.replace(/^entry 0[^:]*: /, "")}`);
    return 2;
  }
  const fileEntry = { sha256: entry.sha256, owner: entry.owner, role: entry.role, ...(entry.name !== "" ? { name: entry.name } : {}) };

  if (values.json) {
    console.log(JSON.stringify({ token, entry: fileEntry }));
    return 0;
  }
  console.log(`Token (shown only now; the server stores only its hash):\n\n  ${token}\n`);
  console.log(`Add this entry to the "tokens" array of the tokens file, then restart the server:\n\n  ${JSON.stringify(fileEntry)}\n`);
  console.log(`Clients send it as metadata:  authorization: Bearer ${token.slice(0, 8)}…`);
  return 0;
}
