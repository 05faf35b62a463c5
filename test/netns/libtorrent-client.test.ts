import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { expect, it } from 'vitest';
import { expectMappingsGone, expectTrafficBlocked, expectTrafficPasses, tableRowsFor, upnpdGatewaySuite } from './clients/gateway.js';
import { LineClient } from './clients/line-client.js';
import { describeRequiring, missingPrograms } from '../support/requirements.js';
import { namespaceSupport } from './netns.js';

// libtorrent 2.0 (Debian's python3-libtorrent) as a BitTorrent client in the LAN client's
// namespace, UPnP off and NAT-PMP on: it maps its listen port for TCP and UDP (uTP) through its
// NAT-PMP/PCP client, which speaks PCP first. Its port-mapping alerts say what it did.

type ClientEvent =
  | { readonly event: 'started'; readonly version: string }
  | { readonly event: 'mapped'; readonly protocol: 'TCP' | 'UDP'; readonly externalPort: number; readonly message: string }
  | { readonly event: 'mapping-error'; readonly message: string }
  | { readonly event: 'log'; readonly message: string }
  | { readonly event: 'alert'; readonly type: string; readonly message: string }
  | { readonly event: 'stopped' }
  | { readonly event: 'error'; readonly message: string };

/** Debian's interpreter, where python3-libtorrent is installed (not a pyenv or venv python first on PATH). */
const PYTHON = '/usr/bin/python3';
const CLIENT_SCRIPT = fileURLToPath(new URL('./clients/libtorrent-client.py', import.meta.url));
const CLIENT_LIFETIME_SECONDS = 50;
const STEP_MS = 20_000;
const LISTEN_PORT = 42000;

/** Why libtorrent cannot run here: no root/namespaces, a missing program, or no python3-libtorrent. */
async function whyNot(): Promise<string | undefined> {
  const missing = (await missingPrograms(['ip', 'iptables', 'nft', 'upnpc', PYTHON])) ?? (await namespaceSupport());
  if (missing) return missing;
  const probe = await execa(PYTHON, ['-c', 'import libtorrent'], { reject: false });
  return probe.exitCode === 0 ? undefined : `${PYTHON} cannot import libtorrent (Debian package python3-libtorrent): ${String(probe.stderr).trim()}`;
}

describeRequiring('libtorrent (PCP, then NAT-PMP) against upnpd in the testbed', whyNot(), () => {
  let client: LineClient<ClientEvent> | undefined;
  const gateway = upnpdGatewaySuite(() => (client ? [{ name: 'libtorrent client', output: () => client!.output(), stop: () => client!.stop('SIGKILL') }] : []));

  it('maps its listen port for TCP and UDP over PCP, WAN traffic reaches it, and the mappings go when it stops', async () => {
    const { testbed } = gateway();
    const a = testbed.addresses;
    client = LineClient.start<ClientEvent>(testbed.lan, [PYTHON, CLIENT_SCRIPT, a.lanClient, String(LISTEN_PORT), String(CLIENT_LIFETIME_SECONDS)]);

    const mapped = (await client.waitFor((e) => e.event === 'mapped', STEP_MS, 2)).filter((e) => e.event === 'mapped');
    expect(mapped.map((m) => m.protocol).sort()).toEqual(['TCP', 'UDP']);
    // libtorrent's log says which protocol answered: PCP (a NAT-PMP-only gateway would show NAT-PMP).
    const logged = client.seen().flatMap((e) => (e.event === 'log' ? [e.message] : []));
    expect(
      logged.some((line) => /<== port map \[ transport: PCP protocol: tcp local: 42000/.test(line)),
      logged.join('\n'),
    ).toBe(true);
    expect(client.seen().filter((e) => e.event === 'mapping-error')).toEqual([]);

    const ports = mapped.map((m) => ({ protocol: m.protocol, externalPort: m.externalPort, internalPort: LISTEN_PORT }));
    await expectTrafficPasses(testbed, ports);
    const listed = await tableRowsFor(gateway(), LISTEN_PORT);
    expect(listed.map((row) => [row.protocol, row.internalClient, row.description]).sort()).toEqual([
      ['TCP', a.lanClient, `PCP ${a.lanClient}:${LISTEN_PORT}`],
      ['UDP', a.lanClient, `PCP ${a.lanClient}:${LISTEN_PORT}`],
    ]);

    // Destroying the session deletes what it mapped (lifetime 0 for each mapping).
    client.send('stop');
    await client.waitFor((e) => e.event === 'stopped', STEP_MS);
    await expectMappingsGone(gateway(), LISTEN_PORT, STEP_MS);
    await expectTrafficBlocked(testbed, ports);
  }, 120_000);
});
