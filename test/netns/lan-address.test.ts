import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeNetns } from './netns.js';
import { NamespaceProcess } from './namespace-process.js';
import { createTestbed, startDaemonInGateway, upnpc, type RunningDaemon, type Testbed } from './topology.js';

// The gateway's LAN address changes while upnpd runs (DHCP on the bridge, an admin's `ip addr`):
// upnpd starts its UPnP front-end again on the new address: byebye, then alive with the new
// LOCATION and a higher BOOTID (the old address is gone, so nothing can leave from it), and the
// clients that listen to SSDP find it at its new address.

const NEW_GATEWAY_LAN = '192.168.77.254';
const NOTICE_MS = 10_000;

/** Prints every NOTIFY for upnp:rootdevice that reaches the LAN client: NTS, LOCATION, BOOTID. */
const LISTENER = `
const s = require('dgram').createSocket({ type: 'udp4', reuseAddr: true });
s.on('message', (m) => {
  const text = m.toString();
  const h = (n) => ((new RegExp('^' + n + ': *(.*)$', 'im').exec(text) || [])[1] || '').trim();
  if (text.startsWith('HTTP/1.1 200')) return console.log('RESPONSE ' + h('LOCATION') + ' ' + h('BOOTID.UPNP.ORG'));
  if (!/^NOTIFY/.test(text) || !/^NT: *upnp:rootdevice/im.test(text)) return;
  console.log('NOTIFY ' + h('NTS') + ' ' + (h('LOCATION') || '-') + ' ' + h('BOOTID.UPNP.ORG'));
});
s.bind(1900, () => {
  s.addMembership('239.255.255.250', process.argv[1]);
  s.setMulticastInterface(process.argv[1]);
  // What the gateway announces before the change (its BOOTID), as a client's search finds it.
  s.send(['M-SEARCH * HTTP/1.1', 'HOST: 239.255.255.250:1900', 'MAN: "ssdp:discover"', 'MX: 1', 'ST: upnp:rootdevice', '', ''].join(String.fromCharCode(13, 10)), 1900, '239.255.255.250');
  console.log('listening');
});
setTimeout(() => process.exit(0), 120000);
`;

describeNetns('a LAN address change while upnpd runs', ['ip', 'iptables', 'upnpc', 'natpmpc'], () => {
  let testbed: Testbed;
  let daemon: RunningDaemon;
  let listener: NamespaceProcess;

  beforeAll(async () => {
    testbed = await createTestbed();
    daemon = await startDaemonInGateway(testbed, ['--lan', testbed.lanInterface, '--wan', testbed.wanInterface, '--backend', 'iptables']);
    listener = NamespaceProcess.start(testbed.lan, [process.execPath, '-e', LISTENER, testbed.addresses.lanClient]);
    await listener.waitFor(/RESPONSE http/, NOTICE_MS);
  });
  afterAll(async () => {
    await listener?.kill();
    await daemon?.stop();
    await testbed?.destroy();
  });

  it('re-announces: byebye, then alive with the new LOCATION and a higher BOOTID, and serves there', async () => {
    const { gatewayLan, lanClient, prefixLength } = testbed.addresses;
    const oldLocation = daemon.url;
    expect(oldLocation).toContain(`http://${gatewayLan}:`);
    // Renumbered: the old address goes, the new one comes (deleting a primary address takes its
    // subnet's secondaries with it, so not the other way round).
    await testbed.gateway.exec('ip', ['addr', 'del', `${gatewayLan}/${prefixLength}`, 'dev', testbed.lanInterface]);
    await testbed.gateway.exec('ip', ['addr', 'add', `${NEW_GATEWAY_LAN}/${prefixLength}`, 'dev', testbed.lanInterface]);

    const [alive] = await listener.waitFor(new RegExp(`NOTIFY ssdp:alive http://${NEW_GATEWAY_LAN.replace(/\./g, '\\.')}:\\d+/\\S+ \\d+`), NOTICE_MS);
    const lines = listener.output().split('\n');
    const before = lines.find((line) => line.startsWith(`RESPONSE ${oldLocation}`));
    expect(before, lines.join('\n')).toBeDefined();
    // A byebye comes before the new alive (the old address is gone by then, so it leaves from the
    // new one), and the new BOOTID is higher than the one announced before.
    const byebye = lines.findIndex((line) => line.startsWith('NOTIFY ssdp:byebye'));
    expect(byebye, lines.join('\n')).toBeGreaterThanOrEqual(0);
    expect(byebye).toBeLessThan(lines.indexOf(alive));
    const bootIdOf = (line: string) => Number(line.split(' ').at(-1));
    expect(bootIdOf(alive)).toBeGreaterThan(bootIdOf(before!));
    expect(daemon.output()).toMatch(/LAN addresses changed .*re-announcing with BOOTID/);

    // A client that learnt the new LOCATION maps through it.
    const location = alive.split(' ')[2]!;
    const added = await upnpc(testbed.lan, ['-u', location, '-e', 'after renumbering', '-a', lanClient, '7810', '7810', 'TCP', '600']);
    expect(added.exitCode, added.output).toBe(0);

    // NAT-PMP/PCP started again on the new address too (natpmpc gives up at once while nothing listens there: asked again, bounded).
    const natpmpc = async () => {
      const r = await testbed.lan.runner().run('natpmpc', ['-g', NEW_GATEWAY_LAN], { timeoutMs: 20_000 });
      return r.stdout + r.stderr;
    };
    await expect.poll(natpmpc, { timeout: NOTICE_MS, interval: 500 }).toMatch(/Public IP address : 203\.0\.113\.1/);
  });
});
