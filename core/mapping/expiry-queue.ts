import { keyOf, type MappingKey } from './types.js';

export interface ExpiryEntry {
  readonly at: number;
  readonly key: MappingKey;
}

/** A binary min-heap of (expiry time, key). Stale entries are skipped by the caller on pop. */
export class ExpiryQueue {
  private readonly heap: ExpiryEntry[] = [];

  get size(): number {
    return this.heap.length;
  }

  push(at: number, key: MappingKey): void {
    this.heap.push({ at, key: keyOf(key) });
    this.siftUp(this.heap.length - 1);
  }

  /** Replaces every entry with `entries` (the leases that still matter), dropping the stale ones. */
  rebuild(entries: Iterable<ExpiryEntry>): void {
    this.heap.length = 0;
    for (const { at, key } of entries) this.push(at, key);
  }

  private siftUp(start: number): void {
    let i = start;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (this.heap[parent]!.at <= this.heap[i]!.at) break;
      [this.heap[parent], this.heap[i]] = [this.heap[i]!, this.heap[parent]!];
      i = parent;
    }
  }

  peekTime(): number | undefined {
    return this.heap[0]?.at;
  }

  /** Removes entries from the front while `isStale` says they no longer matter. */
  dropWhile(isStale: (at: number, key: MappingKey) => boolean): void {
    while (this.heap.length > 0 && isStale(this.heap[0]!.at, this.heap[0]!.key)) this.pop();
  }

  /** Removes and returns every entry due at `now` or earlier, earliest first. */
  popDue(now: number): ExpiryEntry[] {
    const due: ExpiryEntry[] = [];
    while (this.heap.length > 0 && this.heap[0]!.at <= now) due.push(this.pop());
    return due;
  }

  private pop(): ExpiryEntry {
    const top = this.heap[0]!;
    const last = this.heap.pop()!;
    if (this.heap.length > 0) {
      this.heap[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let smallest = i;
        if (l < this.heap.length && this.heap[l]!.at < this.heap[smallest]!.at) smallest = l;
        if (r < this.heap.length && this.heap[r]!.at < this.heap[smallest]!.at) smallest = r;
        if (smallest === i) break;
        [this.heap[smallest], this.heap[i]] = [this.heap[i]!, this.heap[smallest]!];
        i = smallest;
      }
    }
    return top;
  }
}
