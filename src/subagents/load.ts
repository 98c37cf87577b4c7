import { stat } from "node:fs/promises";
import path from "node:path";
import { parseFrontMatter } from "../definitions/front-matter.js";
import type { DefinitionProblem } from "../definitions/problems.js";
import { listFolder, readDefinitionFile } from "../definitions/read-file.js";
import { parseAgentDefinition } from "./parse.js";
import type { AgentDefinition } from "./types.js";

/**
 * Loads every `*.md` file directly in `root`, in name order. The name comes from the front matter,
 * not the file name. A bad file is reported and the others load; a second definition of a name
 * already loaded is a problem. A missing root is an empty set.
 */
export async function loadAgentsDir(root: string): Promise<{ items: AgentDefinition[]; problems: DefinitionProblem[] }> {
  const listed = await listFolder(root);
  if ("problem" in listed) return { items: [], problems: [listed.problem] };
  const items: AgentDefinition[] = [];
  const problems: DefinitionProblem[] = [];
  const loadedFrom = new Map<string, string>();
  for (const name of listed.names) {
    if (name.startsWith(".") || !name.endsWith(".md")) continue;
    const file = path.join(root, name);
    // A folder named like a Markdown file is not a definition: skipped, like any other folder.
    if (await stat(file).then((info) => info.isDirectory(), () => false)) continue;
    const read = await readDefinitionFile(file);
    if ("problem" in read) {
      problems.push(read.problem);
      continue;
    }
    const parsed = parseAgentDefinition(read.text, { file });
    if ("problem" in parsed) {
      problems.push(parsed.problem);
      continue;
    }
    const { definition } = parsed;
    const first = loadedFrom.get(definition.name);
    if (first !== undefined) {
      problems.push({ file, line: nameLine(definition.text), message: `a subagent named ${definition.name} is already defined in ${first}` });
      continue;
    }
    loadedFrom.set(definition.name, file);
    items.push(definition);
  }
  return { items, problems };
}

/** The line of the `name` field, for a duplicate. */
function nameLine(text: string): number {
  const parsed = parseFrontMatter(text);
  return "frontMatter" in parsed ? parsed.frontMatter.fieldLine("name") : 1;
}
