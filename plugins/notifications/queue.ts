/**
 * A bounded queue worked by at most `concurrency` runs at a time. Past `maxQueue` waiting items
 * the oldest is dropped and counted: a slow receiver costs events, never memory or the daemon's time.
 */
export class DeliveryQueue<T> {
  private readonly waiting: T[] = [];
  private running = 0;
  private idle: Array<() => void> = [];
  /** Items dropped because the queue was full. */
  dropped = 0;

  constructor(
    private readonly limits: { readonly maxQueue: number; readonly concurrency: number },
    private readonly work: (item: T) => Promise<void>,
  ) {}

  push(item: T): void {
    if (this.waiting.length >= this.limits.maxQueue) {
      this.waiting.shift();
      this.dropped++;
    }
    this.waiting.push(item);
    this.pump();
  }

  /** Resolves when nothing waits or runs any more, or after `timeoutMs`. */
  drained(timeoutMs: number): Promise<void> {
    if (this.running === 0 && this.waiting.length === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      timer.unref();
      this.idle.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private pump(): void {
    while (this.running < this.limits.concurrency && this.waiting.length > 0) {
      const item = this.waiting.shift()!;
      this.running++;
      void this.work(item)
        .catch(() => undefined)
        .finally(() => {
          this.running--;
          this.pump();
          if (this.running === 0 && this.waiting.length === 0) for (const done of this.idle.splice(0)) done();
        });
    }
  }
}
