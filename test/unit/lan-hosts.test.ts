import { describe, expect, it } from 'vitest';
import type { CommandResult, CommandRunner } from '../../core/command-runner.js';
import { Ipv6Lan } from '../../core/net/ipv6.js';
import { LanHosts, NeighbourCache } from '../../core/net/lan-hosts.js';
import { parseNeighbourLine, type NeighbourEvent } from '../../core/net/network-info.js';

// The pinhole ownership check: a host may open pinholes to its own addresses only, i.e. those
// with its link-layer address in the gateway's neighbour table. The table here is a fake `ip -j
// neigh` that counts its runs; the events are those `ip monitor neigh` would send.

const LAN = new Ipv6Lan([{ interface: 'br-lan', address: '2001:db8:77::1', prefixLength: 64, scopeId: 0, linkLocal: false }]);
const HOST_A = '02:00:00:00:00:0a';
const HOST_B = '02:00:00:00:00:0b';
const A_FIRST = '2001:db8:77::10';
const A_PRIVACY = '2001:db8:77::a0';
const B_ADDRESS = '2001:db8:77::20';
const SETTINGS = { resolveAttempts: 0, resolveWaitMs: 0, commandTimeoutMs: 1_000, cacheMaxAgeMs: 30_000, cacheMaxEntries: 100 };

/** The kernel's neighbour table, read with `ip -j neigh show to ADDRESS dev DEV`. */
class NeighbourTable implements CommandRunner {
  readonly table = new Map<string, string>();
  runs = 0;
  /** Called while a read runs (an event arriving meanwhile). */
  duringRun: (() => void) | undefined;
  run(_file: string, args: readonly string[]): Promise<CommandResult> {
    this.runs++;
    this.duringRun?.();
    const address = args[args.indexOf('to') + 1]!;
    const lladdr = this.table.get(address);
    const entries = lladdr === undefined ? [] : [{ dst: address, dev: 'br-lan', lladdr, state: ['REACHABLE'] }];
    return Promise.resolve({ exitCode: 0, stdout: JSON.stringify(entries), stderr: '' });
  }
  start(): never {
    throw new Error('not used');
  }
}

function setup() {
  const kernel = new NeighbourTable();
  kernel.table.set(A_FIRST, HOST_A).set(A_PRIVACY, HOST_A).set(B_ADDRESS, HOST_B);
  let send: (event: NeighbourEvent) => void = () => {};
  let now = 0;
  const cache = new NeighbourCache(
    ['br-lan'],
    (onEvent) => {
      send = onEvent;
      return () => (send = () => {});
    },
    SETTINGS,
    () => now,
  );
  const hosts = new LanHosts(['br-lan'], kernel, () => LAN, SETTINGS, cache);
  /** What the kernel now says, and its event. */
  const neighbour = (address: string, lladdr: string | undefined, state = 'REACHABLE', deleted = false) => {
    if (lladdr === undefined || deleted) kernel.table.delete(address);
    else kernel.table.set(address, lladdr);
    send({ kind: 'neighbour', address, dev: 'br-lan', ...(lladdr === undefined ? {} : { lladdr }), states: [state], deleted });
  };
  return { kernel, cache, hosts, neighbour, lose: () => send({ kind: 'lost' }), resume: () => send({ kind: 'resumed' }), later: (ms: number) => (now += ms) };
}

