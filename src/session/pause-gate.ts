/**
 * Lets a running turn stop between steps while its session is paused. The turn calls wait() before
 * each model call and each tool call; wait() returns at once unless paused, and rejects if the turn
 * is cancelled while it waits.
 */
export class PauseGate {
  /** Made when a turn first waits. */
  private waiters: Set<() => void> | null = null;
  private isPaused = false;

  get paused(): boolean {
    return this.isPaused;
  }

  pause(): void {
    this.isPaused = true;
  }

  resume(): void {
    this.isPaused = false;
    const waiters = this.waiters;
    if (!waiters) return;
    for (const wake of waiters) wake();
    waiters.clear();
  }

  wait(signal: AbortSignal): Promise<void> {
    signal.throwIfAborted();
    if (!this.isPaused) return Promise.resolve();
    const waiters = (this.waiters ??= new Set());
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        waiters.delete(wake);
        reject(signal.reason);
      };
      const wake = () => {
        signal.removeEventListener("abort", onAbort);
        resolve();
      };
      waiters.add(wake);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }
}
