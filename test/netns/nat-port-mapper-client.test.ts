import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { expectMappingsGone, expectTrafficBlocked, expectTrafficPasses, tableRowsFor, upnpdGatewaySuite } from './clients/gateway.js';
import { PacketCounter } from './clients/arrivals.js';
import { LineClient } from './clients/line-client.js';
import { tsEntryCommand } from './namespace-process.js';
import { describeNetns } from './netns.js';
import type { Testbed } from './topology.js';

// libp2p's @achingbrain/nat-port-mapper (4.0.5, the newest release) in the LAN client's namespace,
// through its NAT-PMP client (`pmpNat`), against upnpd in the gateway. No release has a PCP client:
// its PCP code lives on an unreleased branch, so only the NAT-PMP path can be tested.

type ClientEvent =
  | { readonly event: 'external'; readonly address: string }
  | { readonly event: 'mapped'; readonly protocol: 'TCP' | 'UDP'; readonly externalHost: string; readonly externalPort: number; readonly internalPort: number }
  | { readonly event: 'unmapped'; readonly protocol: 'TCP' | 'UDP' }
  | { readonly event: 'stopped' }
  | { readonly event: 'error'; readonly message: string };

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLIENT_ENTRY = new URL('./clients/nat-port-mapper-client.ts', import.meta.url);
const CLIENT_LIFETIME_MS = 50_000;
const STEP_MS = 15_000;
/** How long the test watches for the library's runaway deletes, and how many it may see in that time (the limit's burst is 64). */
const RUNAWAY_WINDOW_MS = 3_000;
const RUNAWAY_BOUND = 300;
/** RFC 6887 §15's ceiling, upnpd's default for NAT-PMP and PCP lifetimes. */
const MAX_LIFETIME_SECONDS = 86_400;

describeNetns('libp2p nat-port-mapper (NAT-PMP) against upnpd in the testbed', ['ip', 'iptables', 'nft', 'upnpc'], () => {
  const clients: LineClient<ClientEvent>[] = [];
  const gateway = upnpdGatewaySuite(() =>
    clients.map((client) => ({ name: 'nat-port-mapper client', output: () => client.output(), stop: () => client.stop('SIGKILL') })),
  );

  const startClient = (testbed: Testbed, port: number) => {
    const client = LineClient.start<ClientEvent>(
      testbed.lan,
      tsEntryCommand(CLIENT_ENTRY, [testbed.addresses.gatewayLan, testbed.addresses.lanClient, String(port), String(CLIENT_LIFETIME_MS)]),
      { cwd: REPO_ROOT },
    );
    clients.push(client);
    return client;
  };

  it('learns the external address, maps TCP and UDP that WAN traffic then reaches, unmaps both, and its runaway deletes are cut off', async () => {
    const { testbed } = gateway();
    const port = 41000;
    const a = testbed.addresses;
    const client = startClient(testbed, port);

    const [external] = await client.waitFor((e) => e.event === 'external', STEP_MS);
    expect(external).toEqual({ event: 'external', address: a.gatewayWan });
    const mapped = (await client.waitFor((e) => e.event === 'mapped', STEP_MS, 2)).filter((e) => e.event === 'mapped');
    expect(mapped.map((m) => [m.protocol, m.externalHost, m.internalPort]).sort()).toEqual([
      ['TCP', a.gatewayWan, port],
      ['UDP', a.gatewayWan, port],
    ]);
    const ports = mapped.map((m) => ({ protocol: m.protocol, externalPort: m.externalPort, internalPort: port }));
    await expectTrafficPasses(testbed, ports);

    // One table: UPnP lists what NAT-PMP made, with where it came from. The library asks for a
    // lifetime of 3,600,000 s (its ttl is in ms, sent as seconds); upnpd grants at most 24 h.
    const listed = await tableRowsFor(gateway(), port);
    expect(listed.map((row) => [row.protocol, row.internalClient, row.description]).sort()).toEqual([
      ['TCP', a.lanClient, `NAT-PMP ${a.lanClient}:${port}`],
      ['UDP', a.lanClient, `NAT-PMP ${a.lanClient}:${port}`],
    ]);
    for (const row of listed) expect(row.leaseSeconds).toBeLessThanOrEqual(MAX_LIFETIME_SECONDS);
    for (const row of listed) expect(row.leaseSeconds).toBeGreaterThan(MAX_LIFETIME_SECONDS - 120);

    // After unmap() the library re-arms its refresh timer with ttl - 60 s, negative for a lifetime
    // of 0: it sends lifetime-0 requests back to back for as long as it runs (about 1,000 a second
    // against miniupnpd 2.3.1, which answers each). upnpd's per-client limit on state changes
    // refuses them after its burst, the refusal ends the loop, and the daemon keeps serving.
    const requests = await PacketCounter.install(testbed.gateway, ['ip', 'saddr', a.lanClient, 'udp', 'dport', '5351']);
    client.send('unmap');
    await client.waitFor((e) => e.event === 'unmapped', STEP_MS, 2);
    const afterUnmap = await requests.read();
    await new Promise((resolve) => setTimeout(resolve, RUNAWAY_WINDOW_MS));
    expect((await requests.read()) - afterUnmap).toBeLessThan(RUNAWAY_BOUND);
    await expectMappingsGone(gateway(), port, STEP_MS);
    await expectTrafficBlocked(testbed, ports);
  }, 120_000);
});
