/**
 * Lets a running turn stop between steps while its session is paused. The turn calls wait() before
 * each model call and each tool call; wait() returns at once unless paused, and rejects if the turn
 * is cancelled while it waits.
 */
export class PauseGate {
  private waiters = new Set<() => void>();
  private isPaused = false;

  get paused(): boolean {
    return this.isPaused;
  }

  pause(): void {
    this.isPaused = true;
  }

  resume(): void {
    this.isPaused = false;
    for (const wake of this.waiters) wake();
    this.waiters.clear();
  }

  wait(signal: AbortSignal): Promise<void> {
    signal.throwIfAborted();
    if (!this.isPaused) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        this.waiters.delete(wake);
        reject(signal.reason);
      };
      const wake = () => {
        signal.removeEventListener("abort", onAbort);
        resolve();
      };
      this.waiters.add(wake);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }
}
