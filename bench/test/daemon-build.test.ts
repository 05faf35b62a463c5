import { afterEach, describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { buildToRun, shebangOf } from '../daemons/upnpd.js';

const THIS_TREE = fileURLToPath(new URL('../../', import.meta.url));

describe('the upnpd build a benchmark runs', () => {
  const saved = process.env.BENCH_UPNPD_ENTRY;
  afterEach(() => {
    if (saved === undefined) delete process.env.BENCH_UPNPD_ENTRY;
    else process.env.BENCH_UPNPD_ENTRY = saved;
  });

  it("is this tree's bin/upnpd.js with this tree's public API by default", () => {
    delete process.env.BENCH_UPNPD_ENTRY;
    expect(buildToRun()).toEqual({ entry: `${THIS_TREE}bin/upnpd.js`, packageEntry: `file://${THIS_TREE}dist/core/index.js` });
  });

  it('follows BENCH_UPNPD_ENTRY set after the module was imported (rss-probe sets it per variant)', () => {
    process.env.BENCH_UPNPD_ENTRY = '/tmp/variant-b/bin/upnpd.js';
    expect(buildToRun()).toEqual({ entry: '/tmp/variant-b/bin/upnpd.js', packageEntry: 'file:///tmp/variant-b/dist/core/index.js' });
  });

  it("is a named build's, whatever the environment says", () => {
    process.env.BENCH_UPNPD_ENTRY = '/tmp/variant-b/bin/upnpd.js';
    expect(buildToRun({ root: '/tmp/baseline' })).toEqual({ entry: '/tmp/baseline/bin/upnpd.js', packageEntry: 'file:///tmp/baseline/dist/core/index.js' });
  });

  it("runs with its shebang's variables and node flags (the floor and loopback-ab take them from there too)", () => {
    const entry = `${THIS_TREE}bin/upnpd.js`;
    const { variables, nodeFlags } = shebangOf(entry);
    expect(variables).toContain('MALLOC_ARENA_MAX=1');
    expect(nodeFlags).toContain('--expose-gc');
    expect(readFileSync(entry, 'utf8').split('\n')[0]).toBe(`#!/usr/bin/env -S ${[...variables, 'node', ...nodeFlags].join(' ')}`);
  });
});
