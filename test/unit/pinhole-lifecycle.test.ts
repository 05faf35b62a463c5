import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { UpnpError, UpnpErrorCode } from '../../core/errors.js';
import { silentLogger } from '../../core/logger.js';
import type { PinholeRequest } from '../../core/mapping/pinhole.js';
import { MappingStateFile } from '../../core/mapping/state-file.js';
import type { Plugin } from '../../core/plugins/types.js';
import { canonicalIPv6, inIPv6Prefix, isRoutableIPv6 } from '../../core/net/ipv6.js';
import type { MappingRequest } from '../../core/mapping/types.js';
import { describePinhole } from '../../plugins/logging/mapping-log.js';
import { QuotaPolicy } from '../../plugins/quota/policy.js';
import { RecordingBackend, faultOf, makeMappings } from '../support/fakes.js';
import { useTempDir } from '../support/temp-dir.js';

// IPv6 pinholes in the mapping lifecycle, as WANIPv6FirewallControl:1 describes them: a UniqueID
// per pinhole, owned by the host that opened it, a lease of its own, one backend transaction per
// change, refused (703) when the firewall backend has no pinholes.

const HOST_A = { address: '192.168.77.10', via: 'test' };
const HOST_B = { address: '192.168.77.11', via: 'test' };
const A_ADDRESSES = ['2001:db8:77::10', '2001:db8:77::20'];
const B_ADDRESSES = ['2001:db8:77::11'];

/** Which IPv6 addresses belong to which host (what the gateway's neighbour table says in the daemon). */
const sameHost = (internalClient: string, requester: string) => {
  const own = requester === HOST_A.address ? A_ADDRESSES : requester === HOST_B.address ? B_ADDRESSES : [requester];
  return Promise.resolve(own.includes(internalClient) ? undefined : `${internalClient} is not an address of ${requester}`);
};

function pinhole(overrides: Partial<PinholeRequest> = {}): PinholeRequest {
  return { remoteHost: '', remotePort: 0, internalClient: A_ADDRESSES[0]!, internalPort: 8080, protocol: 'TCP', leaseSeconds: 3600, ...overrides };
}

/** An IPv4 port mapping of host A (it shares the table, the transactions and the quotas). */
function portMapping(port: number): MappingRequest {
  return {
    remoteHost: '',
    externalPort: port,
    protocol: 'TCP',
    internalClient: HOST_A.address,
    internalPort: port,
    enabled: true,
    description: '',
    leaseSeconds: 60,
  };
}

function setUp(options: Parameters<typeof makeMappings>[0] = {}) {
  const made = makeMappings(options);
  made.mappings.checkPinholeTargets(sameHost);
  return made;
}

