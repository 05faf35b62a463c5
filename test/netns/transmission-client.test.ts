import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { expectMappingsGone, expectTrafficBlocked, expectTrafficPasses, tableRowsFor, upnpdGatewaySuite } from './clients/gateway.js';
import { TransmissionDaemon } from './clients/transmission.js';
import { describeNetns } from './netns.js';

// Transmission 3.00 (Debian's transmission-daemon) in the LAN client's namespace with port
// forwarding on. It tries UPnP (miniupnpc) and NAT-PMP (libnatpmp) side by side. miniupnpc refuses
// an IGD whose external address is reserved, and the testbed's is TEST-NET-3 (203.0.113.1), so the
// UPnP side gives up ("UPNP_GetValidIGD failed") and NAT-PMP is what forwards the port. Before
// upnpd served NAT-PMP, Transmission ended with no forwarding at all behind it.
//
// Transmission maps its peer port for TCP only through NAT-PMP (its UDP, for uTP and DHT, goes
// unmapped there): that is what it asks for, so TCP is what this test can prove.

const PEER_PORT = 51413;
/** Transmission pulses its port forwarding every few seconds and waits for libnatpmp's answer. */
const FORWARDED_MS = 40_000;
/** libnatpmp lets 8 s pass after a command before the next: an unmap asked for sooner is never sent. */
const NATPMP_COMMAND_WAIT_MS = 8_000;
const STEP_MS = 20_000;

describeNetns(
  'Transmission (UPnP refused, NAT-PMP) against upnpd in the testbed',
  ['ip', 'iptables', 'nft', 'upnpc', 'transmission-daemon', 'transmission-remote'],
  () => {
    let transmission: TransmissionDaemon | undefined;
    let configDir: string | undefined;
    const gateway = upnpdGatewaySuite(() =>
      transmission ? [{ name: 'transmission-daemon', output: () => transmission!.log(), stop: () => transmission!.stop() }] : [],
    );
    afterAll(async () => {
      if (configDir) await rm(configDir, { recursive: true, force: true });
    });

    it('falls back to NAT-PMP, logs the port forwarded, WAN TCP reaches it, and the mapping goes when forwarding is switched off', async () => {
      const { testbed } = gateway();
      const a = testbed.addresses;
      const tcp = { protocol: 'TCP', externalPort: PEER_PORT, internalPort: PEER_PORT } as const;
      await expectTrafficBlocked(testbed, [tcp]);

      configDir = await mkdtemp(join(tmpdir(), 'upnpd-transmission-'));
      transmission = TransmissionDaemon.start(testbed.lan, configDir, PEER_PORT);
      await transmission.logLine(/Port Forwarding \(UPnP\) UPNP_GetValidIGD failed/, FORWARDED_MS);
      await transmission.logLine(new RegExp(`Port Forwarding \\(NAT-PMP\\) Found public address "${a.gatewayWan.replaceAll('.', '\\.')}"`), FORWARDED_MS);
      await transmission.logLine(new RegExp(`Port Forwarding \\(NAT-PMP\\) Port ${PEER_PORT} forwarded successfully`), FORWARDED_MS);
      const forwardedAt = Date.now();

      await expectTrafficPasses(testbed, [tcp]);
      const listed = await tableRowsFor(gateway(), PEER_PORT);
      expect(listed.map((row) => [row.protocol, row.externalPort, row.internalClient, row.description])).toEqual([
        ['TCP', PEER_PORT, a.lanClient, `NAT-PMP ${a.lanClient}:${PEER_PORT}`],
      ]);

      await new Promise((resolve) => setTimeout(resolve, Math.max(0, forwardedAt + NATPMP_COMMAND_WAIT_MS + 1_000 - Date.now())));
      expect(await transmission.disablePortForwarding()).toMatch(/success/);
      await expectMappingsGone(gateway(), PEER_PORT, STEP_MS);
      await expectTrafficBlocked(testbed, [tcp]);
    }, 120_000);
  },
);
