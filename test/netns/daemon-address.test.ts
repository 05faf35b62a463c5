import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import { describeNetns } from './netns.js';
import { TESTBED_ADDRESSES, createTestbed, startDaemonInGateway, tcpReachable, upnpc, type RunningDaemon, type Testbed } from './topology.js';

// A DHCP renewal or PPPoE reconnect gives the gateway's WAN interface a new address. upnpd must
// notice within 2 s (from the kernel's event, not a poll), report it (GetExternalIPAddress, the
// log, GENA and onExternalAddressChange hang off the same change), and the mappings must keep
// forwarding on the new address.

const NOTICED_WITHIN_MS = 2_000;
const PASSES_MS = 5_000;
const POLL_MS = 50;
/** New WAN addresses in the WAN host's subnet, taken one after another (three changes: a 10 s poll cannot catch all three in time by luck). */
const NEW_ADDRESSES = ['203.0.113.9', '203.0.113.10', '203.0.113.11'];

describeNetns('upnpd when the WAN address changes', ['ip', 'upnpc', 'iptables', 'iptables-save', 'iptables-restore'], () => {
  const a = TESTBED_ADDRESSES;
  let testbed: Testbed;
  let daemon: RunningDaemon | undefined;

  beforeAll(async () => {
    testbed = await createTestbed();
    daemon = await startDaemonInGateway(testbed, ['--lan', testbed.lanInterface, '--wan', testbed.wanInterface, '--backend', 'iptables']);
  });
  afterAll(async () => {
    try {
      await daemon?.stop();
    } finally {
      await testbed?.destroy();
    }
  });
  beforeEach(({ onTestFailed }) => {
    onTestFailed(() => console.error(`upnpd output, last part:\n${daemon?.output().slice(-6000)}`));
  });

  it('notices each new address within 2 s, reports it, and the mappings forward on it', async () => {
    const add = await upnpc(testbed.lan, ['-u', daemon!.url, '-a', a.lanClient, '7700', '7700', 'TCP', '3600']);
    expect(add.exitCode, add.output).toBe(0);
    // As systemd's default sysctl does: deleting the old (primary) address keeps the new one.
    await testbed.gateway.exec('sysctl', ['-q', '-w', `net.ipv4.conf.${testbed.wanInterface}.promote_secondaries=1`]);
    let current: string = a.gatewayWan;
    for (const next of NEW_ADDRESSES) {
      await testbed.gateway.exec('ip', ['addr', 'add', `${next}/${a.prefixLength}`, 'dev', testbed.wanInterface]);
      await testbed.gateway.exec('ip', ['addr', 'del', `${current}/${a.prefixLength}`, 'dev', testbed.wanInterface]);
      const changed = Date.now();
      const noticed = new RegExp(`external address is ${next.replaceAll('.', '\\.')}\\b`);
      while (!noticed.test(daemon!.output()) && Date.now() - changed < NOTICED_WITHIN_MS + 1_000) await new Promise((r) => setTimeout(r, POLL_MS));
      expect(noticed.test(daemon!.output()), `${next} noticed`).toBe(true);
      expect(Date.now() - changed).toBeLessThanOrEqual(NOTICED_WITHIN_MS);
      current = next;
    }

    const status = await upnpc(testbed.lan, ['-u', daemon!.url, '-s']);
    expect(status.output).toContain(`ExternalIPAddress = ${current}`);
    expect(await tcpReachable(testbed.wan, current, 7700, testbed.lan, PASSES_MS)).toBe(true);
  });
});
