interface Waiting<T> {
  item: T;
  size: number;
  resolve: () => void;
  reject: (error: Error) => void;
}

export interface BatchLimits {
  /** Items in one commit at most. */
  maxItems: number;
  /** Their summed sizes at most (one item larger than this still goes, alone). */
  maxSize: number;
}

/**
 * Group commit: items that arrive while a commit runs wait and go together in the next one, so N
 * sessions saving at once cost about two commits, not N. When a commit of several items fails, each
 * is tried again on its own, so one item the database refuses cannot hold back the others.
 */
export class Batches<T> {
  private queue: Waiting<T>[] = [];
  private running: Promise<void> | null = null;

  constructor(
    /** Commits the items; may say per item (same order) that one failed while the others were committed. */
    private readonly commit: (items: T[]) => Promise<Array<Error | null> | void>,
    private readonly limits: BatchLimits,
  ) {}

  add(item: T, size: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ item, size, resolve, reject });
      this.running ??= this.drain();
    });
  }

  /** Resolves when nothing is waiting or being committed. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private async drain(): Promise<void> {
    // Started from add(): lets the other saves of the same tick join the first batch.
    await Promise.resolve();
    try {
      while (this.queue.length > 0) {
        const batch = this.take();
        try {
          const outcomes = await this.commit(batch.map((waiting) => waiting.item));
          batch.forEach((waiting, i) => {
            const failure = outcomes?.[i];
            if (failure) waiting.reject(failure);
            else waiting.resolve();
          });
        } catch (error) {
          if (batch.length === 1) batch[0]!.reject(asError(error));
          else await this.oneByOne(batch);
        }
      }
    } finally {
      this.running = null;
    }
  }

  private async oneByOne(batch: Waiting<T>[]): Promise<void> {
    for (const waiting of batch) {
      try {
        const failure = (await this.commit([waiting.item]))?.[0];
        if (failure) waiting.reject(failure);
        else waiting.resolve();
      } catch (error) {
        waiting.reject(asError(error));
      }
    }
  }

  private take(): Waiting<T>[] {
    let count = 0;
    let size = 0;
    while (count < this.queue.length && count < this.limits.maxItems) {
      const next = this.queue[count]!.size;
      if (count > 0 && size + next > this.limits.maxSize) break;
      size += next;
      count++;
    }
    return this.queue.splice(0, count);
  }
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}
