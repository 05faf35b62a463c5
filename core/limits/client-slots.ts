/**
 * Counts what each client holds at once (open connections), with a per-client ceiling, so that one
 * host holding its maximum leaves the rest of a shared total to the others.
 */
export class ClientSlots {
  private readonly held = new Map<string, number>();

  constructor(readonly perClient: number) {
    if (!(perClient >= 1)) throw new Error('a client must be allowed at least one slot');
  }

  /** Takes a slot for `client`; false when it already holds `perClient`. */
  acquire(client: string): boolean {
    const count = this.held.get(client) ?? 0;
    if (count >= this.perClient) return false;
    this.held.set(client, count + 1);
    return true;
  }

  release(client: string): void {
    const count = this.held.get(client) ?? 0;
    if (count <= 1) this.held.delete(client);
    else this.held.set(client, count - 1);
  }

  heldBy(client: string): number {
    return this.held.get(client) ?? 0;
  }
}
