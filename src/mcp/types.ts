/** How agentd reaches one MCP server, and what it tells about it. No SDK types leak out of here. */

export type McpTransportSpec =
  | {
      type: "stdio";
      command: string;
      args: string[];
      /** Added to the SDK's small default environment (PATH, HOME, ...); never logged. */
      env: Record<string, string>;
      /** "" runs the server in agentd's own working directory. */
      cwd: string;
    }
  /** Streamable HTTP, falling back to the old SSE transport when the server does not speak it. */
  | { type: "http"; url: string; headers: Record<string, string> }
  /** The old SSE transport only. */
  | { type: "sse"; url: string; headers: Record<string, string> };

export type McpTransportKind = McpTransportSpec["type"];

export type McpServerState = "connecting" | "connected" | "failed" | "disconnected";

export interface McpServerStatus {
  name: string;
  /** For an "http" spec, "sse" once it fell back to the old transport. */
  transport: McpTransportKind;
  /** The command and args, or the URL without user info, query or fragment: never env or headers. */
  target: string;
  state: McpServerState;
  /** The last failure, "" when none. Env and header values are scrubbed from it. */
  error: string;
  /** From the initialize result; "" before the first connection. */
  serverName: string;
  serverVersion: string;
  toolCount: number;
  /** The stdio child's pid while it runs. */
  pid: number | null;
  /** Failed connection attempts in a row. */
  attempts: number;
  /** When the next retry happens (epoch ms) while failed; 0 otherwise. */
  nextRetryAtMs: number;
}

/** One tool as the server listed it. */
export interface McpToolInfo {
  name: string;
  description: string;
  /** The server's JSON schema of the arguments, as given. */
  inputSchema: Record<string, unknown>;
  /** The server's annotations.readOnlyHint; a hint, so only `true` counts. */
  readOnlyHint: boolean;
}
