import { compareByName } from "./names.js";
import type { DefinitionProblem } from "./problems.js";

export type DefinitionsLoader<T> = () => Promise<{ items: T[]; problems: DefinitionProblem[] }>;

/**
 * The server's own definitions (its skills or agents folder), replaced as a whole on each reload:
 * readers see the old set or the new one, never a mix. The loader reports a bad file as a problem
 * and loads the rest, so one bad file never removes the others.
 */
export class GlobalDefinitions<T extends { name: string }> {
  private items: readonly T[] = [];
  private byName = new Map<string, T>();
  private lastProblems: readonly DefinitionProblem[] = [];
  /** Reloads run one after another, so an older, slower one never overwrites a newer one. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly loader: DefinitionsLoader<T>) {}

  /** Loads the set again. If the loader itself fails, the current set stays and the error is thrown. */
  reload(): Promise<{ items: T[]; problems: DefinitionProblem[] }> {
    const run = async () => {
      const { items, problems } = await this.loader();
      const byName = new Map<string, T>();
      // The loader dedupes with a problem per duplicate; this only keeps the map honest if one does not.
      for (const item of items) if (!byName.has(item.name)) byName.set(item.name, item);
      const sorted = [...byName.values()].sort(compareByName);
      this.byName = byName;
      this.items = sorted;
      this.lastProblems = [...problems];
      return { items: [...sorted], problems: [...problems] };
    };
    const result = this.queue.then(run, run);
    this.queue = result.catch(() => undefined);
    return result;
  }

  /** The current set, sorted by name. */
  list(): readonly T[] {
    return this.items;
  }

  get(name: string): T | undefined {
    return this.byName.get(name);
  }

  /** The problems of the last load. */
  problems(): readonly DefinitionProblem[] {
    return this.lastProblems;
  }
}