describe('the pinhole ownership check with the neighbour cache', () => {
  it('reads the kernel once, then answers the same host from the cache; another host is refused, by the kernel', async () => {
    const { kernel, hosts } = setup();
    expect(await hosts.refuse(A_PRIVACY, A_FIRST)).toBeUndefined();
    const first = kernel.runs;
    expect(first).toBe(2);
    for (let i = 0; i < 10; i++) expect(await hosts.refuse(A_PRIVACY, A_FIRST)).toBeUndefined();
    expect(kernel.runs).toBe(first);
    // The address it spoke from costs nothing, cached or not.
    expect(await hosts.refuse(A_FIRST, A_FIRST)).toBeUndefined();
    expect(await hosts.refuse(B_ADDRESS, A_FIRST)).toMatch(/not an address of .* \(another host\)/);
    expect(kernel.runs).toBeGreaterThan(first);
  });

  it('fills from the events alone (no process at all), in any spelling of the address', async () => {
    const { kernel, hosts, neighbour } = setup();
    neighbour(A_FIRST, HOST_A);
    neighbour(A_PRIVACY, HOST_A, 'STALE');
    expect(await hosts.refuse('2001:0db8:0077:0000:0000:0000:0000:00A0', A_FIRST)).toBeUndefined();
    expect(kernel.runs).toBe(0);
  });

  it('follows a neighbour whose link-layer address changed: the old owner is refused at once', async () => {
    const { hosts, neighbour } = setup();
    neighbour(A_FIRST, HOST_A);
    neighbour(A_PRIVACY, HOST_A);
    expect(await hosts.refuse(A_PRIVACY, A_FIRST)).toBeUndefined();
    // The address now answers from host B (it took it over): the event updates the entry.
    neighbour(A_PRIVACY, HOST_B);
    expect(await hosts.refuse(A_PRIVACY, A_FIRST)).toMatch(/another host/);
  });

  it('drops an entry that is deleted or failed, and asks the kernel again', async () => {
    const { kernel, hosts, neighbour } = setup();
    neighbour(A_FIRST, HOST_A);
    neighbour(A_PRIVACY, HOST_A);
    neighbour(A_PRIVACY, undefined, 'FAILED');
    expect(await hosts.refuse(A_PRIVACY, A_FIRST)).toMatch(/no host answers for it/);
    expect(kernel.runs).toBeGreaterThan(0);
    neighbour(A_FIRST, HOST_A, 'STALE', true);
    const runs = kernel.runs;
    // The kernel has both again (no event yet): read from it, not from the cache.
    kernel.table.set(A_FIRST, HOST_A).set(A_PRIVACY, HOST_A);
    expect(await hosts.refuse(A_PRIVACY, A_FIRST)).toBeUndefined();
    expect(kernel.runs).toBeGreaterThan(runs);
  });

  it('trusts an entry for cacheMaxAgeMs only, and nothing once events may be lost', async () => {
    const { kernel, hosts, neighbour, later, lose } = setup();
    neighbour(A_FIRST, HOST_A);
    neighbour(A_PRIVACY, HOST_A);
    later(SETTINGS.cacheMaxAgeMs + 1);
    // Changed behind the cache's back (an event lost): the kernel is asked, and says another host.
    kernel.table.set(A_PRIVACY, HOST_B);
    expect(await hosts.refuse(A_PRIVACY, A_FIRST)).toMatch(/another host/);

    neighbour(A_PRIVACY, HOST_A);
    lose();
    kernel.table.set(A_PRIVACY, HOST_B);
    const runs = kernel.runs;
    expect(await hosts.refuse(A_PRIVACY, A_FIRST)).toMatch(/another host/);
    expect(kernel.runs).toBeGreaterThan(runs);
  });

  it('answers from the events again once they flow again, with nothing kept from before the loss', async () => {
    const { kernel, cache, hosts, neighbour, lose, resume } = setup();
    neighbour(A_FIRST, HOST_A);
    neighbour(A_PRIVACY, HOST_A);
    lose();
    resume();
    // What was heard before the loss is gone: the kernel is asked.
    expect(cache.sameHost(A_FIRST, A_PRIVACY)).toBe(false);
    neighbour(A_FIRST, HOST_A);
    neighbour(A_PRIVACY, HOST_A);
    const runs = kernel.runs;
    expect(await hosts.refuse(A_PRIVACY, A_FIRST)).toBeUndefined();
    expect(kernel.runs).toBe(runs);
  });

  it('keeps no kernel read during which an event came (it may be older than the event)', async () => {
    const { kernel, hosts, neighbour } = setup();
    kernel.duringRun = () => {
      kernel.duringRun = undefined;
      // While the first read runs: the privacy address moves to host B.
      neighbour(A_PRIVACY, HOST_B);
    };
    await hosts.refuse(A_PRIVACY, A_FIRST);
    kernel.table.set(A_PRIVACY, HOST_A);
    neighbour(A_PRIVACY, HOST_B);
    expect(await hosts.refuse(A_PRIVACY, A_FIRST)).toMatch(/another host/);
  });

  it('ignores neighbours of other interfaces (the WAN side)', async () => {
    const { kernel, cache, hosts } = setup();
    const send = (cache as unknown as { hear(e: NeighbourEvent): void }).hear.bind(cache);
    send({ kind: 'neighbour', address: A_FIRST, dev: 'wan0', lladdr: HOST_A, states: ['REACHABLE'], deleted: false });
    send({ kind: 'neighbour', address: B_ADDRESS, dev: 'wan0', lladdr: HOST_A, states: ['REACHABLE'], deleted: false });
    expect(await hosts.refuse(B_ADDRESS, A_FIRST)).toMatch(/another host/);
    expect(kernel.runs).toBeGreaterThan(0);
  });
});

describe('ip monitor neigh lines', () => {
  it.each([
    [
      '2001:db8::2 dev br-lan lladdr 02:00:00:00:00:0A router REACHABLE ',
      { address: '2001:db8::2', dev: 'br-lan', lladdr: '02:00:00:00:00:0a', states: ['REACHABLE'], deleted: false },
    ],
    ['10.9.0.2 dev va lladdr 02:00:00:00:00:03 STALE', { address: '10.9.0.2', dev: 'va', lladdr: '02:00:00:00:00:03', states: ['STALE'], deleted: false }],
    ['10.9.0.2 dev va FAILED ', { address: '10.9.0.2', dev: 'va', states: ['FAILED'], deleted: false }],
    [
      'Deleted 10.9.0.2 dev va lladdr 02:00:00:00:00:03 STALE',
      { address: '10.9.0.2', dev: 'va', lladdr: '02:00:00:00:00:03', states: ['STALE'], deleted: true },
    ],
  ])('%s', (line, expected) => {
    expect(parseNeighbourLine(line)).toEqual({ kind: 'neighbour', ...expected });
  });

  it.each(['miss 10.9.0.2 dev va', '', 'dev va', 'nonsense dev va lladdr x REACHABLE'])('%j is not an entry', (line) => {
    expect(parseNeighbourLine(line)).toBeUndefined();
  });
});
