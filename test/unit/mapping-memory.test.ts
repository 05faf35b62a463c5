import { describe, expect, it } from 'vitest';
import { ownString } from '../../core/mapping/types.js';
import { ManualClock, makeMappings } from '../support/fakes.js';

/** What the mapping table keeps per mapping, and the timers it leaves behind. */

class CountingClock extends ManualClock {
  armed = 0;
  override setTimer(callback: () => void, delayMs: number): unknown {
    this.armed++;
    return super.setTimer(callback, delayMs);
  }
}

const CLIENT = { address: '192.168.1.50', via: 'upnp-igd:2' };

function request(externalPort: number, leaseSeconds: number) {
  return {
    remoteHost: '',
    externalPort,
    protocol: 'TCP' as const,
    internalClient: CLIENT.address,
    internalPort: externalPort,
    enabled: true,
    description: 'd',
    leaseSeconds,
  };
}

describe('ownString', () => {
  it('gives the same text, every code unit kept (lone surrogates, NUL, non-ASCII)', () => {
    for (const text of [
      '',
      'short',
      '192.168.100.200',
      'x'.repeat(300),
      'é€😀 and more text',
      '\ud800 lone \udfff surrogates',
      'nul\u0000inside a long string',
    ]) {
      expect(ownString(text)).toBe(text);
    }
  });

  it('copies the strings of a request into the mapping (a slice of a request body is not kept)', async () => {
    const { mappings } = makeMappings();
    const body = `<u:AddPortMapping><NewInternalClient>192.168.100.200</NewInternalClient></u:AddPortMapping>`;
    const internalClient = /<NewInternalClient>([^<]*)</.exec(body)![1]!;
    const mapping = await mappings.add({ ...request(5000, 0), internalClient }, { address: internalClient, via: 'upnp-igd:2' });
    expect(mapping.internalClient).toBe('192.168.100.200');
  });
});

describe("a host's mappings", () => {
  // Which string a mapping holds cannot be seen from JavaScript (equal strings are the same value);
  // the requester object can: mappings that share it share its strings too (portMappingOf).
  const asked = (externalPort: number) => request(externalPort, 3600);
  /** A requester as a front-end makes one for each request: equal, never the same object. */
  const requester = () => ({ ...CLIENT });

  it('share one requester object, whether added one by one or in one batch', async () => {
    const { mappings } = makeMappings();
    const first = await mappings.add(asked(6001), requester());
    const [second, third] = await Promise.all([mappings.add(asked(6002), requester()), mappings.add(asked(6003), requester())]);
    expect(second.createdBy).toBe(first.createdBy);
    expect(third.createdBy).toBe(first.createdBy);
  });

  it('keep a requester of their own when it differs (another protocol)', async () => {
    const { mappings } = makeMappings();
    const first = await mappings.add(asked(6001), requester());
    const other = await mappings.add(asked(6002), { address: CLIENT.address, via: 'nat-pmp' });
    expect(other.createdBy).toEqual({ address: CLIENT.address, via: 'nat-pmp' });
    expect(other.createdBy).not.toBe(first.createdBy);
  });

  it('restored in one batch share one requester object too', async () => {
    const { mappings } = makeMappings();
    await mappings.restore([6001, 6002, 6003].map((port) => ({ ...asked(port), remainingMs: 60_000, createdBy: requester() })));
    const [a, b, c] = [...mappings.values()];
    expect(b!.createdBy).toBe(a!.createdBy);
    expect(c!.createdBy).toBe(a!.createdBy);
  });
});

describe('lease expiry timer', () => {
  it('is armed once for a run of adds whose leases end later than the first, and still expires each lease on time', async () => {
    const clock = new CountingClock();
    const { mappings } = makeMappings({ clock });
    for (let i = 0; i < 50; i++) {
      await mappings.add(request(6000 + i, 100 + i), CLIENT);
      await clock.advance(10);
    }
    // One timer for the first lease; 50 batches did not re-arm it.
    expect(clock.armed).toBe(1);
    // The first lease ended 100 s after it began (0.5 s of the run passed since).
    await clock.advance(99_600);
    expect(mappings.size).toBe(49);
    expect(mappings.get({ remoteHost: '', externalPort: 6000, protocol: 'TCP' })).toBeUndefined();
    await clock.advance(60_000);
    expect(mappings.size).toBe(0);
  });

  it('is armed earlier when a shorter lease comes, and a renewed mapping is not expired by the timer set for its old lease', async () => {
    const clock = new CountingClock();
    const { mappings } = makeMappings({ clock });
    await mappings.add(request(7000, 1000), CLIENT);
    await mappings.add(request(7001, 10), CLIENT);
    expect(clock.armed).toBe(2);
    // Renewed before the timer set for its first lease fires: that timer finds nothing due.
    await clock.advance(5_000);
    await mappings.add(request(7001, 100), CLIENT);
    await clock.advance(6_000);
    expect(mappings.size).toBe(2);
    await clock.advance(100_000);
    expect([...mappings.values()].map((m) => m.externalPort)).toEqual([7000]);
    await clock.advance(900_000);
    expect(mappings.size).toBe(0);
  });

  it('keeps the queue of leases bounded when a host renews the same long leases over and over, and still expires each on time', async () => {
    const clock = new ManualClock();
    const { mappings } = makeMappings({ clock });
    // Two mappings of a week, renewed 10,000 times each (5 minutes at the default rate limit):
    // each renewal left its older entry queued for the rest of the week.
    for (let i = 0; i < 10_000; i++) {
      await Promise.all([mappings.add(request(8000, 604_800), CLIENT), mappings.add(request(8001, 3_600), CLIENT)]);
      if (i % 100 === 0) await clock.advance(1_000);
    }
    expect(mappings.queuedExpiries).toBeLessThanOrEqual(2 * mappings.size + 1_024 + 2);
    // The last renewal of 8001 was just now: its hour ends 3,600 s from now, not before.
    await clock.advance(3_599_000);
    expect(mappings.size).toBe(2);
    await clock.advance(2_000);
    expect([...mappings.values()].map((m) => m.externalPort)).toEqual([8000]);
    await clock.advance(604_800_000);
    expect(mappings.size).toBe(0);
    expect(mappings.queuedExpiries).toBe(0);
  });
});
