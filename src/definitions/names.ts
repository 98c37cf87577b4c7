/** The name rule of skills and subagent definitions (the Agent Skills spec's rule for `name`). */
const NAME = /^[a-z0-9]+(?:-[a-z0-9]+)*$/;
export const MAX_NAME_CHARS = 64;

/** Why `name` is not a valid skill or agent name; null when it is. */
export function invalidName(name: string): string | null {
  if (name.length === 0 || name.length > MAX_NAME_CHARS) return `must be 1 to ${MAX_NAME_CHARS} characters`;
  if (!NAME.test(name)) return 'must be lowercase letters, digits and hyphens, not starting or ending with a hyphen and without "--"';
  return null;
}

/** Orders by name, code point by code point: the same order on every machine, whatever its locale. */
export function compareByName(a: { name: string }, b: { name: string }): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

export { quoted } from "../util/values.js";
