/**
 * Abort helpers shared by the providers. Every abort surfaces as an error named "AbortError" so the
 * agent loop's isAbortError() recognises it whichever layer noticed the abort first.
 */

/** The error to throw for an aborted signal: its reason when that already is an AbortError. */
export function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error && reason.name === "AbortError") return reason;
  return new DOMException("the model call was aborted", "AbortError");
}

export function throwIfAborted(signal: AbortSignal): void {
  if (signal.aborted) throw abortError(signal);
}

/** Waits `ms`, rejecting with an AbortError as soon as `signal` aborts (the timer is cleared). */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(abortError(signal));
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortError(signal));
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * A per-call signal that follows `parent`. SDKs attach a listener to the signal they are given and
 * do not always remove it (openai v6 never does), and a turn reuses one signal for all its model
 * calls; handing them a child and unlinking it afterwards keeps the turn's signal clean.
 */
export function childSignal(parent: AbortSignal): { signal: AbortSignal; release: () => void } {
  const controller = new AbortController();
  const onAbort = () => controller.abort(parent.reason);
  if (parent.aborted) onAbort();
  else parent.addEventListener("abort", onAbort, { once: true });
  return { signal: controller.signal, release: () => parent.removeEventListener("abort", onAbort) };
}
