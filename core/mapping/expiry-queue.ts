import type { PortMapping } from './types.js';

/** A mapping whose lease ends. */
export type LeasedMapping = PortMapping & { readonly expiresAt: number };

export function hasLease(mapping: PortMapping): mapping is LeasedMapping {
  return mapping.expiresAt !== null;
}

/**
 * A binary min-heap of mappings by the end of their lease. It holds the mappings themselves, not
 * entries of (time, key) of its own (about 100 bytes a mapping). An entry whose mapping the table
 * no longer holds (renewed, which queues the renewal; deleted) is stale: the caller skips it, and
 * bounds how many stale entries, and the mappings they keep alive, the queue holds.
 */
export class ExpiryQueue {
  private readonly heap: LeasedMapping[] = [];

  get size(): number {
    return this.heap.length;
  }

  push(mapping: LeasedMapping): void {
    this.heap.push(mapping);
    this.siftUp(this.heap.length - 1);
  }

  /** Replaces every entry with `mappings` (the leases that still matter), dropping the stale ones. */
  rebuild(mappings: Iterable<LeasedMapping>): void {
    this.heap.length = 0;
    for (const mapping of mappings) this.push(mapping);
  }

  private siftUp(start: number): void {
    let i = start;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (this.heap[parent]!.expiresAt <= this.heap[i]!.expiresAt) break;
      [this.heap[parent], this.heap[i]] = [this.heap[i]!, this.heap[parent]!];
      i = parent;
    }
  }

  peekTime(): number | undefined {
    return this.heap[0]?.expiresAt;
  }

  /** Removes entries from the front while `isStale` says they no longer matter. */
  dropWhile(isStale: (mapping: LeasedMapping) => boolean): void {
    while (this.heap.length > 0 && isStale(this.heap[0]!)) this.pop();
  }

  /** Removes and returns every mapping whose lease ends at `now` or earlier, earliest first. */
  popDue(now: number): LeasedMapping[] {
    const due: LeasedMapping[] = [];
    while (this.heap.length > 0 && this.heap[0]!.expiresAt <= now) due.push(this.pop());
    return due;
  }

  private pop(): LeasedMapping {
    const top = this.heap[0]!;
    const last = this.heap.pop()!;
    if (this.heap.length > 0) {
      this.heap[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let smallest = i;
        if (l < this.heap.length && this.heap[l]!.expiresAt < this.heap[smallest]!.expiresAt) smallest = l;
        if (r < this.heap.length && this.heap[r]!.expiresAt < this.heap[smallest]!.expiresAt) smallest = r;
        if (smallest === i) break;
        [this.heap[smallest], this.heap[i]] = [this.heap[i]!, this.heap[smallest]!];
        i = smallest;
      }
    }
    return top;
  }
}
