import { mkdir, mkdtemp, realpath, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";

/** A fresh, real temporary folder (its real path, so comparisons with resolved paths hold). */
export async function tempDir(prefix: string): Promise<string> {
  return realpath(await mkdtemp(path.join(tmpdir(), prefix)));
}

/** A SKILL.md text with the given front-matter lines. */
export function skillText(name: string, description: string, extra = "", body = "Do the thing."): string {
  return `---\nname: ${name}\ndescription: ${description}\n${extra}---\n${body}\n`;
}

/** Writes `<root>/<folder>/SKILL.md` and any other files, and returns the folder. */
export async function writeSkill(root: string, folder: string, text: string, files: Record<string, string | Buffer> = {}): Promise<string> {
  const dir = path.join(root, folder);
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, "SKILL.md"), text);
  for (const [relative, content] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, relative)), { recursive: true });
    await writeFile(path.join(dir, relative), content);
  }
  return dir;
}
