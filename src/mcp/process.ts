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
 * Makes sure a child process is gone: the MCP way to stop a stdio server is to close its stdin
 * (the caller does), wait, then SIGTERM, then SIGKILL. Resolves once the pid is gone.
 */
export async function ensureExited(pid: number, grace: StopGrace): Promise<void> {
  if (await waitForExit(pid, grace.exitMs)) return;
  signal(pid, "SIGTERM");
  if (await waitForExit(pid, grace.termMs)) return;
  signal(pid, "SIGKILL");
  await waitForExit(pid, 5_000);
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // Gone in between: nothing left to do.
  }
}
