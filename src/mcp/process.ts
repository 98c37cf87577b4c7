import { readdirSync, readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

/** True while a process with this pid exists (EPERM: it exists but belongs to someone else). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Waits up to `ms` for the process to be gone; true when it is. */
export async function waitForExit(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (isAlive(pid)) {
    if (Date.now() >= deadline) return false;
    await sleep(20);
  }
  return true;
}

export interface StopGrace {
  /** How long a server has to exit by itself once its stdin is closed. */
  exitMs: number;
  /** How long it has after SIGTERM before SIGKILL. */
  termMs: number;
}

/**
 * Makes sure a child process is gone, and the processes it started: the MCP way to stop a stdio
 * server is to close its stdin (the caller does), wait, then SIGTERM, then SIGKILL. A server started
 * through a wrapper (npx, a shell) is really the wrapper's child, so the tree is taken first, while
 * the links from child to parent still exist. Resolves once they are all gone.
 */
export async function ensureExited(pid: number, grace: StopGrace): Promise<void> {
  const tree = [pid, ...descendantsOf(pid)];
  const gone = () => tree.every((p) => !isAlive(p));
  const waitAll = async (ms: number) => {
    const deadline = Date.now() + ms;
    while (!gone() && Date.now() < deadline) await sleep(20);
    return gone();
  };
  if (await waitAll(grace.exitMs)) return;
  for (const p of tree) signal(p, "SIGTERM");
  if (await waitAll(grace.termMs)) return;
  for (const p of tree) signal(p, "SIGKILL");
  await waitAll(5_000);
}

/**
 * The processes below `pid`, read from /proc (Linux); none where there is no /proc. Bounded, so a
 * fork bomb cannot keep it busy.
 */
export function descendantsOf(pid: number): number[] {
  const parentOf = new Map<number, number>();
  let entries: string[];
  try {
    entries = readdirSync("/proc").filter((name) => /^\d+$/.test(name));
  } catch {
    return [];
  }
  for (const entry of entries) {
    try {
      // The command name, in parentheses, may hold spaces: the fields after its closing one are fixed.
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      parentOf.set(Number(entry), ppid);
    } catch {
      // Gone since the listing.
    }
  }
  const found: number[] = [];
  const frontier = [pid];
  while (frontier.length > 0 && found.length < 1_000) {
    const parent = frontier.shift()!;
    for (const [child, ppid] of parentOf) {
      if (ppid === parent && !found.includes(child)) {
        found.push(child);
        frontier.push(child);
      }
    }
  }
  return found;
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // Gone in between: nothing left to do.
  }
}
