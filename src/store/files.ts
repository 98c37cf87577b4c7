import { randomBytes } from "node:crypto";
import { open, rename, rm } from "node:fs/promises";

/** Makes creations, renames and removals in a directory durable. */
export async function syncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** The name of a temp file next to `target`; start-up removes leftovers (`*.tmp`). */
export function tempNameFor(target: string): string {
  return `${target}.${randomBytes(6).toString("hex")}.tmp`;
}

/**
 * Writes `data` to a temp file, fsyncs it and renames it over `target`: a crash leaves the old
 * file or the new one, never a torn one. The caller syncs the directory (once for several files).
 * Returns the bytes written.
 */
export async function writeFileAtomic(target: string, data: string | Buffer): Promise<number> {
  const temp = tempNameFor(target);
  const bytes = await writeFileSynced(temp, data, "w");
  try {
    await rename(temp, target);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  return bytes;
}

/** Writes (flag "w") or appends (flag "a") `data` and fdatasyncs it; files are private to the server's user. */
export async function writeFileSynced(file: string, data: string | Buffer, flag: "w" | "a", truncateTo?: number): Promise<number> {
  const buffer = typeof data === "string" ? Buffer.from(data) : data;
  // Records hold whole conversations: readable by the server's user only.
  const handle = await open(file, flag === "a" ? "a+" : "w", 0o600);
  try {
    if (truncateTo !== undefined && (await handle.stat()).size !== truncateTo) await handle.truncate(truncateTo);
    let offset = 0;
    while (offset < buffer.length) offset += (await handle.write(buffer, offset, buffer.length - offset)).bytesWritten;
    await handle.datasync();
  } finally {
    await handle.close();
  }
  return buffer.length;
}
