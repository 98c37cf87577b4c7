import { isPlainObject, quoted } from "../util/values.js";
import type { McpTransportSpec } from "./types.js";

/**
 * Reads the `mcpServers` object users already have in their editors' config (Claude Desktop, Cursor,
 * VS Code): `{ "name": { "command", "args", "env", "cwd" } }` or `{ "name": { "url", "headers", "type" } }`.
 */

const SERVER_NAME = /^[a-zA-Z0-9_-]{1,32}$/;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const STDIO_FIELDS = new Set(["type", "command", "args", "env", "cwd"]);
const URL_FIELDS = new Set(["type", "url", "headers"]);
// Other clients' settings that change nothing about how to reach the server: accepted and ignored,
// so a config can be pasted as it is. `disabled: true` leaves the server out.
const IGNORED_FIELDS = new Set(["description", "disabled", "autoApprove", "alwaysAllow", "timeout"]);
const URL_TYPES: Record<string, "http" | "sse"> = { http: "http", "streamable-http": "http", sse: "sse" };

/**
 * Why `name` cannot name an MCP server, or null when it can. Server names become part of tool
 * names, `mcp__<server>__<tool>`, so they must be short, plain, and never blur where the server
 * part ends: no "__" inside and no "_" at the end.
 */
export function checkServerName(name: string): string | null {
  if (!SERVER_NAME.test(name)) return 'an MCP server name must be 1 to 32 letters, digits, "_" or "-"';
  if (name.includes("__") || name.endsWith("_")) {
    return 'an MCP server name must not contain "__" or end with "_" (tool names are mcp__<server>__<tool>)';
  }
  return null;
}

/**
 * The servers in `value` (none when it is undefined or null: an absent or empty section); throws an
 * Error naming `where`, the server and the field for anything wrong.
 */
export function parseMcpServers(value: unknown, where: string): Record<string, McpTransportSpec> {
  if (value === undefined || value === null) return {};
  if (!isPlainObject(value)) throw new Error(`${where}: must be an object of MCP servers by name`);
  const servers: Record<string, McpTransportSpec> = {};
  for (const [name, entry] of Object.entries(value)) {
    const problem = checkServerName(name);
    if (problem) throw new Error(`${where}: MCP server ${quoted(name)}: ${problem}`);
    const fail = (message: string): never => {
      throw new Error(`${where}: MCP server "${name}": ${message}`);
    };
    if (!isPlainObject(entry)) fail("must be an object with a command or a url");
    const fields = entry as Record<string, unknown>;
    if (fields.disabled !== undefined && typeof fields.disabled !== "boolean") fail('field "disabled" must be true or false');
    if (fields.disabled === true) continue;
    servers[name] = parseServer(fields, fail);
  }
  return servers;
}

function parseServer(fields: Record<string, unknown>, fail: (message: string) => never): McpTransportSpec {
  const type = fields.type;
  if (type !== undefined && typeof type !== "string") fail('field "type" must be a string');
  const hasCommand = fields.command !== undefined;
  const hasUrl = fields.url !== undefined;
  if (hasCommand && hasUrl) fail('give either "command" (a local server) or "url" (a remote one), not both');
  if (!hasCommand && !hasUrl) fail('needs "command" (a local server) or "url" (a remote one)');

  if (hasCommand) {
    if (type !== undefined && type !== "stdio") fail(`field "type" is "${String(type)}" but a server with a command uses stdio`);
    checkKnownFields(fields, STDIO_FIELDS, fail);
    const command = fields.command;
    if (typeof command !== "string" || command.trim() === "") fail('field "command" must be a non-empty string');
    return {
      type: "stdio",
      command: command as string,
      args: stringArray(fields.args, "args", fail),
      env: stringRecord(fields.env, "env", fail, (key) => key !== "" && !key.includes("=") && !key.includes("\0")),
      cwd: optionalString(fields.cwd, "cwd", fail),
    };
  }

  const kind = type === undefined ? "http" : URL_TYPES[type as string];
  if (!kind) fail(`field "type" must be "http", "streamable-http" or "sse" for a server with a url, not ${quoted(String(type))}`);
  checkKnownFields(fields, URL_FIELDS, fail);
  return {
    type: kind,
    url: httpUrl(fields.url, fail),
    headers: stringRecord(fields.headers, "headers", fail, (key) => HEADER_NAME.test(key), (value) => !/[\r\n\0]/.test(value)),
  };
}

function checkKnownFields(fields: Record<string, unknown>, known: Set<string>, fail: (message: string) => never): void {
  for (const [key, value] of Object.entries(fields)) {
    if (value !== undefined && !known.has(key) && !IGNORED_FIELDS.has(key)) fail(`unknown field ${quoted(key)} (expected ${[...known].join(", ")})`);
  }
}

function httpUrl(value: unknown, fail: (message: string) => never): string {
  if (typeof value !== "string" || value === "") return fail('field "url" must be a non-empty string');
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    // The URL itself is not echoed: it may carry a token.
    return fail('field "url" is not a valid URL');
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") fail('field "url" must be an http or https URL');
  return value;
}

function stringArray(value: unknown, field: string, fail: (message: string) => never): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || !value.every((item) => typeof item === "string")) fail(`field "${field}" must be an array of strings`);
  return [...(value as string[])];
}

function optionalString(value: unknown, field: string, fail: (message: string) => never): string {
  if (value === undefined) return "";
  if (typeof value !== "string") fail(`field "${field}" must be a string`);
  return value as string;
}

/** Keys and values are checked; an invalid value is never echoed (env and headers hold secrets). */
function stringRecord(
  value: unknown,
  field: string,
  fail: (message: string) => never,
  validKey: (key: string) => boolean,
  validValue: (value: string) => boolean = () => true,
): Record<string, string> {
  if (value === undefined) return {};
  if (!isPlainObject(value)) fail(`field "${field}" must be an object of strings`);
  const record: Record<string, string> = {};
  for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
    if (!validKey(key)) fail(`field "${field}" has an invalid name ${quoted(key)}`);
    if (typeof item !== "string") fail(`field "${field}.${key}" must be a string`);
    if (!validValue(item as string)) fail(`field "${field}.${key}" must not contain line breaks`);
    record[key] = item as string;
  }
  return record;
}
