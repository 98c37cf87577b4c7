import { mkdir, readFile } from "node:fs/promises";
import path from "node:path";
import type { Tool } from "../types.js";
import { resolveInWorkspace, workspaceRelative } from "../workspace.js";
import { fsCall, statIfExists, writeAtomically } from "./files.js";

export interface EditToolLimits {
  /** Files larger than this are refused: the model could not have read them whole anyway. */
  maxEditBytes: number;
  /** How many changed line numbers the summary lists before it says "and N more". */
  maxListedLines: number;
}

export const DEFAULT_EDIT_TOOL_LIMITS: EditToolLimits = {
  maxEditBytes: 5_000_000,
  maxListedLines: 10,
};

/** edit_file: exact string replacement in one file of the workspace, written atomically. */
export function createEditTool(overrides: Partial<EditToolLimits> = {}): Tool {
  const { maxEditBytes, maxListedLines } = { ...DEFAULT_EDIT_TOOL_LIMITS, ...overrides };
  return {
    name: "edit_file",
    readOnly: false,
    description:
      "Edit a text file in the workspace by exact string replacement: `old_string` is replaced with " +
      "`new_string`. `old_string` must match the file's current text exactly, character for character " +
      "(whitespace and indentation included, no line-number prefixes), and must occur exactly once: include " +
      "enough surrounding lines to make it unique, or set `replace_all` to true to replace every occurrence " +
      "(e.g. to rename something). Read the file first (read_file) so you know its current text. To create a " +
      "new file, pass an empty `old_string` and the whole content as `new_string`. The file is written " +
      "atomically and keeps its permissions. Returns how many replacements were made and at which lines.",
    inputSchema: {
      type: "object",
      properties: {
        path: { type: "string", minLength: 1, description: "File path relative to the workspace root." },
        old_string: {
          type: "string",
          description: "The exact text to replace. Empty only to create a file that does not exist yet.",
        },
        new_string: { type: "string", description: "The text to put in its place (may be empty to delete old_string)." },
        replace_all: {
          type: "boolean",
          description: "Replace every occurrence of old_string instead of requiring exactly one. Default false.",
        },
      },
      required: ["path", "old_string", "new_string"],
      additionalProperties: false,
    },
    async execute(args, context) {
      let oldString = args.old_string as string;
      let newString = args.new_string as string;
      const replaceAll = args.replace_all === true;
      const file = await resolveInWorkspace(context.workspace, args.path as string);
      const shown = await workspaceRelative(context.workspace, file);
      if (oldString === newString) {
        throw new Error("old_string and new_string are identical, so there is nothing to change");
      }

      const existing = await statIfExists(file);
      if (!existing) {
        if (oldString !== "") {
          throw new Error(`${shown} does not exist; to create it, pass an empty old_string and the whole content as new_string`);
        }
        await fsCall(shown, () => mkdir(path.dirname(file), { recursive: true }));
        await fsCall(shown, () => writeAtomically(file, newString, undefined, context));
        return `created ${shown} (${countLines(newString)} lines)`;
      }
      if (existing.isDirectory()) throw new Error(`${shown} is a directory, not a file`);
      if (!existing.isFile()) throw new Error(`${shown} is not a regular file`);
      if (existing.size > maxEditBytes) {
        throw new Error(`${shown} is ${existing.size} bytes, over edit_file's limit of ${maxEditBytes} bytes`);
      }
      const bytes = await fsCall(shown, () => readFile(file, { signal: context.signal }));
      if (bytes.subarray(0, 8_000).includes(0)) throw new Error(`${shown} looks like a binary file; edit_file edits text only`);
      const content = bytes.toString("utf8");

      if (oldString === "") {
        if (content !== "") {
          throw new Error(
            `${shown} already exists and is not empty; set old_string to the text to replace (read the file first), ` +
              "or use write_file to replace the whole file",
          );
        }
        await fsCall(shown, () => writeAtomically(file, newString, existing, context));
        return `wrote ${countLines(newString)} lines to the empty file ${shown}`;
      }

      let positions = occurrences(content, oldString);
      // Models often drop the "\r" of Windows line endings; match them as the file has them.
      if (positions.length === 0 && content.includes("\r\n") && oldString.includes("\n") && !oldString.includes("\r")) {
        const crlf = (text: string) => text.replace(/\n/g, "\r\n");
        positions = occurrences(content, crlf(oldString));
        if (positions.length > 0) {
          oldString = crlf(oldString);
          newString = crlf(newString);
        }
      }
      if (positions.length === 0) {
        throw new Error(
          `old_string does not occur in ${shown}; read the file again and copy the text exactly, ` +
            "including whitespace and indentation",
        );
      }
      if (positions.length > 1 && !replaceAll) {
        throw new Error(
          `old_string occurs ${positions.length} times in ${shown}; add surrounding context to make it unique, ` +
            "or set replace_all to true to replace every occurrence",
        );
      }

      // Slicing rather than String.replace, whose replacement string gives "$&" and friends a meaning.
      const parts: string[] = [];
      const changedLines: number[] = [];
      let from = 0;
      let line = 1;
      for (const at of positions) {
        const before = content.slice(from, at);
        parts.push(before, newString);
        line += countNewlines(before);
        changedLines.push(line);
        line += countNewlines(newString);
        from = at + oldString.length;
      }
      parts.push(content.slice(from));
      const updated = parts.join("");
      await fsCall(shown, () => writeAtomically(file, updated, existing, context));

      const count = positions.length;
      const span = countLines(newString);
      const listed = changedLines.slice(0, maxListedLines).join(", ");
      const more = count > maxListedLines ? ` and ${count - maxListedLines} more` : "";
      if (newString === "") {
        return count === 1 ? `edited ${shown}: deleted 1 occurrence at line ${changedLines[0]}` : `edited ${shown}: deleted ${count} occurrences, at lines ${listed}${more}`;
      }
      if (count === 1) {
        const first = changedLines[0];
        const where = span <= 1 ? `line ${first}` : `lines ${first}-${first + span - 1}`;
        return `edited ${shown}: replaced 1 occurrence; the new text is at ${where}`;
      }
      return `edited ${shown}: replaced ${count} occurrences; the new text starts at lines ${listed}${more}`;
    },
  };
}

/** Start offsets of the non-overlapping occurrences of `needle`, left to right. */
function occurrences(haystack: string, needle: string): number[] {
  const found: number[] = [];
  for (let at = haystack.indexOf(needle); at !== -1; at = haystack.indexOf(needle, at + needle.length)) found.push(at);
  return found;
}

function countNewlines(text: string): number {
  let count = 0;
  for (let at = text.indexOf("\n"); at !== -1; at = text.indexOf("\n", at + 1)) count++;
  return count;
}

/** Lines a text spans: a final newline ends the last line rather than starting another. */
function countLines(text: string): number {
  if (text === "") return 0;
  return countNewlines(text) + (text.endsWith("\n") ? 0 : 1);
}
