import { describe, expect, it } from 'vitest';
import { statusPage } from '../../app/admin/page.js';
import { listingLines } from '../../app/control/client.js';
import type { Listing } from '../../app/control/protocol.js';
import { answer, listing, parseRequest, type ControlledDaemon } from '../../app/control/server.js';
import type { DaemonStatus } from '../../core/daemon.js';
import type { PinholeRequest } from '../../core/mapping/pinhole.js';
import { makeMappings } from '../support/fakes.js';

// IPv6 pinholes in the operations tools: `upnpd list`, `upnpd delete pinhole ID`, `upnpd purge`
// and the status page, over the real MappingService (RecordingBackend with pinholes).

const HOST_A = { address: '2001:db8:77::10', via: 'upnp-igd:2' };
const HOST_B = { address: '2001:db8:77::11', via: 'upnp-igd:2' };

function pinhole(internalClient: string, internalPort: number, overrides: Partial<PinholeRequest> = {}): PinholeRequest {
  return { remoteHost: '', remotePort: 0, internalClient, internalPort, protocol: 'UDP', leaseSeconds: 600, ...overrides };
}

async function gateway() {
  const made = makeMappings();
  made.mappings.checkPinholeTargets((client, requester) => Promise.resolve(client === requester ? undefined : 'not yours'));
  const daemon: ControlledDaemon = { mappings: made.mappings, status: () => ({}) as DaemonStatus };
  await made.mappings.openPinhole(pinhole(HOST_A.address, 3333, { remoteHost: '2001:db8:ff::2', remotePort: 4000 }), HOST_A);
  await made.mappings.openPinhole(pinhole(HOST_A.address, 3334, { protocol: 'TCP' }), HOST_A);
  await made.mappings.openPinhole(pinhole(HOST_B.address, 5555), HOST_B);
  await made.mappings.add(
    {
      remoteHost: '',
      externalPort: 7000,
      protocol: 'TCP',
      internalClient: '192.168.77.10',
      internalPort: 7000,
      enabled: true,
      description: 'v4',
      leaseSeconds: 600,
    },
    { address: '192.168.77.10', via: 'upnp-igd:2' },
  );
  return { ...made, daemon };
}

describe('pinholes in the control socket', () => {
  it('list shows each pinhole with its UniqueID, remote side, internal side, protocol, lease left and creator, next to the mappings', async () => {
    const { daemon, clock } = await gateway();
    await clock.advance(100_000);
    const listed = (await answer(daemon, parseRequest('{"command":"list"}'))) as Listing;
    expect(listed.mappings.map((m) => m.externalPort)).toEqual([7000]);
    expect(listed.pinholes).toEqual([
      {
        uniqueId: 1,
        remoteHost: '2001:db8:ff::2',
        remotePort: 4000,
        internalClient: HOST_A.address,
        internalPort: 3333,
        protocol: 'UDP',
        leaseSecondsLeft: 500,
        source: 'upnp-igd:2',
        createdBy: HOST_A.address,
      },
      expect.objectContaining({ uniqueId: 2, remoteHost: '', remotePort: 0, protocol: 'TCP', internalPort: 3334 }),
      expect.objectContaining({ uniqueId: 3, internalClient: HOST_B.address, createdBy: HOST_B.address }),
    ]);
    const lines = listingLines(listed, '');
    expect(lines).toHaveLength(4);
    expect(lines[1]).toMatch(/^pinhole {5}1 UDP -> \[2001:db8:77::10\]:3333 from 2001:db8:ff::2 port 4000 +500s +upnp-igd:2 +2001:db8:77::10$/);
    expect(lines[2]).toContain('from *  ');
  });

  it('delete pinhole closes that UniqueID in the backend (the admin owns none and may close any); an unknown one is an error', async () => {
    const { daemon, mappings, backend } = await gateway();
    const removed = (await answer(daemon, parseRequest('{"command":"delete-pinhole","uniqueId":3}'))) as Listing;
    expect(removed).toEqual({ mappings: [], pinholes: [expect.objectContaining({ uniqueId: 3, internalClient: HOST_B.address })] });
    expect([...mappings.pinholes.values()].map((p) => p.id)).toEqual([1, 2]);
    expect([...backend.installedPinholes.keys()].some((k) => k.includes(HOST_B.address))).toBe(false);
    await expect(answer(daemon, parseRequest('{"command":"delete-pinhole","uniqueId":3}'))).rejects.toThrow('no pinhole 3');
  });

  it('purge --client with an IPv4-mapped address (::ffff:a.b.c.d, either spelling) removes that IPv4 client\u2019s mappings', async () => {
    for (const spelling of ['::ffff:192.168.77.10', '::FFFF:c0a8:4d0a']) {
      const { daemon } = await gateway();
      const purged = (await answer(daemon, parseRequest(JSON.stringify({ command: 'purge', client: spelling })))) as Listing;
      expect(
        purged.mappings.map((m) => m.externalPort),
        spelling,
      ).toEqual([7000]);
      expect(purged.pinholes).toEqual([]);
    }
  });

  it('purge --client closes that IPv6 client’s pinholes (written any way), purge alone closes every mapping and pinhole', async () => {
    const { daemon, mappings, backend } = await gateway();
    const one = (await answer(daemon, parseRequest('{"command":"purge","client":"2001:DB8:77:0::10"}'))) as Listing;
    expect(one.mappings).toEqual([]);
    expect(one.pinholes.map((p) => p.uniqueId)).toEqual([1, 2]);
    expect([...mappings.pinholes.values()].map((p) => p.id)).toEqual([3]);
    const all = (await answer(daemon, parseRequest('{"command":"purge"}'))) as Listing;
    expect(all.mappings.map((m) => m.externalPort)).toEqual([7000]);
    expect(all.pinholes.map((p) => p.uniqueId)).toEqual([3]);
    expect(listing(daemon)).toEqual({ mappings: [], pinholes: [] });
    expect(backend.installedPinholes.size).toBe(0);
  });

  it('refuses a malformed UniqueID or client with a clear error', () => {
    for (const id of [0, 65536, 1.5, '"1"', null])
      expect(() => parseRequest(`{"command":"delete-pinhole","uniqueId":${String(id)}}`)).toThrow('delete pinhole needs a UniqueID (1-65535)');
    expect(() => parseRequest('{"command":"purge","client":"fe80::1%eth0 x"}')).toThrow('--client must be an IPv4 or IPv6 address');
  });
});

describe('pinholes on the status page', () => {
  it('lists each pinhole, escaped, with a delete button that posts its UniqueID and the token', async () => {
    const { daemon } = await gateway();
    const status = { version: '0', backend: 'dry-run', dryRun: true, uptimeSeconds: 1, frontEnds: {} } as unknown as DaemonStatus;
    const html = statusPage(status, listing(daemon), 'tok"en');
    expect(html).toContain('<h2>IPv6 pinholes (3)</h2>');
    expect(html).toContain('<td>1</td><td>UDP</td><td>2001:db8:77::10</td><td>3333</td><td>2001:db8:ff::2</td><td>4000</td>');
    expect(html).toContain('<input type="hidden" name="uniqueId" value="3"><button type="submit" aria-label="delete pinhole 3">');
    expect(html).toContain('value="tok&quot;en"');
    expect(statusPage(status, { mappings: [], pinholes: [] }, 't')).toContain('No pinholes.');
  });
});
