import { decodeUriComponentOrKeep } from "../util/values.js";
import { httpEndpoint } from "./http-endpoint.js";
import type { McpTransportSpec } from "./types.js";

/**
 * What a spec holds that must never reach a status, an error or a log line: env and header values,
 * and the user info and query of a URL. Values shorter than 4 characters are left out: they are not
 * secrets ("1", "on"), and scrubbing them would mangle every message.
 */
export function secretsOf(spec: McpTransportSpec): string[] {
  const values: string[] = [];
  if (spec.type === "stdio") {
    values.push(...Object.values(spec.env));
  } else {
    // The headers actually sent: user info in the URL becomes an Authorization header.
    const { headers } = parseUrl(spec.url) ? httpEndpoint(spec.url, spec.headers) : spec;
    for (const value of Object.values(headers)) {
      // "Bearer <token>": the token alone may show up in a message too (the scheme is no secret).
      values.push(value, ...value.trim().split(/\s+/).slice(1));
    }
    const url = parseUrl(spec.url);
    if (url) {
      values.push(decodeUriComponentOrKeep(url.username), decodeUriComponentOrKeep(url.password), url.search.slice(1));
      for (const value of url.searchParams.values()) values.push(value);
    }
  }
  const unique = new Set(values.filter((value) => value.length >= 4));
  // Longest first, so a value that contains another is replaced whole.
  return [...unique].sort((a, b) => b.length - a.length);
}

/** `text` with every secret replaced by "[redacted]". */
export function scrub(text: string, secrets: readonly string[]): string {
  let result = text;
  for (const secret of secrets) result = result.split(secret).join("[redacted]");
  return result;
}

/** What status shows as the server's target: the command line, or the URL without user info, query or fragment. */
export function describeTarget(spec: McpTransportSpec): string {
  if (spec.type === "stdio") return [spec.command, ...spec.args].map(shellWord).join(" ");
  const url = parseUrl(spec.url);
  if (!url) return "(invalid URL)";
  url.username = "";
  url.password = "";
  url.search = "";
  url.hash = "";
  return url.href;
}

function shellWord(word: string): string {
  return word !== "" && /^[\w@%+=:,./-]+$/.test(word) ? word : JSON.stringify(word);
}

function parseUrl(text: string): URL | null {
  try {
    return new URL(text);
  } catch {
    return null;
  }
}
