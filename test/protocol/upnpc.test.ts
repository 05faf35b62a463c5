import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { describeRequiring, missingPrograms } from '../support/requirements.js';
import { TEST_EXTERNAL_IP, type IgdFixture, useSharedIgd } from './fixture.js';

/**
 * The real miniupnpc client (`upnpc`) against the front-end on loopback, as a developer would run
 * it against a dry-run upnpd: `upnpc -u <description URL> ...`, which skips SSDP discovery.
 * The reported external address is TEST_EXTERNAL_IP (see fixture.ts for why).
 */

async function upnpc(url: string, ...args: string[]): Promise<string> {
  const result = await execa('upnpc', ['-u', url, ...args], { reject: false, timeout: 10_000 });
  return `${result.stdout}\n${result.stderr}`;
}

describeRequiring('upnpc against the IGD front-end', missingPrograms(['upnpc']), () => {
  let f: IgdFixture;
  useSharedIgd((started) => (f = started));

  describe.each([
    ['IGD:2', '/rootDesc.xml', 2],
    ['IGD:1', '/rootDesc1.xml', 1],
  ] as const)('through the %s description', (_, path, version) => {
    const url = () => `http://${f.host}${path}`;

    it('-s shows a connected gateway with its external address', async () => {
      const out = await upnpc(url(), '-s');
      expect(out).toContain(`/igd${version}/WANIPConn/control`);
      expect(out).toContain('Connection Type : IP_Routed');
      expect(out).toMatch(/Status : Connected, uptime=\d+s, LastConnectionError : ERROR_NONE/);
      expect(out).toContain(`ExternalIPAddress = ${TEST_EXTERNAL_IP}`);
      expect(out).toMatch(/Bytes:\s+Sent:\s+1234\s+Recv:\s+5/);
    });

    it('-a adds a mapping, -l lists it, -d deletes it', async () => {
      expect(await upnpc(url(), '-e', 'web & co', '-a', '127.0.0.1', '8080', '18080', 'TCP', '3600')).toContain(
        `external ${TEST_EXTERNAL_IP}:18080 TCP is redirected to internal 127.0.0.1:8080 (duration=3600)`,
      );
      // upnpc sends the & raw; it reaches the table as written.
      expect(f.mappings.get({ remoteHost: '', externalPort: 18080, protocol: 'TCP' })).toMatchObject({
        internalClient: '127.0.0.1',
        internalPort: 8080,
        description: 'web & co',
        createdBy: { address: '127.0.0.1', via: `upnp-igd:${version}` },
      });
      // We send it back escaped, as XML requires; upnpc prints element text without decoding entities.
      expect(await upnpc(url(), '-l')).toMatch(/ 0 TCP 18080->127\.0\.0\.1:8080\s+'web &amp; co' '' 3600/);
      expect(await upnpc(url(), '-d', '18080', 'TCP')).toContain('UPNP_DeletePortMapping() returned : 0');
      expect(f.mappings.size).toBe(0);
      expect(f.backend.installed.size).toBe(0);
    });

    it('-r maps ports to the local address upnpc finds (127.0.0.1)', async () => {
      const out = await upnpc(url(), '-r', '9000', 'UDP');
      expect(out).toContain('is redirected to internal 127.0.0.1:9000');
      expect(f.mappings.get({ remoteHost: '', externalPort: 9000, protocol: 'UDP' })?.internalClient).toBe('127.0.0.1');
    });

    it('-a for another host is refused by secure mode', async () => {
      const out = await upnpc(url(), '-a', '127.0.0.9', '8080', '18080', 'TCP');
      expect(out).toContain(version === 2 ? 'failed with code 606' : 'failed with code 718');
      expect(f.mappings.size).toBe(0);
    });
  });

  it('-L lists through GetListOfPortMappings (IGD:2)', async () => {
    await upnpc(`http://${f.host}/rootDesc.xml`, '-e', 'listed', '-a', '127.0.0.1', '7000', '17000', 'TCP', '600');
    expect(await upnpc(`http://${f.host}/rootDesc.xml`, '-L')).toMatch(/ 0 TCP 17000->127\.0\.0\.1:7000\s+'listed' '' 600/);
  });
});
