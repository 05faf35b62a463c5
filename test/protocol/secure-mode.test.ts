import 'reflect-metadata';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toUpnpFault } from '../../core/errors.js';
import type { MappingRequest, PortMapping, Requester } from '../../core/mapping/types.js';
import { RefusalRegistry } from '../../core/plugins/refusals.js';
import { RecordingLogger } from '../support/fakes.js';
import { buildPolicy } from '../support/policies.js';
import type { PolicyContext } from '../../core/plugins/types.js';
import { secureMode } from '../../plugins/secure-mode/index.js';
import { lanTarget } from '../../plugins/lan-target/index.js';
import { addArgs, lanTargetFor, secureModePolicy, soap, startIgd, type IgdFixture, useSharedIgd } from './fixture.js';

/**
 * Secure mode (a client maps only to itself) and lan-target (a mapping leads only to a LAN host,
 * with secure mode off too), as policies on a real LAN and through SOAP on loopback (dry-run).
 */

const LAN = [{ interface: 'br-lan', address: '192.168.1.1', prefixLength: 24 }];

function request(internalClient: string): MappingRequest {
  return { remoteHost: '', externalPort: 5000, protocol: 'TCP', internalClient, internalPort: 5000, enabled: true, description: '', leaseSeconds: 3600 };
}

function context(requester: Requester): PolicyContext {
  return { requester, existing: undefined, mappings: { get: () => undefined, size: 0, values: () => [], heldBy: () => 0, ofClient: () => [] } };
}

/** The UPnP code a hook refuses with, or 0 when it allows. */
async function verdict(run: () => unknown): Promise<number> {
  try {
    await run();
    return 0;
  } catch (err) {
    return toUpnpFault(err).upnpCode;
  }
}

describe('secure mode policy', () => {
  const policy = secureModePolicy();

  it('runs before other policies', () => {
    expect({ name: policy.name, order: policy.order }).toEqual({ name: 'secure-mode', order: 'pre' });
  });

  it.each([
    ['a client mapping to itself', '192.168.1.50', '192.168.1.50', { v1: 0, v2: 0 }],
    ['a client mapping to another host', '192.168.1.50', '192.168.1.51', { v1: 718, v2: 606 }],
    ['a client mapping to the gateway', '192.168.1.50', '192.168.1.1', { v1: 718, v2: 606 }],
  ] as const)('%s: v1 %j', async (_, requesterAddress, internalClient, expected) => {
    const run = (via: string) => verdict(() => policy.hooks!.beforeMap!(request(internalClient), context({ address: requesterAddress, via })));
    expect({ v1: await run('upnp-igd:1'), v2: await run('upnp-igd:2') }).toEqual(expected);
  });

  it('lets a client delete only mappings to itself (606 otherwise)', async () => {
    const mapping: PortMapping = { ...request('192.168.1.50'), expiresAt: null, createdBy: { address: '192.168.1.50', via: 'upnp-igd:2' } };
    const unmap = (address: string) => verdict(() => policy.hooks!.beforeUnmap!(mapping, context({ address, via: 'upnp-igd:2' })));
    expect(await unmap('192.168.1.50')).toBe(0);
    expect(await unmap('192.168.1.51')).toBe(606);
  });

  it('is built by its factory', () => {
    const spec = secureMode();
    expect(spec.optionsSchema!.safeParse({ unknown: 1 }).success).toBe(false);
    const plugin = buildPolicy(spec, { lan: LAN });
    expect(plugin.name).toBe('secure-mode');
    expect(Object.keys(plugin.hooks ?? {}).sort()).toEqual(['beforeMap', 'beforeUnmap']);
  });

  it('counts its refusals by rule and logs them with the client', async () => {
    const refusals = new RefusalRegistry();
    const logger = new RecordingLogger();
    const plugin = buildPolicy(secureMode(), { lan: LAN, refusals, logger });
    await verdict(() => plugin.hooks!.beforeMap!(request('192.168.1.51'), context({ address: '192.168.1.50', via: 'upnp-igd:2' })));
    expect(refusals.snapshot()).toEqual({ 'secure-mode': { 'another host': 1 } });
    expect(logger.messages()).toEqual([expect.stringMatching(/^secure-mode: refused 192\.168\.1\.50 \(another host\)/)]);
  });
});

