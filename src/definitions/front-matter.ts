import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Node } from "yaml";

/** The largest definition file read: real skills and agent files are a few KiB. */
export const MAX_DEFINITION_BYTES = 256 * 1024;

/** A Markdown file's YAML front matter and body. */
export interface FrontMatter {
  data: Record<string, unknown>;
  /** The text after the closing `---` line, with LF line ends. */
  body: string;
  /** The line the body starts on. */
  bodyLine: number;
  /**
   * The line of a field, given as a path of keys (and list indexes): `fieldLine("metadata", "owner")`.
   * Where the path stops matching, the line of the last part found; 1 (the opening `---`) for none.
   */
  fieldLine(...path: Array<string | number>): number;
}

export interface FrontMatterProblem {
  line: number;
  message: string;
}

const FENCE = /^---[ \t]*$/;

/**
 * Splits a Markdown file into its front matter (YAML between a first line `---` and the next `---`
 * line) and its body. Lines are counted in the file, the opening `---` being line 1.
 */
export function parseFrontMatter(text: string): { frontMatter: FrontMatter } | { problem: FrontMatterProblem } {
  const problem = (line: number, message: string) => ({ problem: { line, message } });
  const bytes = Buffer.byteLength(text, "utf8");
  if (bytes > MAX_DEFINITION_BYTES) return problem(1, `the file is ${bytes} bytes, over the limit of ${MAX_DEFINITION_BYTES} bytes`);
  const lines = text.replace(/^\uFEFF/, "").split(/\r?\n/);
  if (!FENCE.test(lines[0]!)) return problem(1, "the file must start with a `---` line that opens the YAML front matter");
  const close = lines.findIndex((line, index) => index > 0 && FENCE.test(line));
  if (close < 0) return problem(1, "the front matter opened on line 1 is never closed by a `---` line");

  const lineCounter = new LineCounter();
  // prettyErrors off: its messages quote the source, and a file's content must not leak through them.
  const doc = parseDocument(lines.slice(1, close).join("\n"), { lineCounter, prettyErrors: false, logLevel: "error" });
  // The YAML starts on line 2 of the file.
  const lineAt = (offset: number) => lineCounter.linePos(offset).line + 1;
  const error = doc.errors[0];
  if (error) {
    const message = error.code === "DUPLICATE_KEY" ? "a key appears twice in the front matter" : `the front matter is not valid YAML: ${error.message}`;
    return problem(lineAt(error.pos[0]), message);
  }
  const root = doc.contents;
  if (root !== null && !isMap(root)) return problem(lineAt(root.range?.[0] ?? 0), "the front matter must be a YAML mapping of fields (`name: ...`)");
  const badKey = root?.items.find((pair) => !isScalar(pair.key));
  if (badKey) return problem(lineAt((badKey.key as Node | null)?.range?.[0] ?? 0), "front-matter keys must be plain names");

  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 50 }) ?? {};
  } catch (cause) {
    // Unresolved or runaway aliases: rare enough that the opening line will do.
    return problem(1, `the front matter cannot be read: ${(cause as Error).message}`);
  }

  const fieldLine = (...path: Array<string | number>): number => {
    let line = 1;
    let node: unknown = root;
    for (const part of path) {
      let next: Node | null = null;
      if (isMap(node)) {
        const pair = node.items.find((item) => isScalar(item.key) && String(item.key.value) === String(part));
        if (pair) {
          line = lineAt((pair.key as Node).range?.[0] ?? 0);
          next = (pair.value as Node | null) ?? null;
        }
      } else if (isSeq(node) && typeof part === "number") {
        const item = node.items[part] as Node | undefined;
        if (item?.range) line = lineAt(item.range[0]);
        next = item ?? null;
      }
      if (!next) break;
      node = next;
    }
    return line;
  };

  return { frontMatter: { data: data as Record<string, unknown>, body: lines.slice(close + 1).join("\n"), bodyLine: close + 2, fieldLine } };
}