describe('AddPinhole', () => {
  it('opens the pinhole in the backend and answers a UniqueID; each new pinhole gets the next one', async () => {
    const { mappings, backend } = setUp();
    const first = await mappings.openPinhole(pinhole(), HOST_A);
    const second = await mappings.openPinhole(pinhole({ protocol: 'UDP', internalPort: 5060 }), HOST_A);
    expect([first.id, second.id]).toEqual([1, 2]);
    expect([...backend.installedPinholes.keys()]).toEqual(['TCP [*]:* -> [2001:db8:77::10]:8080', 'UDP [*]:* -> [2001:db8:77::10]:5060']);
    expect(mappings.pinholes.size).toBe(2);
  });

  it('the same pinhole asked again by its host answers the same UniqueID with the new lease, without a firewall change', async () => {
    const { mappings, backend, clock } = setUp();
    const first = await mappings.openPinhole(pinhole({ leaseSeconds: 60 }), HOST_A);
    await clock.advance(30_000);
    const again = await mappings.openPinhole(pinhole({ leaseSeconds: 600 }), HOST_A);
    expect(again.id).toBe(first.id);
    expect(backend.applied).toHaveLength(1);
    expect(mappings.remainingSeconds(again)).toBe(600);
  });

  it('a host opens pinholes to ANY of its addresses, not only the one it spoke from', async () => {
    const { mappings } = setUp();
    await mappings.openPinhole(pinhole({ internalClient: A_ADDRESSES[0] }), HOST_A);
    await mappings.openPinhole(pinhole({ internalClient: A_ADDRESSES[1] }), HOST_A);
    expect(mappings.pinholes.size).toBe(2);
  });

  it('606 for an address of another host; nothing reaches the firewall', async () => {
    const { mappings, backend } = setUp();
    expect(await faultOf(mappings.openPinhole(pinhole({ internalClient: B_ADDRESSES[0] }), HOST_A))).toBe(UpnpErrorCode.NotAuthorized);
    expect(backend.applied).toEqual([]);
  });

  it('without a neighbour table, only the address the client spoke from', async () => {
    const { mappings } = makeMappings();
    const requester = { address: A_ADDRESSES[0]!, via: 'test' };
    await mappings.openPinhole(pinhole(), requester);
    expect(await faultOf(mappings.openPinhole(pinhole({ internalClient: A_ADDRESSES[1] }), requester))).toBe(UpnpErrorCode.NotAuthorized);
  });

  it('703 InboundPinholeNotAllowed when the firewall backend has no pinholes (a third-party backend without IPv6)', async () => {
    const { mappings, backend } = setUp({ backend: new RecordingBackend({ pinholes: false }) });
    expect(mappings.pinholesSupported).toBe(false);
    expect(await faultOf(mappings.openPinhole(pinhole(), HOST_A))).toBe(UpnpErrorCode.InboundPinholeNotAllowed);
    expect(backend.applied).toEqual([]);
  });

  it('beforePinhole policies may veto with their own code (a quota: 701 PinholeSpaceExhausted)', async () => {
    const quota: Plugin = {
      name: 'one-pinhole',
      hooks: {
        beforePinhole: (_request, { pinholes, existing }) => {
          if (!existing && pinholes.size >= 1) throw new UpnpError(UpnpErrorCode.PinholeSpaceExhausted);
        },
      },
    };
    const { mappings } = setUp({ plugins: [quota] });
    await mappings.openPinhole(pinhole(), HOST_A);
    expect(await faultOf(mappings.openPinhole(pinhole({ internalPort: 9090 }), HOST_A))).toBe(701);
    // A renewal is not a new pinhole.
    await mappings.openPinhole(pinhole(), HOST_A);
  });

  it('an IPv4 mapping and a pinhole asked together go to the backend in one transaction', async () => {
    const { mappings, backend } = setUp();
    await Promise.all([mappings.add(portMapping(5000), HOST_A), mappings.openPinhole(pinhole(), HOST_A)]);
    expect(backend.applied).toHaveLength(1);
    expect(backend.applied[0]!.add).toHaveLength(1);
    expect(backend.applied[0]!.pinholes?.add).toHaveLength(1);
  });
});

describe('UpdatePinhole, DeletePinhole, GetPinholePackets', () => {
  it('704 NoSuchEntry for a UniqueID no pinhole has', async () => {
    const { mappings } = setUp();
    expect(await faultOf(mappings.updatePinhole(7, 60, HOST_A))).toBe(UpnpErrorCode.NoSuchEntry);
    expect(await faultOf(mappings.closePinhole(7, HOST_A))).toBe(UpnpErrorCode.NoSuchEntry);
    expect(await faultOf(mappings.pinholePackets(7, HOST_A))).toBe(UpnpErrorCode.NoSuchEntry);
  });

  it('a UniqueID is owned by its host: another one gets 606 and the pinhole stays', async () => {
    const { mappings, backend } = setUp();
    const { id } = await mappings.openPinhole(pinhole(), HOST_A);
    expect(await faultOf(mappings.updatePinhole(id, 60, HOST_B))).toBe(606);
    expect(await faultOf(mappings.closePinhole(id, HOST_B))).toBe(606);
    expect(await faultOf(mappings.pinholePackets(id, HOST_B))).toBe(606);
    expect(backend.installedPinholes.size).toBe(1);
    await mappings.closePinhole(id, HOST_A);
    expect(backend.installedPinholes.size).toBe(0);
    expect(mappings.pinholes.get(id)).toBeUndefined();
  });

  it('UpdatePinhole sets a new lease and changes no rule', async () => {
    const { mappings, backend, clock } = setUp();
    const { id } = await mappings.openPinhole(pinhole({ leaseSeconds: 60 }), HOST_A);
    await mappings.updatePinhole(id, 3600, HOST_A);
    await clock.advance(120_000);
    expect(mappings.pinholes.get(id)).toBeDefined();
    expect(backend.applied).toHaveLength(1);
  });

  it('GetPinholePackets reads the backend counter of that pinhole', async () => {
    const { mappings, backend } = setUp();
    const { id } = await mappings.openPinhole(pinhole(), HOST_A);
    expect(await mappings.pinholePackets(id, HOST_A)).toBe(0);
    backend.pinholePackets.set('TCP [*]:* -> [2001:db8:77::10]:8080', 12);
    expect(await mappings.pinholePackets(id, HOST_A)).toBe(12);
  });
});

