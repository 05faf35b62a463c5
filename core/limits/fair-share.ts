/** What `FairShare.add` did: took the item (making room by dropping `evicted`, when full), or not. */
export type ShareDecision<T> = { readonly admitted: true; readonly evicted?: T } | { readonly admitted: false };

/**
 * Items (open connections) held by clients out of a shared total. When the total is full, a client
 * holding at least two fewer than the biggest holder takes the place of that holder's oldest item,
 * as the SSDP reply queue does: so hosts together holding the whole total (one host connecting
 * from sixteen addresses) cannot keep another host out, and clients at an equal share do not take
 * from each other.
 */
export class FairShare<T> {
  private readonly held = new Map<string, Set<T>>();
  private count = 0;

  constructor(readonly total: number) {
    if (!(total >= 1)) throw new Error('a fair share needs a total of at least one');
  }

  get size(): number {
    return this.count;
  }

  add(client: string, item: T): ShareDecision<T> {
    const mine = this.held.get(client);
    let evicted: T | undefined;
    if (this.count >= this.total) {
      evicted = this.oldestOfBiggestHolder(mine?.size ?? 0);
      if (evicted === undefined) return { admitted: false };
    }
    if (mine) mine.add(item);
    else this.held.set(client, new Set([item]));
    this.count++;
    return evicted === undefined ? { admitted: true } : { admitted: true, evicted };
  }

  /** Forgets `item` (closed); nothing when it was evicted already. */
  delete(client: string, item: T): void {
    const items = this.held.get(client);
    if (!items?.delete(item)) return;
    this.count--;
    if (items.size === 0) this.held.delete(client);
  }

  /** Removes and returns the oldest item of the biggest holder if it holds at least two more than `held`. */
  private oldestOfBiggestHolder(held: number): T | undefined {
    let biggest: [string, Set<T>] | undefined;
    for (const entry of this.held) if (!biggest || entry[1].size > biggest[1].size) biggest = entry;
    if (!biggest || biggest[1].size < held + 2) return undefined;
    const oldest = biggest[1].values().next().value as T;
    this.delete(biggest[0], oldest);
    return oldest;
  }
}
