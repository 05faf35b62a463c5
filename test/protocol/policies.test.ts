import { describe, expect, it } from 'vitest';
import { RefusalRegistry } from '../../core/plugins/refusals.js';
import { description } from '../../plugins/description/index.js';
import { permissions } from '../../plugins/permissions/index.js';
import { quota } from '../../plugins/quota/index.js';
import { remoteHost } from '../../plugins/remote-host/index.js';
import { reservedPorts } from '../../plugins/reserved-ports/index.js';
import { FakeSockets, buildPolicy } from '../support/policies.js';
import { LOOPBACK_LAN, TEST_EXTERNAL_IP, WAN_INTERFACE, addArgs, soap, useSharedIgd, type IgdFixture } from './fixture.js';

/**
 * The shipped policies through the real SOAP layer (dry-run on loopback, secure mode on): the
 * exact UPnP fault each refusal gives, in both WANIPConnection versions, and AddAnyPortMapping
 * moving on to another port where a refusal means "this port is taken".
 */

const GATEWAY_LISTENS_ON = 8443;
/** A LAN client every port is denied to. */
const DENIED_CLIENT = '127.0.0.3';
const refusals = new RefusalRegistry();
const env = {
  lan: [LOOPBACK_LAN],
  refusals,
  sockets: new FakeSockets().listen('TCP', GATEWAY_LISTENS_ON),
  config: { wan: WAN_INTERFACE, externalIp: TEST_EXTERNAL_IP },
};
const policies = [
  buildPolicy(description(), env),
  buildPolicy(reservedPorts(), env),
  buildPolicy(remoteHost(), env),
  buildPolicy(permissions({ rules: ['deny 6000-6009 0.0.0.0/0 0-65535', `deny 0-65535 ${DENIED_CLIENT}/32 0-65535`, 'allow 0-65535 0.0.0.0/0 0-65535'] }), env),
  buildPolicy(quota({ perClient: 3, total: 100 }), env),
];

describe.each([1, 2] as const)('policies through WANIPConnection:%i', (version) => {
  let igd: IgdFixture;
  useSharedIgd((f) => (igd = f), { plugins: policies });
  const add = (args: Record<string, string | number>) => soap(igd, 'AddPortMapping', addArgs(args), { view: version, version });
  const notAuthorized = version === 1 ? 718 : 606;

  it.each([
    ['ssh (TCP 22)', { NewExternalPort: 22 }, 718],
    ['DNS (UDP 53)', { NewExternalPort: 53, NewProtocol: 'UDP' }, 718],
    ['SSDP (UDP 1900)', { NewExternalPort: 1900, NewProtocol: 'UDP' }, 718],
    ['a port the gateway listens on', { NewExternalPort: GATEWAY_LISTENS_ON }, 718],
    ['a port a deny rule covers', { NewExternalPort: 6005 }, version === 1 ? 718 : 606],
    ['a LAN remote host', { NewRemoteHost: '127.0.0.9' }, 402],
    ["the gateway's external address as remote host", { NewRemoteHost: TEST_EXTERNAL_IP }, 402],
  ] as const)('AddPortMapping of %s %j is refused with %i', async (_, args, code) => {
    expect((await add(args)).errorCode).toBe(code === 606 ? notAuthorized : code);
    expect(igd.mappings.size).toBe(0);
  });

  it('upnpd answers 728 NoPortMapsAvailable past the per-client quota, and lets the client renew', async () => {
    for (const port of [5001, 5002, 5003]) expect((await add({ NewExternalPort: port })).status).toBe(200);
    expect((await add({ NewExternalPort: 5004 })).errorCode).toBe(728);
    expect((await add({ NewExternalPort: 5002, NewLeaseDuration: 7200 })).status).toBe(200);
    expect(igd.mappings.size).toBe(3);
  });

  it('stores descriptions without control characters, cut to 256 bytes', async () => {
    expect((await add({ NewPortMappingDescription: `evil\r\n\tline${'x'.repeat(15_000)}` })).status).toBe(200);
    const entry = await soap(igd, 'GetSpecificPortMappingEntry', { NewRemoteHost: '', NewExternalPort: 5000, NewProtocol: 'TCP' }, { view: version, version });
    expect(entry.values.NewPortMappingDescription).toBe(`evilline${'x'.repeat(248)}`);
  });

  it('counts the refusals by policy and rule', () => {
    expect(refusals.snapshot()['reserved-ports']).toMatchObject({
      'below 1024': expect.any(Number) as number,
      "upnpd's SSDP port": expect.any(Number) as number,
    });
    expect(refusals.snapshot().quota).toMatchObject({ 'perClient 3': expect.any(Number) as number });
  });

  if (version === 2) {
    it.each([
      ['ssh', 22],
      ['a port the gateway listens on', GATEWAY_LISTENS_ON],
      ['a port a deny rule covers', 6000],
    ])('AddAnyPortMapping asked for %s picks another port', async (_, port) => {
      const result = await soap(igd, 'AddAnyPortMapping', addArgs({ NewExternalPort: port }), { view: 2, version: 2 });
      expect(result.status).toBe(200);
      const reserved = Number(result.values.NewReservedPort);
      expect(reserved).not.toBe(port);
      expect(reserved).toBeGreaterThanOrEqual(1024);
      expect(igd.mappings.get({ remoteHost: '', externalPort: reserved, protocol: 'TCP' })).toBeDefined();
    });

    it('AddAnyPortMapping past the quota is 728 without trying other ports', async () => {
      for (const port of [5001, 5002, 5003]) expect((await add({ NewExternalPort: port })).status).toBe(200);
      const result = await soap(igd, 'AddAnyPortMapping', addArgs({ NewExternalPort: 5004, NewInternalPort: 5004 }), { view: 2, version: 2 });
      expect(result.errorCode).toBe(728);
    });

    it('AddAnyPortMapping for a client a deny rule refuses on every port is 606, not 728', async () => {
      const args = addArgs({ NewInternalClient: DENIED_CLIENT });
      const result = await soap(igd, 'AddAnyPortMapping', args, { view: 2, version: 2, localAddress: DENIED_CLIENT });
      expect(result.errorCode).toBe(606);
      expect(igd.mappings.size).toBe(0);
    });
  }
});
