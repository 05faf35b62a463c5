import type { Clock } from 'upnpd';

/** An outage is over once nothing was dropped for this long; the next drop warns again. */
export const OUTAGE_QUIET_MS = 60_000;

/**
 * Counts the records a destination could not deliver, and warns once per outage rather than once
 * per record. The warning is logged on a later microtask: it goes through the same logger, and the
 * drop is noticed while that logger is still writing.
 */
export class DropCounter {
  private count = 0;
  private lastDropAt: number | undefined;

  constructor(
    private readonly clock: Pick<Clock, 'now'>,
    private readonly warn: (dropped: number, reason: string) => void,
  ) {}

  get dropped(): number {
    return this.count;
  }

  drop(reason: string): void {
    this.count++;
    const now = this.clock.now();
    const outageStarts = this.lastDropAt === undefined || now - this.lastDropAt >= OUTAGE_QUIET_MS;
    this.lastDropAt = now;
    if (outageStarts) {
      const dropped = this.count;
      queueMicrotask(() => this.warn(dropped, reason));
    }
  }
}
