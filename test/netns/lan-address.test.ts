import { afterAll, beforeAll, expect, it } from 'vitest';
import { childProcesses } from '../support/processes.js';
import { describeNetns } from './netns.js';
import { NamespaceProcess } from './namespace-process.js';
import { HOST_INTERFACE, createTestbed, startDaemonInGateway, upnpc, type RunningDaemon, type Testbed } from './topology.js';

// The gateway's LAN addresses change while upnpd runs (DHCP on the bridge, an admin's `ip addr`, an
// IPv6 address whose duplicate address detection ends): the front-ends serve the new addresses in
// place. A renumbered address: byebye, then alive with the new LOCATION and a higher BOOTID (the
// old address is gone, so nothing can leave from it), and the clients that listen to SSDP find it
// at its new address. An address added: served besides the others, which keep answering.

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

/**
 * From a LAN host: an HTTP GET of the description (a new connection each time) and a NAT-PMP
 * external address request, again and again for `ms` (bounded in count too); prints each failure
 * and the totals.
 */
const REQUEST_LOOP = `
const http = require('http');
const dgram = require('dgram');
const [url, gateway, ms] = process.argv.slice(1);
const end = Date.now() + Number(ms);
const get = () => new Promise((resolve) => {
  const req = http.get(url, { agent: false, timeout: 3000 }, (res) => {
    res.resume();
    res.on('end', () => resolve(res.statusCode === 200 ? 'ok' : 'http status ' + res.statusCode));
  });
  req.on('timeout', () => req.destroy(new Error('timeout')));
  req.on('error', (e) => resolve('http ' + e.message));
});
const natPmp = () => new Promise((resolve) => {
  const s = dgram.createSocket('udp4');
  const done = (r) => { clearTimeout(t); s.close(); resolve(r); };
  const t = setTimeout(() => done('nat-pmp no answer'), 3000);
  s.on('error', (e) => done('nat-pmp ' + e.message));
  s.on('message', (m) => done(m.length === 12 && m.readUInt16BE(2) === 0 ? 'ok' : 'nat-pmp answer ' + m.toString('hex')));
  s.send(Buffer.from([0, 0]), 5351, gateway);
});
(async () => {
  let ok = 0, failed = 0;
  for (let i = 0; i < 3000 && Date.now() < end; i++) {
    for (const r of await Promise.all([get(), natPmp()])) {
      if (r === 'ok') ok++;
      else { failed++; console.log('FAIL ' + new Date().toISOString() + ' ' + r); }
    }
    if (i === 0) console.log('looping');
    await new Promise((r) => setTimeout(r, 25));
  }
  console.log('DONE ok=' + ok + ' failed=' + failed);
})();
`;

/** An HTTP GET from a LAN host: prints the status, or the error. */
const FETCH = `
require('http').get(process.argv[1], { timeout: 3000 }, (res) => { res.resume(); console.log('STATUS ' + res.statusCode); })
  .on('error', (e) => console.log('ERROR ' + e.message))
  .on('timeout', function () { this.destroy(new Error('timeout')); });
`;

/**
 * A testbed, upnpd in its gateway serving the LAN bridge, and the SSDP LISTENER on the LAN host
 * (once it has the answer to its search), for the tests of the enclosing describe block.
 */
function useListeningTestbed(): { testbed: Testbed; daemon: RunningDaemon; listener: NamespaceProcess } {
  const running = {} as { testbed: Testbed; daemon: RunningDaemon; listener: NamespaceProcess };
  beforeAll(async () => {
    running.testbed = await createTestbed();
    const { testbed } = running;
    running.daemon = await startDaemonInGateway(testbed, ['--lan', testbed.lanInterface, '--wan', testbed.wanInterface, '--backend', 'iptables']);
    running.listener = NamespaceProcess.start(testbed.lan, [process.execPath, '-e', LISTENER, testbed.addresses.lanClient]);
    await running.listener.waitFor(/RESPONSE http/, NOTICE_MS);
  });
  afterAll(async () => {
    await running.listener?.kill();
    await running.daemon?.stop();
    await running.testbed?.destroy();
  });
  return running;
}

