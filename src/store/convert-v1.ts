import { mkdir, readdir, readFile, rename, rm } from "node:fs/promises";
import path from "node:path";
import { syncDirectory, writeFileSynced } from "./files.js";
import type { SessionRecord } from "./record.js";
import { decodeRecord } from "./record-codec.js";
import { decodeSnapshot, encodeSnapshot, messagesFile, SESSION_ID, SNAPSHOT } from "./session-files.js";
import type { LoadFailure } from "./types.js";

/**
 * Converts the version-1 files of a sessions folder (`<id>.json`, one whole record each) to session
 * folders. Each is written to `<id>.migrating/`, fsynced and renamed to `<id>/`; only once every new
 * folder is durable are the old files removed. Interrupted at any point, the next start-up finishes
 * it: a leftover `.migrating` folder is removed (by the caller) and converted again, a finished
 * folder whose old file is still there just loses the old file. A file that cannot be read is
 * reported and left as it is.
 */
export async function convertVersion1Files(
  directory: string,
  failures: LoadFailure[],
  warn: (location: string, message: string) => void,
): Promise<void> {
  const converted: string[] = [];
  for (const name of (await readdir(directory)).filter((n) => n.endsWith(".json")).sort()) {
    const location = path.join(directory, name);
    const id = name.slice(0, -".json".length);
    let record: SessionRecord;
    try {
      record = decodeRecord(await readFile(location, "utf8"));
      if (record.id !== id) throw new Error(`holds session ${record.id}, not ${id}`);
      if (!SESSION_ID.test(id)) throw new Error(`invalid session id for the file store: ${id}`);
    } catch (error) {
      failures.push({ location, error: (error as Error).message });
      continue;
    }
    const folder = path.join(directory, id);
    const state = await folderState(folder);
    if (state === "unreadable") {
      failures.push({ location, error: `not converted: ${folder} exists and cannot be read; both are left as they are` });
      continue;
    }
    if (state === "none") {
      const temp = `${folder}.migrating`;
      await mkdir(temp, { mode: 0o700 });
      const { messages, ...rest } = record;
      await writeFileSynced(path.join(temp, messagesFile(1)), messages.map((message) => `${JSON.stringify(message)}\n`).join(""), "w");
      await writeFileSynced(path.join(temp, SNAPSHOT), encodeSnapshot(0, { generation: 1, count: messages.length }, { generation: 1 }, JSON.stringify(rest)), "w");
      await syncDirectory(temp);
      // A folder without a snapshot is what an interrupted first write or deletion left.
      await rm(folder, { recursive: true, force: true });
      await rename(temp, folder);
    }
    converted.push(location);
  }
  if (converted.length === 0) return;
  // The new folders are durable before the old files go.
  await syncDirectory(directory);
  for (const location of converted) await rm(location, { force: true });
  await syncDirectory(directory);
  warn(directory, `converted ${converted.length} session file(s) of the version-1 format`);
}

/** Whether a session's folder is whole (an earlier conversion finished), absent or damaged. */
async function folderState(folder: string): Promise<"done" | "none" | "unreadable"> {
  try {
    decodeSnapshot(await readFile(path.join(folder, SNAPSHOT), "utf8"));
    return "done";
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "ENOENT" ? "none" : "unreadable";
  }
}
