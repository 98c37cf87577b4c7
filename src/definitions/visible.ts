import { compareByName } from "./names.js";

export type DefinitionScope = "global" | "session" | "inherited";

/**
 * What one session sees: `layers[0]` is the session's own definitions, `layers[1..]` its ancestors',
 * nearest first. A nearer layer shadows a farther one, and any session layer shadows the global
 * set. Sorted by name.
 */
export function visibleDefinitions<T extends { name: string }>(
  global: readonly T[],
  layers: ReadonlyArray<readonly T[]>,
): Array<{ item: T; scope: DefinitionScope }> {
  const seen = new Map<string, { item: T; scope: DefinitionScope }>();
  layers.forEach((layer, depth) => {
    const scope = depth === 0 ? "session" : "inherited";
    for (const item of layer) if (!seen.has(item.name)) seen.set(item.name, { item, scope });
  });
  for (const item of global) if (!seen.has(item.name)) seen.set(item.name, { item, scope: "global" });
  return [...seen.values()].sort((a, b) => compareByName(a.item, b.item));
}
