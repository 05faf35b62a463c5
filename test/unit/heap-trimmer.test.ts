import { describe, expect, it } from 'vitest';
import { HeapTrimmer } from '../../core/heap-trimmer.js';
import { silentLogger } from '../../core/logger.js';
import { ManualClock } from '../support/fakes.js';

const MB = 1024 * 1024;
const OPTIONS = { intervalMs: 5_000, growthBytes: 16 * MB };

/** A heap whose size the test sets; a collection shrinks it to `live`. */
function fakeHeap(initial: number, live: number) {
  const heap = { size: initial, collections: 0 };
  const collect = () => {
    heap.collections += 1;
    heap.size = live;
  };
  return { heap, collect, size: () => heap.size };
}

describe('HeapTrimmer', () => {
  it('collects once a burst has grown the heap and stopped, not while it grows', async () => {
    const clock = new ManualClock();
    const { heap, collect, size } = fakeHeap(20 * MB, 22 * MB);
    const trimmer = new HeapTrimmer(clock, silentLogger, collect, size, OPTIONS);
    trimmer.start();
    for (const during of [40, 70, 100]) {
      heap.size = during * MB;
      await clock.advance(5_000);
    }
    expect(heap.collections).toBe(0);
    await clock.advance(5_000); // no growth over this interval: the burst is over
    expect(heap.collections).toBe(1);
    expect(heap.size).toBe(22 * MB);
    await clock.advance(60_000); // and not again while nothing happens
    expect(heap.collections).toBe(1);
    trimmer.stop();
  });

  it('leaves small growth to V8', async () => {
    const clock = new ManualClock();
    const { heap, collect, size } = fakeHeap(20 * MB, 20 * MB);
    const trimmer = new HeapTrimmer(clock, silentLogger, collect, size, OPTIONS);
    trimmer.start();
    heap.size = 30 * MB;
    await clock.advance(60_000);
    expect(heap.collections).toBe(0);
    trimmer.stop();
  });

  it('measures growth from the size after its last collection', () => {
    const { heap, collect, size } = fakeHeap(20 * MB, 25 * MB);
    const trimmer = new HeapTrimmer(new ManualClock(), silentLogger, collect, size, OPTIONS);
    heap.size = 60 * MB;
    trimmer.check(); // grew: wait
    expect(trimmer.check()).toBe(true); // settled at 60 MB: collect, down to 25
    heap.size = 35 * MB;
    trimmer.check();
    expect(trimmer.check()).toBe(false); // 10 MB over 25: not worth it
    heap.size = 45 * MB;
    trimmer.check();
    expect(trimmer.check()).toBe(true);
  });

  it('counts growth from where V8 shrank the heap on its own since its last collection', () => {
    const { heap, collect, size } = fakeHeap(40 * MB, 20 * MB);
    const trimmer = new HeapTrimmer(new ManualClock(), silentLogger, collect, size, OPTIONS);
    heap.size = 22 * MB; // V8's memory reducer, not the trimmer
    trimmer.check();
    heap.size = 40 * MB; // the next burst: 18 MB over 22, though not over the 40 it started at
    trimmer.check();
    expect(trimmer.check()).toBe(true);
  });

  it('by default takes back what a walk of the table leaves after the adds were collected', async () => {
    const clock = new ManualClock();
    const { heap, collect, size } = fakeHeap(16 * MB, 23 * MB);
    const trimmer = new HeapTrimmer(clock, silentLogger, collect, size);
    trimmer.start();
    heap.size = 33 * MB; // 5000 adds
    await clock.advance(10_000);
    expect(heap.collections).toBe(1);
    heap.size = 30 * MB; // three walks of the table: 7 MB more, measured on the bench's testbed
    await clock.advance(10_000);
    expect(heap.collections).toBe(2);
    heap.size = 24 * MB; // then an idle table's periodic checks
    await clock.advance(60_000);
    expect(heap.collections).toBe(2);
    trimmer.stop();
  });

  it('does nothing without --expose-gc, and stops with the daemon', async () => {
    const clock = new ManualClock();
    const idle = new HeapTrimmer(clock, silentLogger, undefined, () => 500 * MB, OPTIONS);
    expect(idle.enabled).toBe(false);
    idle.start();
    expect(idle.check()).toBe(false);

    const { heap, collect, size } = fakeHeap(20 * MB, 20 * MB);
    const stopped = new HeapTrimmer(clock, silentLogger, collect, size, OPTIONS);
    stopped.start();
    stopped.stop();
    heap.size = 100 * MB;
    await clock.advance(60_000);
    expect(heap.collections).toBe(0);
  });

  it('finds gc where Node exposes it (the upnpd command runs node with --expose-gc)', async () => {
    const { readFileSync } = await import('node:fs');
    const shebang = readFileSync(new URL('../../bin/upnpd.js', import.meta.url), 'utf8').split('\n')[0];
    expect(shebang).toMatch(/^#!\/usr\/bin\/env -S .*node .*--expose-gc/);
    const global = globalThis as { gc?: unknown };
    const original = global.gc;
    global.gc = () => undefined;
    try {
      expect(new HeapTrimmer(new ManualClock(), silentLogger).enabled).toBe(true);
    } finally {
      if (original === undefined) delete global.gc;
      else global.gc = original;
    }
  });
});
