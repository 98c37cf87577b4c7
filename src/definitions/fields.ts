import { parseFrontMatter, type FrontMatter } from "./front-matter.js";
import { splitList } from "./lists.js";
import { invalidName, quoted } from "./names.js";
import type { DefinitionProblem } from "./problems.js";

export const MAX_DESCRIPTION_CHARS = 1024;

/** Thrown by a field reader; caught once, in readDefinition, and turned into a problem. */
class FieldProblem extends Error {
  constructor(
    readonly line: number,
    message: string,
  ) {
    super(message);
    this.name = "FieldProblem";
  }
}

/** Reads typed fields of a front matter; each reader throws with the field's line when the value is wrong. */
export class DefinitionFields {
  constructor(readonly frontMatter: FrontMatter) {}

  /** Stops reading: the definition has a problem at the line of `path` (the opening line when absent). */
  fail(message: string, ...path: Array<string | number>): never {
    this.failAtLine(this.frontMatter.fieldLine(...path), message);
  }

  /** Stops reading: the definition has a problem at `line` of the file. */
  failAtLine(line: number, message: string): never {
    throw new FieldProblem(line, message);
  }

  /** The field's value; undefined when absent or YAML null (`key:` with nothing after it). */
  value(key: string): unknown {
    const { data } = this.frontMatter;
    // hasOwn: a file without `constructor:` must not read Object's.
    return Object.hasOwn(data, key) ? (data[key] ?? undefined) : undefined;
  }

  /** `name`: required, and valid under the shared name rule. */
  name(): string {
    const name = this.requiredString("name");
    const why = invalidName(name);
    if (why) this.fail(`name ${quoted(name)} is not valid: it ${why}`, "name");
    return name;
  }

  /** `description`: required, not blank, at most 1024 characters. */
  description(): string {
    const description = this.requiredString("description").trim();
    if (description === "") this.fail("description must not be empty: say what this is for and when to use it", "description");
    if (description.length > MAX_DESCRIPTION_CHARS) {
      this.fail(`description is ${description.length} characters, over the limit of ${MAX_DESCRIPTION_CHARS}`, "description");
    }
    return description;
  }

  requiredString(key: string): string {
    const value = this.value(key);
    if (value === undefined) {
      if (Object.hasOwn(this.frontMatter.data, key)) this.fail(`${key} has no value, and it is required`, key);
      this.fail(`the front matter has no "${key}" field, which is required`);
    }
    if (typeof value !== "string") this.fail(`${key} must be a string`, key);
    return value;
  }

  optionalString(key: string): string | null {
    const value = this.value(key);
    if (value === undefined) return null;
    if (typeof value !== "string") this.fail(`${key} must be a string`, key);
    return value;
  }

  /**
   * A list given as one string (entries separated by commas or spaces, parentheses kept whole) or
   * as a YAML list of strings; null when absent.
   */
  list(key: string): string[] | null {
    const value = this.value(key);
    if (value === undefined) return null;
    if (typeof value === "string") {
      const split = splitList(value);
      if ("error" in split) this.fail(`${key} ${split.error}`, key);
      return split.entries;
    }
    if (!Array.isArray(value)) this.fail(`${key} must be a list of strings, or one string of entries separated by commas or spaces`, key);
    return value.map((entry, index) => {
      if (typeof entry !== "string" || entry.trim() === "") this.fail(`${key}: entry ${index + 1} must be a non-empty string`, key, index);
      return entry.trim();
    });
  }

  /** A mapping of names to strings (numbers and booleans are taken as their text); {} when absent. */
  stringMap(key: string): Record<string, string> {
    const value = this.value(key);
    if (value === undefined) return {};
    if (typeof value !== "object" || Array.isArray(value)) this.fail(`${key} must be a mapping of names to strings`, key);
    const map: Record<string, string> = {};
    for (const [name, entry] of Object.entries(value as Record<string, unknown>)) {
      if (typeof entry !== "string" && typeof entry !== "number" && typeof entry !== "boolean") {
        this.fail(`${key}.${name} must be a string`, key, name);
      }
      map[name] = String(entry);
    }
    return map;
  }
}

/**
 * Parses a definition file's front matter and builds the definition from its fields: the whole
 * definition, or the first problem, with the file and line. Never half of one.
 */
export function readDefinition<T>(
  text: string,
  file: string,
  build: (fields: DefinitionFields, frontMatter: FrontMatter) => T,
): { value: T } | { problem: DefinitionProblem } {
  const parsed = parseFrontMatter(text);
  if ("problem" in parsed) return { problem: { file, ...parsed.problem } };
  try {
    return { value: build(new DefinitionFields(parsed.frontMatter), parsed.frontMatter) };
  } catch (error) {
    if (error instanceof FieldProblem) return { problem: { file, line: error.line, message: error.message } };
    throw error;
  }
}