describe('pinhole leases', () => {
  it('a pinhole whose lease ran out is removed from the table and the firewall', async () => {
    const { mappings, backend, clock } = setUp();
    await mappings.openPinhole(pinhole({ leaseSeconds: 10 }), HOST_A);
    await clock.advance(9_000);
    expect(backend.installedPinholes.size).toBe(1);
    await clock.advance(2_000);
    expect(backend.installedPinholes.size).toBe(0);
    expect(mappings.pinholes.size).toBe(0);
  });

  it('is cut to the lease policy maximum', async () => {
    const { mappings } = setUp({ lease: { defaultSeconds: 60, maxSeconds: 600, allowPermanent: false } });
    const p = await mappings.openPinhole(pinhole({ leaseSeconds: 86400 }), HOST_A);
    expect(mappings.leaseLeftMs(p)).toBe(600_000);
  });

  it('removeAll (shutdown) closes pinholes too', async () => {
    const { mappings, backend } = setUp();
    await mappings.openPinhole(pinhole(), HOST_A);
    expect(await mappings.removeAll()).toBe(1);
    expect(backend.installedPinholes.size).toBe(0);
  });
});

describe('pinholes in the state directory', () => {
  it('a snapshot and journal lines keep pinholes across a restart, with their UniqueIDs and lease left', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'upnpd-pinholes-'));
    try {
      let wall = 1_700_000_000_000;
      const file = new MappingStateFile(dir, silentLogger, () => wall);
      await file.prepare();
      const { mappings } = setUp();
      const kept = await mappings.openPinhole(pinhole({ leaseSeconds: 3600 }), HOST_A);
      const closed = await mappings.openPinhole(pinhole({ internalPort: 22 }), HOST_A);
      await file.save([], (e) => mappings.leaseLeftMs(e), mappings.pinholes.values());
      const added = await mappings.openPinhole(pinhole({ internalClient: A_ADDRESSES[1], protocol: 'UDP', internalPort: 9 }), HOST_A);
      await file.append({ mapped: [], unmapped: [], pinholes: [added], closedPinholes: [closed.id] }, (e) => mappings.leaseLeftMs(e));

      wall += 60_000;
      const loaded = await file.load();
      expect(loaded.invalid).toBe(0);
      expect(loaded.pinholes.map((p) => [p.id, p.internalClient, p.internalPort, p.createdBy.address])).toEqual([
        [kept.id, A_ADDRESSES[0], 8080, HOST_A.address],
        [added.id, A_ADDRESSES[1], 9, HOST_A.address],
      ]);
      expect(loaded.pinholes[0]!.remainingMs).toBe(3540_000);

      const restarted = setUp();
      expect(await restarted.mappings.restorePinholes(loaded.pinholes)).toBe(2);
      expect(restarted.backend.installedPinholes.size).toBe(2);
      // A new pinhole after the restart does not take a restored UniqueID.
      const next = await restarted.mappings.openPinhole(pinhole({ internalPort: 4000 }), HOST_A);
      expect([kept.id, added.id]).not.toContain(next.id);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('UniqueIDs across a restart', () => {
  const stateDir = useTempDir('upnpd-pinhole-ids-');

  it('the last UniqueID given out is kept (snapshot and journal), so that a restart does not give again that of a pinhole closed or ended before the stop', async () => {
    let wall = 1_700_000_000_000;
    const file = new MappingStateFile(stateDir.path, silentLogger, () => wall);
    await file.prepare();
    const { mappings } = setUp();
    const leaseLeft = (e: Parameters<typeof mappings.leaseLeftMs>[0]) => mappings.leaseLeftMs(e);
    const kept = await mappings.openPinhole(pinhole(), HOST_A);
    const closed = await mappings.openPinhole(pinhole({ internalPort: 22 }), HOST_A);
    await mappings.closePinhole(closed.id, HOST_A);
    await file.save([], leaseLeft, mappings.pinholes.values(), mappings.lastGivenPinholeId);
    expect((await file.load()).lastPinholeId).toBe(closed.id);
    // Opened after the snapshot (a journal line), and its lease ends while upnpd is stopped.
    const ended = await mappings.openPinhole(pinhole({ internalPort: 23, leaseSeconds: 60 }), HOST_A);
    await file.append({ mapped: [], unmapped: [], pinholes: [ended] }, leaseLeft);
    // A renewal of an older pinhole, journalled after it, is no new UniqueID.
    await file.append({ mapped: [], unmapped: [], pinholes: [await mappings.updatePinhole(kept.id, 3600, HOST_A)] }, leaseLeft);

    wall += 120_000;
    const loaded = await file.load();
    expect(loaded.pinholes.map((p) => p.id)).toEqual([kept.id]);
    expect(loaded.lastPinholeId).toBe(ended.id);
    const restarted = setUp();
    restarted.mappings.resumePinholeIds(loaded.lastPinholeId);
    expect(await restarted.mappings.restorePinholes(loaded.pinholes)).toBe(1);
    const next = await restarted.mappings.openPinhole(pinhole({ internalPort: 4000 }), HOST_A);
    expect([kept.id, closed.id, ended.id]).not.toContain(next.id);
    expect(next.id).toBe(ended.id + 1);
  });

  it('a snapshot of an earlier release (no lastPinholeId) resumes after the highest UniqueID it holds; a bad lastPinholeId costs only itself', async () => {
    const file = new MappingStateFile(stateDir.path, silentLogger, () => 1_700_000_000_000);
    await file.prepare();
    const { mappings } = setUp();
    await mappings.openPinhole(pinhole(), HOST_A);
    const second = await mappings.openPinhole(pinhole({ internalPort: 22 }), HOST_A);
    await file.save([], (e) => mappings.leaseLeftMs(e), mappings.pinholes.values());
    expect((await file.load()).lastPinholeId).toBe(second.id);
    const snapshot = JSON.parse(await readFile(file.path, 'utf8')) as Record<string, unknown>;
    await writeFile(file.path, JSON.stringify({ ...snapshot, lastPinholeId: 'seven' }));
    const loaded = await file.load();
    expect([loaded.state, loaded.pinholes.length, loaded.lastPinholeId]).toEqual(['intact', 2, second.id]);
  });
});

describe('IPv6 addresses', () => {
  it.each([
    ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
    ['2001:db8:77:0::10', '2001:db8:77::10'],
  ])('%s is written %s', (given, canonical) => {
    expect(canonicalIPv6(given)).toBe(canonical);
  });

  it.each([
    ['2001:db8:77::10', true],
    ['fd00::1', true],
    ['fe80::1', false],
    ['::1', false],
    ['::', false],
    ['ff02::1', false],
    ['::ffff:192.168.77.10', false],
    ['192.168.77.10', false],
    ['fe80::1%eth0', false],
  ])('%s may be a pinhole target: %s', (address, routable) => {
    expect(isRoutableIPv6(address)).toBe(routable);
  });

  it('prefix membership', () => {
    expect(inIPv6Prefix('2001:db8:77::10', '2001:db8:77::1', 64)).toBe(true);
    expect(inIPv6Prefix('2001:db8:78::10', '2001:db8:77::1', 64)).toBe(false);
    expect(inIPv6Prefix('2001:db8:77::10', '2001:db8:77::1', 0)).toBe(true);
  });
});

describe('quotas count pinholes', () => {
  const refusals = { refuse: (_rule: string, _requester: unknown, error: Error) => error } as unknown as ConstructorParameters<typeof QuotaPolicy>[1];

  it('a client at its per-client quota of mappings and pinholes gets 701 for a new pinhole, and 728 for a new mapping; renewals pass', async () => {
    const quota = new QuotaPolicy({ perClient: 2, total: 100 }, refusals);
    const { mappings } = setUp({ plugins: [quota] });
    await mappings.add(portMapping(5000), HOST_A);
    await mappings.openPinhole(pinhole(), HOST_A);
    expect(await faultOf(mappings.openPinhole(pinhole({ internalPort: 9 }), HOST_A))).toBe(UpnpErrorCode.PinholeSpaceExhausted);
    expect(await faultOf(mappings.add(portMapping(5001), HOST_A))).toBe(UpnpErrorCode.NoPortMapsAvailable);
    await mappings.openPinhole(pinhole({ leaseSeconds: 120 }), HOST_A);
    // Another client has its own budget.
    await mappings.openPinhole(pinhole({ internalClient: B_ADDRESSES[0] }), HOST_B);
  });
});

describe('pinholes in the log', () => {
  it('an opened and an expired pinhole read like the mapping records', () => {
    const p = { ...pinhole(), id: 3, expiresAt: 0, createdBy: HOST_A };
    expect(describePinhole({ pinhole: p, requester: HOST_A, change: 'opened' }, 3600).message).toBe(
      'AddPinhole: UniqueID:3 TCP [*]:* -> [2001:db8:77::10]:8080 Lease:3600 by 192.168.77.10 via test',
    );
    const expired = describePinhole({ pinhole: p, requester: null, change: 'expired' }, 0);
    expect(expired.message).toBe('ExpirePinhole: UniqueID:3 TCP [*]:* -> [2001:db8:77::10]:8080 lease expired, opened by 192.168.77.10 via test');
    expect(expired.fields).toMatchObject({ event: 'pinhole', change: 'expired', uniqueId: 3, createdBy: HOST_A.address });
  });
});
