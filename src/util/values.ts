/** Small checks and renderings of untrusted values, shared by the parsers. */

/** A JSON object: not null, not an array. */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A value for an error message: quoted, and cut so that a long value cannot bloat the message. */
export function quoted(value: string, max = 64): string {
  return JSON.stringify(value.length > max ? `${value.slice(0, max)}…` : value);
}

/** A URL component decoded, or left as it is when it is not valid percent-encoding. */
export function decodeUriComponentOrKeep(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