describeNetns('a LAN address change while upnpd runs', ['ip', 'iptables', 'upnpc', 'natpmpc'], () => {
  const running = useListeningTestbed();

  it('re-announces: byebye, then alive with the new LOCATION and a higher BOOTID, and serves there', async () => {
    const { testbed, daemon, listener } = running;
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

describeNetns('a LAN address added while upnpd runs (IPv6 with duplicate address detection, IPv4)', ['ip', 'iptables', 'natpmpc'], () => {
  // A second IPv4 address of the bridge, and a ULA that is tentative (duplicate address detection) for a moment after it is added.
  const ADDED_IPV4 = '192.168.77.253';
  const ADDED_IPV6 = 'fd00:77::1';
  const CLIENT_IPV6 = 'fd00:77::10';
  const LOOP_MS = 15_000;
  const running = useListeningTestbed();

  const fetchFromLan = async (url: string) => {
    const r = await running.testbed.lan.runner().run(process.execPath, ['-e', FETCH, url], { timeoutMs: 10_000 });
    return r.stdout.trim() || r.stderr.trim();
  };

  it('serves the new addresses once ready, and the requests on the others all get answers meanwhile', async () => {
    const { testbed, daemon, listener } = running;
    const { gatewayLan, prefixLength } = testbed.addresses;
    const port = new URL(daemon.url).port;
    const loop = NamespaceProcess.start(testbed.lan, [process.execPath, '-e', REQUEST_LOOP, daemon.url, gatewayLan, String(LOOP_MS)]);
    try {
      await loop.waitFor(/looping/, NOTICE_MS);
      await testbed.lan.exec('ip', ['-6', 'addr', 'add', `${CLIENT_IPV6}/64`, 'dev', HOST_INTERFACE, 'nodad']);
      // With duplicate address detection (the default): tentative first, ready a moment later.
      await testbed.gateway.exec('ip', ['-6', 'addr', 'add', `${ADDED_IPV6}/64`, 'dev', testbed.lanInterface]);
      await testbed.gateway.exec('ip', ['addr', 'add', `${ADDED_IPV4}/${prefixLength}`, 'dev', testbed.lanInterface]);

      await expect
        .poll(() => daemon.output(), { timeout: NOTICE_MS, interval: 250 })
        .toMatch(new RegExp(`LAN addresses changed \\([^)]*-> [^)]*${ADDED_IPV6}`));
      await expect.poll(() => fetchFromLan(`http://[${ADDED_IPV6}]:${port}/rootDesc.xml`), { timeout: NOTICE_MS, interval: 500 }).toBe('STATUS 200');
      expect(await fetchFromLan(`http://${ADDED_IPV4}:${port}/rootDesc.xml`)).toBe('STATUS 200');
      const natpmpc = await testbed.lan.runner().run('natpmpc', ['-g', ADDED_IPV4], { timeoutMs: 20_000 });
      expect(natpmpc.stdout + natpmpc.stderr).toMatch(/Public IP address : 203\.0\.113\.1/);

      const [done] = await loop.waitFor(/DONE ok=\d+ failed=\d+/, LOOP_MS + NOTICE_MS);
      expect(
        loop
          .output()
          .split('\n')
          .filter((line) => line.startsWith('FAIL')),
        daemon.output(),
      ).toEqual([]);
      // Two answers a round, a round every 25 ms or so: well over a hundred even on a loaded machine.
      expect(Number(/ok=(\d+)/.exec(done)![1])).toBeGreaterThan(100);
    } finally {
      await loop.kill();
    }

    // Nothing was started again: the front-ends took every change in place.
    expect(daemon.output()).not.toMatch(/starting again|could not serve the new LAN addresses in place|could not start on the new addresses/);
    // SSDP: the BOOTID change told where it announced before (ssdp:update), then alive from the new address with the new BOOTID.
    const lines = listener.output().split('\n');
    const before = Number(
      lines
        .find((line) => line.startsWith('RESPONSE '))!
        .split(' ')
        .at(-1),
    );
    const update = lines.find((line) => line.startsWith(`NOTIFY ssdp:update http://${gatewayLan}:${port}/`));
    expect(update, lines.join('\n')).toBeDefined();
    const alive = lines.filter((line) => line.startsWith(`NOTIFY ssdp:alive http://${ADDED_IPV4}:${port}/`));
    expect(alive.length, lines.join('\n')).toBeGreaterThan(0);
    expect(Number(alive.at(-1)!.split(' ').at(-1))).toBeGreaterThan(before);
  });
});

describeNetns('a LAN address change while the ip monitor behind the address events is dead', ['ip', 'iptables', 'upnpc'], () => {
  const running = useListeningTestbed();

  it('is noticed when the monitor runs again: killed, it is restarted and the daemon looks at the LAN again', async () => {
    const { testbed, daemon, listener } = running;
    const { gatewayLan, prefixLength } = testbed.addresses;
    const [monitor] = childProcesses(daemon.pid, 'ip -o monitor');
    expect(monitor, daemon.output()).toBeDefined();
    process.kill(monitor!, 'SIGKILL');
    await expect.poll(() => daemon.output(), { timeout: NOTICE_MS }).toMatch(/ip monitor ended \(killed by SIGKILL\): address and neighbour events stop/);
    // Renumbered while no monitor runs: no event reports it.
    await testbed.gateway.exec('ip', ['addr', 'del', `${gatewayLan}/${prefixLength}`, 'dev', testbed.lanInterface]);
    await testbed.gateway.exec('ip', ['addr', 'add', `${NEW_GATEWAY_LAN}/${prefixLength}`, 'dev', testbed.lanInterface]);
    await expect.poll(() => daemon.output(), { timeout: NOTICE_MS }).toMatch(/ip monitor runs again/);
    await listener.waitFor(new RegExp(`NOTIFY ssdp:alive http://${NEW_GATEWAY_LAN.replace(/\./g, '\\.')}:\\d+/\\S+ \\d+`), NOTICE_MS);
    expect(daemon.output()).toMatch(/LAN addresses changed .*re-announcing with BOOTID/);
    expect(childProcesses(daemon.pid, 'ip -o monitor')).toHaveLength(1);
  });
});
