/**
 * Items kept sorted by a comparator, as a list of sorted chunks: an insert or removal moves at most
 * one chunk's items, a seek is two binary searches, and appending past the last item (the usual case:
 * new sessions arrive in creation order) is a push. Equal items are allowed and kept in insertion order.
 */
export class OrderedIndex<T> {
  private readonly chunks: T[][] = [];
  private count = 0;

  constructor(
    private readonly compare: (a: T, b: T) => number,
    /** Chunks split above this; at 100k items 64 to 1024 measured alike, 256 a little best. */
    private readonly maxChunk = 256,
  ) {
    if (!Number.isInteger(maxChunk) || maxChunk < 2) throw new RangeError("maxChunk must be an integer of at least 2");
  }

  get size(): number {
    return this.count;
  }

  insert(item: T): void {
    this.count++;
    const { chunks } = this;
    const last = chunks.at(-1);
    if (!last || this.compare(last[last.length - 1]!, item) <= 0) {
      if (last && last.length < this.maxChunk) last.push(item);
      else {
        // A full last chunk is left full: appends in order then keep every chunk full. It is copied
        // to its exact size (pushes leave room to grow, a third of it for a chunk of 256).
        if (last) chunks[chunks.length - 1] = last.slice();
        chunks.push([item]);
      }
      return;
    }
    // Somewhere before the end: the first chunk whose last item is after it.
    const c = firstTrue(chunks.length, (i) => this.compare(chunks[i]!.at(-1)!, item) > 0);
    const chunk = chunks[c]!;
    chunk.splice(
      firstTrue(chunk.length, (i) => this.compare(chunk[i]!, item) > 0),
      0,
      item,
    );
    if (chunk.length > this.maxChunk) chunks.splice(c + 1, 0, chunk.splice(chunk.length >> 1));
  }

  /** Removes this very item (by identity, among equal ones); false when it is not here. */
  delete(item: T): boolean {
    const { chunks } = this;
    // Equal items may span chunks, so start at the first chunk that can hold one.
    for (let c = firstTrue(chunks.length, (i) => this.compare(chunks[i]!.at(-1)!, item) >= 0); c < chunks.length; c++) {
      const chunk = chunks[c]!;
      let i = firstTrue(chunk.length, (j) => this.compare(chunk[j]!, item) >= 0);
      for (; i < chunk.length && this.compare(chunk[i]!, item) === 0; i++) {
        if (chunk[i] !== item) continue;
        chunk.splice(i, 1);
        this.count--;
        this.shrunk(c);
        return true;
      }
      if (i < chunk.length) return false;
    }
    return false;
  }

  /**
   * The items from the first for which `isAfter` is true, in order. `isAfter` must be false for a
   * prefix of the items and true for the rest (a cursor test); without it, from the first item.
   * The index must not change while the iterator is in use.
   */
  *from(isAfter?: (item: T) => boolean): Generator<T, void, undefined> {
    const { chunks } = this;
    let c = 0;
    let i = 0;
    if (isAfter) {
      c = firstTrue(chunks.length, (k) => isAfter(chunks[k]!.at(-1)!));
      if (c === chunks.length) return;
      const chunk = chunks[c]!;
      i = firstTrue(chunk.length, (k) => isAfter(chunk[k]!));
    }
    for (; c < chunks.length; c++, i = 0) {
      const chunk = chunks[c]!;
      for (; i < chunk.length; i++) yield chunk[i]!;
    }
  }

  /** All items, in order, as a new array. */
  toArray(): T[] {
    return this.chunks.flat();
  }

  /** Drops an emptied chunk and merges a small one into a neighbour, so chunks stay few. */
  private shrunk(c: number): void {
    const { chunks } = this;
    const chunk = chunks[c]!;
    if (chunk.length === 0) {
      chunks.splice(c, 1);
      return;
    }
    if (chunk.length >= this.maxChunk >> 2) return;
    const next = chunks[c + 1];
    if (next && chunk.length + next.length <= this.maxChunk >> 1) {
      chunk.push(...next);
      chunks.splice(c + 1, 1);
      return;
    }
    const previous = chunks[c - 1];
    if (previous && chunk.length + previous.length <= this.maxChunk >> 1) {
      previous.push(...chunk);
      chunks.splice(c, 1);
    }
  }
}

/** The least index in [0, length) for which `test` is true, or `length`; `test` is monotone. */
function firstTrue(length: number, test: (index: number) => boolean): number {
  let low = 0;
  let high = length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (test(mid)) high = mid;
    else low = mid + 1;
  }
  return low;
}