describe('lan-target policy on a LAN: a mapping leads only to a LAN host, whoever asks', () => {
  const policy = lanTargetFor(LAN);

  it('runs before other policies', () => {
    expect({ name: policy.name, order: policy.order }).toEqual({ name: 'lan-target', order: 'pre' });
  });

  it.each([
    ['a client mapping to itself', '192.168.1.50', '192.168.1.50', { v1: 0, v2: 0 }],
    ["a client mapping to another LAN host (allowed here: that is secure mode's to refuse)", '192.168.1.50', '192.168.1.51', { v1: 0, v2: 0 }],
    ['a client mapping to the gateway', '192.168.1.50', '192.168.1.1', { v1: 718, v2: 606 }],
    ['the gateway mapping to itself over its LAN address', '192.168.1.1', '192.168.1.1', { v1: 718, v2: 606 }],
    ['a mapping to the broadcast address', '192.168.1.50', '192.168.1.255', { v1: 718, v2: 606 }],
    ['a mapping to the network address', '192.168.1.50', '192.168.1.0', { v1: 718, v2: 606 }],
    ['a mapping to an internet host (UPnProxy)', '192.168.1.50', '8.8.8.8', { v1: 718, v2: 606 }],
    ['a mapping to a multicast address', '192.168.1.50', '224.0.0.1', { v1: 718, v2: 606 }],
    ['a mapping to 0.0.0.0', '192.168.1.50', '0.0.0.0', { v1: 718, v2: 606 }],
    ['a mapping to a host outside the LAN, asked by that host', '10.0.0.5', '10.0.0.5', { v1: 718, v2: 606 }],
  ] as const)('%s: v1 %j', async (_, requesterAddress, internalClient, expected) => {
    const run = (via: string) => verdict(() => policy.hooks!.beforeMap!(request(internalClient), context({ address: requesterAddress, via })));
    expect({ v1: await run('upnp-igd:1'), v2: await run('upnp-igd:2') }).toEqual(expected);
  });

  it('follows a LAN address change: the new subnet is the LAN, the old one no longer is, the new gateway address is refused', async () => {
    const renumbered = lanTargetFor(LAN);
    const map = (client: string) => verdict(() => renumbered.hooks!.beforeMap!(request(client), context({ address: client, via: 'upnp-igd:2' })));
    expect([await map('192.168.1.50'), await map('10.7.0.50')]).toEqual([0, 606]);
    await renumbered.hooks!.onLanAddressChange!({ previous: LAN, current: [{ interface: 'br-lan', address: '10.7.0.1', prefixLength: 16 }] });
    expect([await map('192.168.1.50'), await map('10.7.0.50'), await map('10.7.0.1'), await map('10.7.255.255')]).toEqual([606, 0, 606, 606]);
  });

  it('is built by its factory from the LAN addresses in the container, and counts its refusals by rule', async () => {
    const spec = lanTarget();
    expect(spec.optionsSchema!.safeParse({ unknown: 1 }).success).toBe(false);
    const refusals = new RefusalRegistry();
    const plugin = buildPolicy(spec, { lan: LAN, refusals });
    expect(plugin.name).toBe('lan-target');
    expect(Object.keys(plugin.hooks ?? {}).sort()).toEqual(['beforeMap', 'onLanAddressChange']);
    await verdict(() => plugin.hooks!.beforeMap!(request('8.8.8.8'), context({ address: '192.168.1.50', via: 'upnp-igd:2' })));
    expect(refusals.snapshot()).toEqual({ 'lan-target': { 'not in a LAN subnet': 1 } });
  });
});

describe('secure mode through SOAP on loopback (dry-run)', () => {
  let f: IgdFixture;
  useSharedIgd((started) => (f = started));

  it('lets 127.0.0.1 map to itself: loopback is the gateway, but also the client', async () => {
    expect((await soap(f, 'AddPortMapping', addArgs())).status).toBe(200);
  });

  it('lets each loopback client map to itself, and refuses deleting the other’s mapping', async () => {
    const other = { localAddress: '127.0.0.2' };
    expect((await soap(f, 'AddPortMapping', addArgs({ NewInternalClient: '127.0.0.2' }), other)).status).toBe(200);
    expect((await soap(f, 'DeletePortMapping', { NewRemoteHost: '', NewExternalPort: 5000, NewProtocol: 'TCP' })).errorCode).toBe(606);
    expect((await soap(f, 'DeletePortMapping', { NewRemoteHost: '', NewExternalPort: 5000, NewProtocol: 'TCP' }, other)).status).toBe(200);
  });

  it('answers AddAnyPortMapping to another host with 606, not 728: no other port would do', async () => {
    const result = await soap(f, 'AddAnyPortMapping', addArgs({ NewInternalClient: '127.0.0.2' }), { view: 2, version: 2 });
    expect(result.errorCode).toBe(606);
    expect(f.mappings.size).toBe(0);
  });
});

describe('without secure mode', () => {
  let f: IgdFixture;
  beforeAll(async () => {
    f = await startIgd({ secureMode: false });
  });
  afterAll(async () => {
    await f.close();
  });

  it('lets a client map to another host and delete its mapping', async () => {
    expect((await soap(f, 'AddPortMapping', addArgs({ NewInternalClient: '127.0.0.2' }))).status).toBe(200);
    expect((await soap(f, 'DeletePortMapping', { NewRemoteHost: '', NewExternalPort: 5000, NewProtocol: 'TCP' })).status).toBe(200);
  });

  it('still refuses a mapping to a host outside the LAN (an internet host: UPnProxy) or to a broadcast address: 606, 718 through IGD:1', async () => {
    expect((await soap(f, 'AddPortMapping', addArgs({ NewInternalClient: '8.8.8.8' }))).errorCode).toBe(606);
    expect((await soap(f, 'AddPortMapping', addArgs({ NewInternalClient: '127.255.255.255' }))).errorCode).toBe(606);
    expect((await soap(f, 'AddPortMapping', addArgs({ NewInternalClient: '8.8.8.8' }), { view: 1, version: 1 })).errorCode).toBe(718);
    expect(f.mappings.size).toBe(0);
  });
});
