import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import type { ErrorCode, McpError, ToolListChangedNotificationSchema } from "@modelcontextprotocol/sdk/types.js";
import type { closeClient, openClient } from "./transport.js";

/** What a connection uses of the MCP SDK (the transports included: they are built on it). */
export interface McpSdk {
  Client: typeof Client;
  ErrorCode: typeof ErrorCode;
  McpError: typeof McpError;
  ToolListChangedNotificationSchema: typeof ToolListChangedNotificationSchema;
  openClient: typeof openClient;
  closeClient: typeof closeClient;
}

let loading: Promise<McpSdk> | null = null;
let loaded: McpSdk | null = null;

/**
 * Loads the SDK when the first connection opens: a server without MCP servers starts without it
 * (its modules take a tenth of a second or more to load).
 */
export function loadMcpSdk(): Promise<McpSdk> {
  return (loading ??= Promise.all([
    import("@modelcontextprotocol/sdk/client/index.js"),
    import("@modelcontextprotocol/sdk/types.js"),
    import("./transport.js"),
  ]).then(([client, types, transport]) => {
    const { ErrorCode, McpError, ToolListChangedNotificationSchema } = types;
    loaded = { Client: client.Client, ErrorCode, McpError, ToolListChangedNotificationSchema, openClient: transport.openClient, closeClient: transport.closeClient };
    return loaded;
  }));
}

/** The SDK once loaded: whatever holds a client has it (a client is made only after loadMcpSdk). */
export function loadedMcpSdk(): McpSdk {
  if (!loaded) throw new Error("the MCP SDK is used before it was loaded");
  return loaded;
}
