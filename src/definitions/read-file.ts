import { constants } from "node:fs";
import { open, readdir } from "node:fs/promises";
import { MAX_DEFINITION_BYTES } from "./front-matter.js";
import type { DefinitionProblem } from "./problems.js";

/** A definition file's text, or why it cannot be read; the size is checked before reading. */
export async function readDefinitionFile(file: string): Promise<{ text: string } | { problem: DefinitionProblem }> {
  const problem = (message: string) => ({ problem: { file, line: 1, message } });
  try {
    // O_NONBLOCK: a FIFO opens at once and is refused, instead of blocking a thread of the pool.
    const handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      const info = await handle.stat();
      if (!info.isFile()) return problem("is not a regular file");
      if (info.size > MAX_DEFINITION_BYTES) return problem(`the file is ${info.size} bytes, over the limit of ${MAX_DEFINITION_BYTES} bytes`);
      return { text: await handle.readFile("utf8") };
    } finally {
      await handle.close();
    }
  } catch (error) {
    return problem(`cannot be read (${(error as NodeJS.ErrnoException).code ?? "error"})`);
  }
}

/** The entry names of a definitions folder, sorted; none when it does not exist (an empty set, not a problem). */
export async function listFolder(root: string): Promise<{ names: string[] } | { problem: DefinitionProblem }> {
  try {
    return { names: (await readdir(root)).sort() };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return { names: [] };
    return { problem: { file: root, line: 1, message: code === "ENOTDIR" ? "is not a folder" : `cannot be listed (${code ?? "error"})` } };
  }
}
