import { decodeUriComponentOrKeep } from "../util/values.js";

/**
 * Where an HTTP MCP server is and what to send it. fetch refuses URLs with user info, so
 * `https://user:pass@host/mcp` becomes the URL without it plus a Basic Authorization header
 * (as curl does), unless the headers already carry one.
 */
export function httpEndpoint(url: string, headers: Record<string, string>): { url: URL; headers: Record<string, string> } {
  const parsed = new URL(url);
  if (parsed.username === "" && parsed.password === "") return { url: parsed, headers };
  const credentials = `${decodeUriComponentOrKeep(parsed.username)}:${decodeUriComponentOrKeep(parsed.password)}`;
  parsed.username = "";
  parsed.password = "";
  const hasAuthorization = Object.keys(headers).some((name) => name.toLowerCase() === "authorization");
  return {
    url: parsed,
    headers: hasAuthorization ? headers : { ...headers, Authorization: `Basic ${Buffer.from(credentials).toString("base64")}` },
  };
}
