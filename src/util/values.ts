/** Small checks and renderings of untrusted values, shared by the parsers. */

/** A JSON object: not null, not an array. */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Whether two values hold the same plain data: equal primitives, arrays of equal members, plain
 * objects with the same keys in the same order and equal members (as their JSON would be the same).
 */
export function sameData(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameData(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b) || Object.getPrototypeOf(a) !== Object.prototype || Object.getPrototypeOf(b) !== Object.prototype) return false;
  // `for in` walks a's own keys in order without listing them (this runs for every session at a
  // restart); a plain object inherits no enumerable keys.
  const keys = Object.keys(b);
  let i = 0;
  for (const key in a) {
    if (key !== keys[i++] || !sameData((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key])) return false;
  }
  return i === keys.length;
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
