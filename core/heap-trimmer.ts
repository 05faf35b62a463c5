import { getHeapStatistics } from 'node:v8';
import type { Clock } from './clock.js';
import type { Logger } from './logger.js';

export interface HeapTrimmerOptions {
  /** How often the heap size is looked at. */
  readonly intervalMs: number;
  /** Growth over the smallest size since the last collection that is worth a collection once it stops. */
  readonly growthBytes: number;
}

/**
 * 4 MB: a burst of reads after a burst of changes (5000 mappings added, then walked three times)
 * grows the heap by 7 to 14 MB past the collection that followed the adds. With 16 MB that growth
 * stayed (the node process settled at 80.7-82.7 MB instead of 74.4-75.8, bench/rss-probe.ts
 * --as-bench) until V8's own memory reducer came, 25 to 40 s later or not at all. An idle daemon
 * with 5000 mappings grows about 1 MB a minute (the periodic firewall check), so this rarely
 * collects when nothing happens.
 */
export const DEFAULT_HEAP_TRIMMING: HeapTrimmerOptions = { intervalMs: 5_000, growthBytes: 4 * 1024 * 1024 };

/**
 * Gives a burst's garbage back to the system once the burst is over.
 *
 * A burst of requests (thousands of mappings added or listed) grows V8's old space with garbage,
 * and V8 collects old space only when allocation pushes it to: once the burst stops, nothing does,
 * and the daemon keeps the garbage's pages (measured: 155 MB resident with 5000 mappings, of which
 * 20 MB live). So every `intervalMs` this looks at the heap size; when it has grown by at least
 * `growthBytes` since the last collection (or since V8 shrank it below that, on its own) and did
 * not grow over the last interval, it collects (two full collections, about 35 ms with 5000
 * mappings), after which V8 releases the emptied pages.
 *
 * It needs `gc`, which Node exposes with --expose-gc (the `upnpd` command's shebang passes it).
 * Without it, it does nothing.
 */
export class HeapTrimmer {
  private timer: unknown;
  private smallestSinceCollection: number;
  private lastSize: number;

  constructor(
    private readonly clock: Clock,
    private readonly logger: Logger,
    private readonly collect: (() => void) | undefined = exposedGc(),
    private readonly heapSize: () => number = () => getHeapStatistics().total_heap_size,
    private readonly options: HeapTrimmerOptions = DEFAULT_HEAP_TRIMMING,
  ) {
    this.smallestSinceCollection = this.lastSize = heapSize();
  }

  /** Whether it can collect at all (Node was started with --expose-gc). */
  get enabled(): boolean {
    return this.collect !== undefined;
  }

  start(): void {
    if (!this.collect) {
      this.logger.debug('heap trimming off: node runs without --expose-gc (run the upnpd command, whose shebang passes it)');
      return;
    }
    this.schedule();
  }

  stop(): void {
    if (this.timer !== undefined) this.clock.clearTimer(this.timer);
    this.timer = undefined;
  }

  /** One look at the heap (the timer calls this). Returns whether it collected. */
  check(): boolean {
    const size = this.heapSize();
    const settled = size <= this.lastSize;
    this.lastSize = size;
    // V8 collects too (its memory reducer shrinks an idle heap): growth counts from the smallest size since.
    this.smallestSinceCollection = Math.min(this.smallestSinceCollection, size);
    if (!this.collect || !settled || size - this.smallestSinceCollection < this.options.growthBytes) return false;
    const started = this.clock.now();
    this.collect();
    const after = this.heapSize();
    this.logger.debug(
      { heapBefore: size, heapAfter: after, ms: Math.round(this.clock.now() - started) },
      `heap trimmed after a burst: ${mb(size)} → ${mb(after)} MB`,
    );
    this.smallestSinceCollection = this.lastSize = after;
    return true;
  }

  private schedule(): void {
    this.timer = this.clock.setTimer(() => {
      this.check();
      this.schedule();
    }, this.options.intervalMs);
  }
}

/**
 * Two full collections: the first one's compaction empties fragmented pages that only the second
 * one gives back (measured with 5000 mappings after a burst: 113.6 MB resident after one, 88.8
 * after two).
 */
function exposedGc(): (() => void) | undefined {
  const gc = (globalThis as { gc?: unknown }).gc;
  if (typeof gc !== 'function') return undefined;
  const collect = gc as () => void;
  return () => {
    collect();
    collect();
  };
}

function mb(bytes: number): string {
  return (bytes / 1024 / 1024).toFixed(1);
}
