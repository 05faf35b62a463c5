import { describe, expect, it } from 'vitest';
import { UpnpError, UpnpErrorCode } from '../../core/errors.js';
import type { MappingRequest } from '../../core/mapping/types.js';
import type { Plugin } from '../../core/plugins/types.js';
import { faultOf, makeMappings, settle } from '../support/fakes.js';

const A = { address: '192.168.77.10', via: 'test' };
const B = { address: '192.168.77.11', via: 'test' };

function req(overrides: Partial<MappingRequest> = {}): MappingRequest {
  return {
    remoteHost: '',
    externalPort: 5000,
    protocol: 'TCP',
    internalClient: A.address,
    internalPort: 5000,
    enabled: true,
    description: 'game',
    leaseSeconds: 3600,
    ...overrides,
  };
}

describe('mapping lifecycle', () => {
  it('installs the rule of a new mapping through the backend and reports the remaining lease', async () => {
    const { mappings, backend, clock } = makeMappings();
    await mappings.add(req(), A);
    expect([...backend.installed.values()]).toEqual([{ remoteHost: '', externalPort: 5000, protocol: 'TCP', internalClient: A.address, internalPort: 5000 }]);
    await clock.advance(1_500);
    expect(mappings.remainingSeconds(mappings.get(req())!)).toBe(3599);
  });

  it('renews a mapping by the same client without touching the firewall', async () => {
    const { mappings, backend } = makeMappings();
    await mappings.add(req(), A);
    await mappings.add(req({ leaseSeconds: 7200, description: 'renewed' }), A);
    expect(backend.applied).toHaveLength(1);
    expect(mappings.get(req())!.description).toBe('renewed');
  });

  it('replaces the target of a mapping atomically: one change set removing the old rule and adding the new', async () => {
    const { mappings, backend } = makeMappings();
    await mappings.add(req(), A);
    await mappings.add(req({ internalPort: 6000 }), A);
    expect(backend.applied[1]).toEqual({
      remove: [expect.objectContaining({ internalPort: 5000 })],
      add: [expect.objectContaining({ internalPort: 6000 })],
    });
    expect(mappings.size).toBe(1);
  });

  it('never gives a port to another client under another remote host (a port belongs to one client however it is restricted)', async () => {
    const { mappings } = makeMappings();
    const R1 = '203.0.113.7';
    const R2 = '203.0.113.8';
    await mappings.add(req({ remoteHost: R1 }), A);
    expect(await faultOf(mappings.add(req({ internalClient: B.address }), B))).toBe(UpnpErrorCode.ConflictInMappingEntry);
    expect(await faultOf(mappings.add(req({ remoteHost: R2, internalClient: B.address }), B))).toBe(UpnpErrorCode.ConflictInMappingEntry);
    // The holder may restrict the same port to several remote hosts, and add the one for any host.
    await mappings.add(req({ remoteHost: R2 }), A);
    await mappings.add(req(), A);
    expect(mappings.size).toBe(3);
    // Held for any host by B on another port: A cannot take it restricted to one host either.
    await mappings.add(req({ externalPort: 6000, internalClient: B.address }), B);
    expect(await faultOf(mappings.add(req({ externalPort: 6000, remoteHost: R1 }), A))).toBe(UpnpErrorCode.ConflictInMappingEntry);
    // Once every restricted mapping of A is gone, the port is free for B.
    await mappings.delete(req({ remoteHost: R1 }), A);
    await mappings.delete(req({ remoteHost: R2 }), A);
    await mappings.delete(req(), A);
    await mappings.add(req({ remoteHost: R1, internalClient: B.address }), B);
    expect(mappings.get(req({ remoteHost: R1 }))!.internalClient).toBe(B.address);
  });

  it('answers 718 for a port another client asked for earlier in the same batch, under another remote host', async () => {
    const { mappings } = makeMappings();
    const [first, second] = await Promise.allSettled([
      mappings.add(req({ remoteHost: '203.0.113.7' }), A),
      mappings.add(req({ internalClient: B.address }), B),
    ]);
    expect(first.status).toBe('fulfilled');
    expect(second.status === 'rejected' && second.reason instanceof UpnpError && second.reason.upnpCode).toBe(UpnpErrorCode.ConflictInMappingEntry);
  });

  it('answers 718 when another client holds the key, and keeps the holder', async () => {
    const { mappings } = makeMappings();
    await mappings.add(req(), A);
    expect(await faultOf(mappings.add(req({ internalClient: B.address }), B))).toBe(UpnpErrorCode.ConflictInMappingEntry);
    expect(mappings.get(req())!.internalClient).toBe(A.address);
  });

  it('answers 501 and leaves the table unchanged when the backend fails', async () => {
    const { mappings, backend } = makeMappings();
    await mappings.add(req(), A);
    backend.failNext = 1;
    expect(await faultOf(mappings.add(req({ externalPort: 5001 }), A))).toBe(UpnpErrorCode.ActionFailed);
    expect([...mappings.values()].map((m) => m.externalPort)).toEqual([5000]);
  });

  it('coalesces requests that arrive together into one backend transaction', async () => {
    const { mappings, backend } = makeMappings();
    await Promise.all(Array.from({ length: 50 }, (_, i) => mappings.add(req({ externalPort: 6000 + i }), A)));
    expect(backend.applied).toHaveLength(1);
    expect(backend.applied[0]!.add).toHaveLength(50);
  });

  it('when a coalesced transaction fails, retries each request alone so that only the bad one fails', async () => {
    const { mappings, backend } = makeMappings();
    backend.failWhen = (changes) => changes.add.some((r) => r.externalPort === 6003);
    const results = await Promise.allSettled(Array.from({ length: 6 }, (_, i) => mappings.add(req({ externalPort: 6000 + i }), A)));
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    expect(mappings.size).toBe(5);
  });

  it('expires a lease on the monotonic clock and removes its rule, notifying onExpire and onUnmapped', async () => {
    const events: string[] = [];
    const notifier: Plugin = {
      name: 'notifier',
      hooks: { onExpire: (e) => void events.push(`expire ${e.mapping.externalPort}`), onUnmapped: (e) => void events.push(`unmapped ${e.reason}`) },
    };
    const { mappings, backend, clock } = makeMappings({ plugins: [notifier] });
    await mappings.add(req({ leaseSeconds: 10 }), A);
    await mappings.add(req({ externalPort: 5001, leaseSeconds: 20 }), A);
    await clock.advance(10_000);
    await settle();
    expect([...mappings.values()].map((m) => m.externalPort)).toEqual([5001]);
    expect([...backend.installed.values()].map((r) => r.externalPort)).toEqual([5001]);
    expect(events).toEqual(['expire 5000', 'unmapped expired']);
  });

  it('cuts leases to the maximum and gives the default lease for 0 when permanent leases are not allowed', async () => {
    const { mappings, clock } = makeMappings({ lease: { defaultSeconds: 120, maxSeconds: 600, allowPermanent: false } });
    await mappings.add(req({ leaseSeconds: 100_000 }), A);
    await mappings.add(req({ externalPort: 5001, leaseSeconds: 0 }), A);
    expect(mappings.get(req())!.expiresAt).toBe(clock.now() + 600_000);
    expect(mappings.remainingSeconds(mappings.get(req({ externalPort: 5001 }))!)).toBe(120);
  });

  it('keeps a permanent lease (reported as 0 remaining) when allowed', async () => {
    const { mappings, clock } = makeMappings();
    await mappings.add(req({ leaseSeconds: 0 }), A);
    await clock.advance(10 * 24 * 3600 * 1000);
    expect(mappings.remainingSeconds(mappings.get(req())!)).toBe(0);
  });

  it('deletes, answering 714 for a mapping that does not exist', async () => {
    const { mappings, backend } = makeMappings();
    await mappings.add(req(), A);
    await mappings.delete(req(), A);
    expect(backend.installed.size).toBe(0);
    expect(await faultOf(mappings.delete(req(), A))).toBe(UpnpErrorCode.NoSuchEntryInArray);
  });

  it('keeps index order stable: a replace keeps its index, a delete shifts later entries', async () => {
    const { mappings } = makeMappings();
    for (const port of [1, 2, 3]) await mappings.add(req({ externalPort: port }), A);
    await mappings.add(req({ externalPort: 1, internalPort: 9 }), A);
    expect([0, 1, 2].map((i) => mappings.at(i)!.externalPort)).toEqual([1, 2, 3]);
    await mappings.delete(req({ externalPort: 2 }), A);
    expect([0, 1].map((i) => mappings.at(i)!.externalPort)).toEqual([1, 3]);
    expect(mappings.at(2)).toBeUndefined();
  });

  it('lets a beforeMap policy veto with its UPnP code or adjust the request', async () => {
    const policy: Plugin = {
      name: 'policy',
      hooks: {
        beforeMap: (r) => {
          if (r.externalPort < 1024) throw new UpnpError(UpnpErrorCode.NotAuthorized, 'privileged port');
          return { ...r, description: `[policy] ${r.description}` };
        },
      },
    };
    const { mappings } = makeMappings({ plugins: [policy] });
    expect(await faultOf(mappings.add(req({ externalPort: 80 }), A))).toBe(UpnpErrorCode.NotAuthorized);
    await mappings.add(req(), A);
    expect(mappings.get(req())!.description).toBe('[policy] game');
  });

  it('addAny takes the asked port when free, another free port when it is held, and the same port for the same client:port', async () => {
    const { mappings } = makeMappings();
    const options = { portRange: [1024, 65535] as const, maxAttempts: 64 };
    await mappings.add(req({ externalPort: 7000, internalClient: B.address }), B);
    const first = await mappings.addAny(req({ externalPort: 7000 }), A, options);
    expect(first.externalPort).toBe(7001);
    const again = await mappings.addAny(req({ externalPort: 7000 }), A, options);
    expect(again.externalPort).toBe(7001);
    expect(mappings.size).toBe(2);
  });

  it('addAny answers 728 when no permitted port is left', async () => {
    const denyAll: Plugin = {
      name: 'deny',
      hooks: {
        beforeMap: () => {
          throw new UpnpError(UpnpErrorCode.ConflictWithOtherMechanisms);
        },
      },
    };
    const { mappings } = makeMappings({ plugins: [denyAll] });
    expect(await faultOf(mappings.addAny(req(), A, { portRange: [1024, 65535], maxAttempts: 10 }))).toBe(UpnpErrorCode.NoPortMapsAvailable);
  });

  it('deleteMatching removes in one transaction what policies allow and skips what they refuse', async () => {
    const ownOnly: Plugin = {
      name: 'own-only',
      hooks: {
        beforeUnmap: (m, ctx) => {
          if (m.internalClient !== ctx.requester.address) throw new UpnpError(UpnpErrorCode.NotAuthorized);
        },
      },
    };
    const { mappings, backend } = makeMappings({ plugins: [ownOnly] });
    await mappings.add(req({ externalPort: 1 }), A);
    await mappings.add(req({ externalPort: 2, internalClient: B.address }), B);
    await mappings.add(req({ externalPort: 3 }), A);
    const before = backend.applied.length;
    const deleted = await mappings.deleteMatching(() => true, A);
    expect(deleted.map((m) => m.externalPort)).toEqual([1, 3]);
    expect(backend.applied.length).toBe(before + 1);
    expect([...mappings.values()].map((m) => m.externalPort)).toEqual([2]);
  });

  it('a failing notification is logged, never fatal', async () => {
    const broken: Plugin = {
      name: 'broken',
      hooks: {
        onMapped: () => {
          throw new Error('notifier down');
        },
      },
    };
    const { mappings } = makeMappings({ plugins: [broken] });
    await mappings.add(req(), A);
    await settle();
    expect(mappings.size).toBe(1);
  });

  it("repairs the firewall when its rules were flushed behind upnpd's back, then completes the change", async () => {
    const { mappings, backend } = makeMappings();
    for (const port of [1, 2]) await mappings.add(req({ externalPort: port }), A);
    backend.installed.clear(); // an admin's firewall reload flushed our rules
    await mappings.delete(req({ externalPort: 1 }), A);
    expect([...backend.installed.values()].map((r) => r.externalPort)).toEqual([2]);
    expect(mappings.size).toBe(1);
  });

  it('removeAll clears the table and the firewall in one change set', async () => {
    const { mappings, backend } = makeMappings();
    for (const port of [1, 2, 3]) await mappings.add(req({ externalPort: port }), A);
    expect(await mappings.removeAll()).toBe(3);
    expect(backend.installed.size).toBe(0);
    expect(backend.applied.at(-1)!.remove).toHaveLength(3);
  });

  it('asks beforeMap again for each request of a batch the firewall refused (so a policy must keep no count of its own)', async () => {
    const asked: number[] = [];
    const policy: Plugin = { name: 'counting', hooks: { beforeMap: (request) => void asked.push(request.externalPort) } };
    const { mappings, backend } = makeMappings({ plugins: [policy] });
    backend.failWhen = (changes) => changes.add.some((r) => r.externalPort === 6001);
    await Promise.allSettled([6000, 6001, 6002].map((externalPort) => mappings.add(req({ externalPort }), A)));
    // Once in the batch, once more alone: the documented contract of beforeMap (Hooks in core/plugins/types.ts).
    expect(asked).toEqual([6000, 6001, 6002, 6000, 6001, 6002]);
    expect(mappings.size).toBe(2);
  });

  it('a policy that counts from context.mappings holds its limit across such retries', async () => {
    const quota: Plugin = {
      name: 'quota',
      hooks: {
        beforeMap: (request, { requester, mappings }) => {
          const held = [...mappings.values()].filter((m) => m.internalClient === requester.address).length;
          if (held >= 2) throw new UpnpError(UpnpErrorCode.NoPortMapsAvailable, 'quota');
        },
      },
    };
    const { mappings, backend } = makeMappings({ plugins: [quota] });
    backend.failNext = 1;
    const results = await Promise.allSettled([7000, 7001, 7002].map((externalPort) => mappings.add(req({ externalPort }), A)));
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected']);
    expect([...backend.installed.values()].map((r) => r.externalPort)).toEqual([7000, 7001]);
  });

  it('expires from the lease queue: a renewed mapping outlives its first lease, and a failed expiry is tried again', async () => {
    const { mappings, backend, clock } = makeMappings();
    await mappings.add(req({ leaseSeconds: 10 }), A);
    await clock.advance(5_000);
    await mappings.add(req({ leaseSeconds: 10 }), A);
    await clock.advance(6_000);
    await settle();
    expect(mappings.size).toBe(1);
    backend.failNext = 1;
    await clock.advance(5_000);
    await settle();
    expect(mappings.size).toBe(1);
    await clock.advance(30_000);
    await settle();
    expect(mappings.size).toBe(0);
    expect(backend.installed.size).toBe(0);
  });

  it('settled() resolves once every change queued so far has been answered', async () => {
    const { mappings } = makeMappings();
    const answered: number[] = [];
    for (const externalPort of [1, 2, 3]) void mappings.add(req({ externalPort }), A).then(() => answered.push(externalPort));
    await mappings.settled();
    await Promise.resolve();
    expect(answered).toEqual([1, 2, 3]);
  });
});
