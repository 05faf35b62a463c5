import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeNetns, type TestNamespace } from './netns.js';
import { NamespaceProcess } from './namespace-process.js';
import {
  HOST_INTERFACE,
  TESTBED_ADDRESSES,
  TESTBED_IPV6_ADDRESSES,
  parseUpnpcListing,
  upnpc,
  useTestbedDaemon,
  type RunningDaemon,
  type Testbed,
  type UpnpcRun,
} from './topology.js';

// The daemon on the dry-run backend in a testbed with IPv6 (2001:db8::/32 and link-local only):
// HTTP and SSDP over IPv6 on the LAN, the LAN checks, and nothing on the WAN side.

const HTTP_TIMEOUT_MS = 3_000;
/** A counter table in the gateway, only while a test looks at what arrives on its WAN interface. */
const SSDP_PROBE_TABLE = 'upnpdt_ssdp6_probe';

/**
 * GETs host:port/path (host may be a link-local address with its zone: a WHATWG URL cannot carry
 * one) with the given Host header; prints { status, body } or { error: code } as JSON.
 */
const HTTP_GET_BY_ADDRESS = `
const job = JSON.parse(process.argv[1]);
const request = require('node:http').get({ host: job.host, port: job.port, path: job.path, headers: { Host: job.hostHeader }, timeout: job.timeoutMs }, (res) => {
  let body = '';
  res.setEncoding('utf8');
  res.on('data', (chunk) => { body += chunk; });
  res.on('end', () => console.log(JSON.stringify({ status: res.statusCode, body })));
});
request.on('timeout', () => request.destroy(Object.assign(new Error('timed out'), { code: 'TIMEOUT' })));
request.on('error', (err) => console.log(JSON.stringify({ error: err.code || err.message })));
`;

/**
 * Listens for NOTIFY on job.listenHost (an address with its zone when link-local), SUBSCRIBEs to
 * job.eventPath on the gateway with job.callback, waits for the first NOTIFY (5 s at most), then
 * UNSUBSCRIBEs; prints { subscribed, notifies, unsubscribed } or { error } as JSON.
 */
const SUBSCRIBE_AND_LISTEN = `
const job = JSON.parse(process.argv[1]);
const http = require('node:http');
const notifies = [];
const listener = http.createServer((req, res) => {
  let body = '';
  req.on('data', (chunk) => { body += chunk; });
  req.on('end', () => {
    notifies.push({ method: req.method, sid: req.headers.sid, seq: req.headers.seq, host: req.headers.host, to: req.socket.localAddress, from: req.socket.remoteAddress, body });
    res.end();
  });
});
const fail = (err) => { console.log(JSON.stringify({ error: err.code || err.message })); process.exit(0); };
const call = (method, headers, then) => {
  const req = http.request({ host: job.gatewayHost, port: job.port, path: job.eventPath, method, headers: { Host: job.hostHeader, ...headers }, timeout: 3000 }, (res) => {
    res.resume();
    then({ status: res.statusCode, sid: res.headers.sid });
  });
  req.on('timeout', () => req.destroy(Object.assign(new Error('timed out'), { code: 'TIMEOUT' })));
  req.on('error', fail);
  req.end();
};
listener.listen(job.listenPort, job.listenHost, () => {
  call('SUBSCRIBE', { CALLBACK: job.callback, NT: 'upnp:event', TIMEOUT: 'Second-1800' }, (subscribed) => {
    const deadline = Date.now() + 5000;
    const wait = () => {
      if (notifies.length === 0 && Date.now() < deadline && subscribed.status === 200) return setTimeout(wait, 50);
      const done = (unsubscribed) => { console.log(JSON.stringify({ subscribed, notifies, unsubscribed })); process.exit(0); };
      subscribed.sid ? call('UNSUBSCRIBE', { SID: subscribed.sid }, done) : done(undefined);
    };
    wait();
  });
});
`;

const SSDP_PORT = 1900;
const SEARCH_WAIT_MS = 2_500;
const NOTICE_MS = 10_000;
const IGD = 'urn:schemas-upnp-org:device:InternetGatewayDevice';

/**
 * Sends one M-SEARCH (MX 1) over IPv6 from job.bind (an address, with its zone when link-local) to
 * job.to (a group with its zone, or a unicast address); prints the answers as JSON.
 */
const SSDP_SEARCH_6 = `
const job = JSON.parse(process.argv[1]);
const socket = require('node:dgram').createSocket({ type: 'udp6', ipv6Only: true });
const replies = [];
socket.on('message', (msg, peer) => replies.push({ from: peer.address, text: msg.toString('latin1') }));
socket.on('error', (err) => { console.error(err.message); process.exit(1); });
socket.bind(0, job.bind, () => {
  if (job.multicastInterface) socket.setMulticastInterface(job.multicastInterface);
  const message = ['M-SEARCH * HTTP/1.1', 'HOST: [FF02::C]:${SSDP_PORT}', 'MAN: "ssdp:discover"', 'MX: 1', 'ST: ' + job.searchTarget, '', ''];
  socket.send(message.join('\\r\\n'), ${SSDP_PORT}, job.to);
  setTimeout(() => { console.log(JSON.stringify(replies)); process.exit(0); }, ${SEARCH_WAIT_MS});
});
`;

/**
 * Listens on [::]:1900 in the ff02::c group of the host interface and on 239.255.255.250:1900;
 * prints a line per NOTIFY for upnp:rootdevice: family, NTS, LOCATION, BOOTID, CONFIGID.
 */
const NOTIFY_LISTENER = `
const [iface, ipv4] = process.argv.slice(1);
const dgram = require('node:dgram');
const header = (text, name) => ((new RegExp('^' + name + ': *(.*)$', 'im').exec(text) || [])[1] || '-').trim();
const onMessage = (family) => (msg) => {
  const text = msg.toString('latin1');
  if (!/^NOTIFY/.test(text) || !/^NT: *upnp:rootdevice/im.test(text)) return;
  const nts = header(text, 'NTS');
  const next = nts === 'ssdp:update' ? [header(text, 'NEXTBOOTID.UPNP.ORG')] : [];
  console.log(['NOTIFY', family, nts, header(text, 'LOCATION'), header(text, 'BOOTID.UPNP.ORG'), header(text, 'CONFIGID.UPNP.ORG'), ...next].join(' '));
};
const v6 = dgram.createSocket({ type: 'udp6', reuseAddr: true, ipv6Only: true });
const v4 = dgram.createSocket({ type: 'udp4', reuseAddr: true });
v6.on('message', onMessage('v6'));
v4.on('message', onMessage('v4'));
v6.bind(${SSDP_PORT}, '::', () => {
  v6.addMembership('ff02::c', '::%' + iface);
  v4.bind(${SSDP_PORT}, () => {
    v4.addMembership('239.255.255.250', ipv4);
    console.log('listening');
  });
});
setTimeout(() => process.exit(0), 120000);
`;

interface SsdpReply {
  readonly from: string;
  readonly text: string;
}

async function mSearch6(ns: TestNamespace, job: { bind: string; to: string; multicastInterface?: string; searchTarget?: string }): Promise<SsdpReply[]> {
  const stdout = await ns.exec(process.execPath, ['-e', SSDP_SEARCH_6, JSON.stringify({ searchTarget: `${IGD}:1`, ...job })], {
    timeoutMs: SEARCH_WAIT_MS + 10_000,
  });
  return JSON.parse(stdout) as SsdpReply[];
}

function header(text: string, name: string): string | undefined {
  return new RegExp(`^${name}: *(.*?)\r?$`, 'im').exec(text)?.[1];
}

type HttpOutcome = { readonly status: number; readonly body: string } | { readonly error: string };

async function httpGet(ns: TestNamespace, job: { host: string; port: number; path?: string; hostHeader: string }): Promise<HttpOutcome> {
  const stdout = await ns.exec(process.execPath, ['-e', HTTP_GET_BY_ADDRESS, JSON.stringify({ path: '/rootDesc.xml', ...job, timeoutMs: HTTP_TIMEOUT_MS })], {
    timeoutMs: HTTP_TIMEOUT_MS + 10_000,
  });
  return JSON.parse(stdout) as HttpOutcome;
}

describeNetns('upnpd over IPv6 on the LAN of the testbed', ['ip', 'upnpc', 'nft'], () => {
  const a = TESTBED_ADDRESSES;
  const a6 = TESTBED_IPV6_ADDRESSES;
  const running = useTestbedDaemon({ ipv6: true }, (testbed) => ['--dry-run', '--lan', testbed.lanInterface]);
  let testbed: Testbed;
  let daemon: RunningDaemon;
  let port: number;
  const globalUrl = () => `http://[${a6.gatewayLan}]:${port}/rootDesc.xml`;
  const expectSucceeded = (run: UpnpcRun) => expect(run.exitCode, run.output).toBe(0);
  beforeAll(() => {
    ({ testbed, daemon } = running);
    port = Number(new URL(daemon.url).port);
  });

  it('serves its description on the LAN global address and on the link-local one (zone in Host as RFC 6874 writes it)', async () => {
    expect(daemon.output()).toContain(globalUrl());
    const global = await httpGet(testbed.lan, { host: a6.gatewayLan, port, hostHeader: `[${a6.gatewayLan}]:${port}` });
    expect(global).toMatchObject({ status: 200 });
    expect('body' in global && global.body).toContain('InternetGatewayDevice');
    const linkLocal = await httpGet(testbed.lan, {
      host: `${a6.gatewayLanLinkLocal}%${HOST_INTERFACE}`,
      port,
      hostHeader: `[${a6.gatewayLanLinkLocal}%25${HOST_INTERFACE}]:${port}`,
    });
    expect(linkLocal).toMatchObject({ status: 200 });
  });

  it.each([
    ['its link-local address', `[${TESTBED_IPV6_ADDRESSES.lanClientLinkLocal}]`],
    ['its link-local address with its own zone (RFC 6874), as Windows writes it', `[${TESTBED_IPV6_ADDRESSES.lanClientLinkLocal}%2512]`],
  ])('takes a subscription from a link-local control point whose CALLBACK names %s, and delivers the initial event there', async (_, callbackHost) => {
    const listenPort = 47010;
    const job = {
      gatewayHost: `${a6.gatewayLanLinkLocal}%${HOST_INTERFACE}`,
      port,
      hostHeader: `[${a6.gatewayLanLinkLocal}%25${HOST_INTERFACE}]:${port}`,
      eventPath: '/igd2/WANIPConn/events',
      listenHost: `${a6.lanClientLinkLocal}%${HOST_INTERFACE}`,
      listenPort,
      callback: `<http://${callbackHost}:${listenPort}/upnp/eventing/wanip>`,
    };
    const stdout = await testbed.lan.exec(process.execPath, ['-e', SUBSCRIBE_AND_LISTEN, JSON.stringify(job)], { timeoutMs: 20_000 });
    const outcome = JSON.parse(stdout) as {
      subscribed: { status: number; sid?: string };
      notifies: { method: string; sid: string; seq: string; host: string; to: string; from: string; body: string }[];
      unsubscribed?: { status: number };
    };
    expect(outcome.subscribed.status).toBe(200);
    expect(outcome.subscribed.sid).toMatch(/^uuid:/);
    expect(outcome.notifies).toHaveLength(1);
    expect(outcome.notifies[0]).toMatchObject({
      method: 'NOTIFY',
      sid: outcome.subscribed.sid,
      seq: '0',
      // The Host the control point wrote (its own zone means nothing to the gateway and is left out).
      host: `[${a6.lanClientLinkLocal}]:${listenPort}`,
      to: `${a6.lanClientLinkLocal}%${HOST_INTERFACE}`,
      from: `${a6.gatewayLanLinkLocal}%${HOST_INTERFACE}`,
    });
    expect(outcome.notifies[0]!.body).toContain(`<ExternalIPAddress>${a.gatewayWan}</ExternalIPAddress>`);
    expect(outcome.unsubscribed).toEqual({ status: 200, sid: undefined });
  });

  it('refuses a Host that is not its own over IPv6 (DNS rebinding)', async () => {
    expect(await httpGet(testbed.lan, { host: a6.gatewayLan, port, hostHeader: `gateway.example:${port}` })).toMatchObject({ status: 400 });
    expect(await httpGet(testbed.lan, { host: a6.gatewayLan, port, hostHeader: `[${a6.lanClient}]:${port}` })).toMatchObject({ status: 403 });
  });

  it('upnpc reads the status over IPv6 and lists, over IPv6, a mapping made over IPv4', async () => {
    const status = await upnpc(testbed.lan, ['-6', '-u', globalUrl(), '-s']);
    expectSucceeded(status);
    expect(status.output).toContain(`ExternalIPAddress = ${a.gatewayWan}`);
    expectSucceeded(await upnpc(testbed.lan, ['-u', daemon.url, '-e', 'over v4', '-a', a.lanClient, '9300', '9300', 'TCP', '600']));
    try {
      const listed = await upnpc(testbed.lan, ['-6', '-u', globalUrl(), '-l']);
      expectSucceeded(listed);
      expect(parseUpnpcListing(listed.output)).toMatchObject([{ protocol: 'TCP', externalPort: 9300, internalClient: a.lanClient, description: 'over v4' }]);
    } finally {
      await upnpc(testbed.lan, ['-u', daemon.url, '-d', '9300', 'TCP']);
    }
  });

  it('secure mode: an IPv6 requester cannot map a port to an IPv4 address (it cannot be shown to be the same host)', async () => {
    const refused = await upnpc(testbed.lan, ['-6', '-u', globalUrl(), '-a', a.lanClient, '9301', '9301', 'TCP', '600']);
    expect(refused.output).toMatch(/\b606\b/);
    const listed = await upnpc(testbed.lan, ['-u', daemon.url, '-l']);
    expect(parseUpnpcListing(listed.output)).toEqual([]);
  });

  it('refuses a peer outside the LAN prefixes (403): the WAN host, routed to the LAN address', async () => {
    const fromWan = await httpGet(testbed.wan, { host: a6.gatewayLan, port, hostHeader: `[${a6.gatewayLan}]:${port}` });
    expect(fromWan).toMatchObject({ status: 403 });
  });

  it('listens on no WAN address over IPv6: global and link-local', async () => {
    expect(await httpGet(testbed.wan, { host: a6.gatewayWan, port, hostHeader: `[${a6.gatewayWan}]:${port}` })).toEqual({ error: 'ECONNREFUSED' });
    const linkLocal = await httpGet(testbed.wan, {
      host: `${a6.gatewayWanLinkLocal}%${HOST_INTERFACE}`,
      port,
      hostHeader: `[${a6.gatewayWanLinkLocal}]:${port}`,
    });
    expect(linkLocal).toEqual({ error: 'ECONNREFUSED' });
    // The LAN link-local address is not reachable from the WAN link at all.
    const lanLinkLocal = await httpGet(testbed.wan, {
      host: `${a6.gatewayLanLinkLocal}%${HOST_INTERFACE}`,
      port,
      hostHeader: `[${a6.gatewayLanLinkLocal}]:${port}`,
    });
    expect('status' in lanLinkLocal).toBe(false);
  });

  it('upnpc -6 discovers it over IPv6 and reads the external address; LOCATION names the LAN global address and the IGD:2 view', async () => {
    const status = await upnpc(testbed.lan, ['-6', '-i', '-m', HOST_INTERFACE, '-s']);
    expectSucceeded(status);
    // It searched for IGD:1; over IPv6 the answer points at the IGD:2 view (WANIPv6FirewallControl).
    expect(status.output).toContain(`desc: http://[${a6.gatewayLan}]:${port}/rootDesc.xml`);
    expect(status.output).toContain(`ExternalIPAddress = ${a.gatewayWan}`);
    const listed = await upnpc(testbed.lan, ['-6', '-i', '-m', HOST_INTERFACE, '-l']);
    expectSucceeded(listed);
  });

  it("answers M-SEARCH on ff02::c and ff05::c, and unicast, from an address of the requester's scope, with the same BOOTID and CONFIGID as over IPv4", async () => {
    const overIpv4 = await upnpc(testbed.lan, ['-i', '-m', a.lanClient, '-s']);
    expectSucceeded(overIpv4);
    const cases = [
      { bind: `${a6.lanClientLinkLocal}%${HOST_INTERFACE}`, to: `ff02::c%${HOST_INTERFACE}`, from: `${a6.gatewayLanLinkLocal}%${HOST_INTERFACE}` },
      { bind: a6.lanClient, to: `ff02::c%${HOST_INTERFACE}`, from: a6.gatewayLan },
      { bind: a6.lanClient, to: `ff05::c`, from: a6.gatewayLan },
      { bind: a6.lanClient, to: a6.gatewayLan, from: a6.gatewayLan },
      {
        bind: `${a6.lanClientLinkLocal}%${HOST_INTERFACE}`,
        to: `${a6.gatewayLanLinkLocal}%${HOST_INTERFACE}`,
        from: `${a6.gatewayLanLinkLocal}%${HOST_INTERFACE}`,
      },
    ];
    const seen = new Set<string>();
    for (const job of cases) {
      const replies = await mSearch6(testbed.lan, { ...job, multicastInterface: `::%${HOST_INTERFACE}` });
      expect(
        replies.map((r) => r.from),
        JSON.stringify(job),
      ).toEqual([job.from]);
      const text = replies[0]!.text;
      expect(text).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
      // An IGD:1 search over IPv6 is answered with IGD:1 but the IGD:2 view (pinhole clients search over IPv6).
      expect(header(text, 'ST')).toBe(`${IGD}:1`);
      expect(header(text, 'LOCATION')).toBe(`http://[${a6.gatewayLan}]:${port}/rootDesc.xml`);
      seen.add(`${header(text, 'BOOTID.UPNP.ORG')} ${header(text, 'CONFIGID.UPNP.ORG')}`);
    }
    expect(seen.size).toBe(1);
    // The IPv4 answers carry the same pair.
    const v4 = await mSearch6(testbed.lan, { bind: a6.lanClient, to: a6.gatewayLan });
    expect(seen).toContain(`${header(v4[0]!.text, 'BOOTID.UPNP.ORG')} ${header(v4[0]!.text, 'CONFIGID.UPNP.ORG')}`);
  });

  it('answers no IPv6 source outside the LAN prefixes, even on the LAN link', async () => {
    const outside = '2001:db8:99::10';
    await testbed.lan.exec('ip', ['-6', 'addr', 'add', `${outside}/128`, 'dev', HOST_INTERFACE, 'nodad']);
    try {
      // The same search from the client's LAN address is answered (see above); from this one, nothing.
      expect(await mSearch6(testbed.lan, { bind: outside, to: a6.gatewayLan })).toEqual([]);
      expect(await mSearch6(testbed.lan, { bind: outside, to: `ff05::c`, multicastInterface: `::%${HOST_INTERFACE}` })).toEqual([]);
    } finally {
      await testbed.lan.exec('ip', ['-6', 'addr', 'del', `${outside}/128`, 'dev', HOST_INTERFACE]);
    }
  });

  it('answers nothing on the WAN side over IPv6: multicast and unicast M-SEARCH, to every gateway address', async () => {
    // Counts the searches arriving on the WAN interface, so that "no answer" cannot mean "never arrived".
    const probe = `table ip6 ${SSDP_PROBE_TABLE} { chain prerouting { type filter hook prerouting priority raw; iifname "${testbed.wanInterface}" udp dport ${SSDP_PORT} counter; }; }`;
    await testbed.gateway.exec('nft', ['-f', '-'], { input: probe });
    try {
      const fromWan = (bind: string, to: string) => mSearch6(testbed.wan, { bind, to, multicastInterface: `::%${HOST_INTERFACE}`, searchTarget: 'ssdp:all' });
      const linkLocal = `${a6.wanHostLinkLocal}%${HOST_INTERFACE}`;
      expect(await fromWan(linkLocal, `ff02::c%${HOST_INTERFACE}`)).toEqual([]);
      expect(await fromWan(a6.wanHost, `ff02::c%${HOST_INTERFACE}`)).toEqual([]);
      expect(await fromWan(a6.wanHost, 'ff05::c')).toEqual([]);
      expect(await fromWan(a6.wanHost, a6.gatewayWan)).toEqual([]);
      expect(await fromWan(linkLocal, `${a6.gatewayWanLinkLocal}%${HOST_INTERFACE}`)).toEqual([]);
      expect(await fromWan(a6.wanHost, a6.gatewayLan)).toEqual([]);
      const counted = await testbed.gateway.exec('nft', ['list', 'table', 'ip6', SSDP_PROBE_TABLE]);
      expect(counted).toMatch(/counter packets 6 /);
    } finally {
      await testbed.gateway.exec('nft', ['delete', 'table', 'ip6', SSDP_PROBE_TABLE]);
    }
  });

  // Last: it renumbers the LAN.
  it('a new LAN prefix: ssdp:update with NEXTBOOTID, then alive on ff02::c with the new LOCATION and that BOOTID; served there', async () => {
    const listener = NamespaceProcess.start(testbed.lan, [process.execPath, '-e', NOTIFY_LISTENER, HOST_INTERFACE, a.lanClient]);
    try {
      await listener.waitFor(/^listening$/m, NOTICE_MS);
      const renumbered = '2001:db8:78::1';
      // The client takes an address in the new prefix too, as SLAAC would give it.
      await testbed.lan.exec('ip', ['-6', 'addr', 'add', '2001:db8:78::10/64', 'dev', HOST_INTERFACE, 'nodad']);
      await testbed.gateway.exec('ip', ['-6', 'addr', 'add', `${renumbered}/64`, 'dev', testbed.lanInterface, 'nodad']);
      await testbed.gateway.exec('ip', ['-6', 'addr', 'del', `${a6.gatewayLan}/64`, 'dev', testbed.lanInterface]);
      const newLocation = `http://[${renumbered}]:${port}/rootDesc.xml`;
      const [alive] = await listener.waitFor(new RegExp(`^NOTIFY v6 ssdp:alive ${newLocation.replace(/[.[\]]/g, '\\$&')} (\\d+) (\\d+)$`, 'm'), NOTICE_MS);
      const lines = listener
        .output()
        .split('\n')
        .filter((l) => l.startsWith('NOTIFY'));
      const [, , , , bootId, configId] = alive.split(' ');
      // The link-local address that announces on the interface stays: told of the BOOTID change first
      // (the add and the delete may come as one change or two: the update announcing this BOOTID).
      const update = lines.find((l) => l.startsWith('NOTIFY v6 ssdp:update') && l.split(' ')[6] === bootId);
      expect(update, lines.join('\n')).toBeDefined();
      expect(lines.indexOf(update!)).toBeLessThan(lines.indexOf(alive));
      const [, , , , oldBootId] = update!.split(' ');
      expect(Number(bootId)).toBe(Number(oldBootId) + 1);
      // IPv4 is re-announced with the same BOOTID and CONFIGID.
      await listener.waitFor(new RegExp(`^NOTIFY v4 ssdp:alive http://\\S+ ${bootId} ${configId}$`, 'm'), NOTICE_MS);
      const served = await httpGet(testbed.lan, { host: renumbered, port, hostHeader: `[${renumbered}]:${port}` });
      expect(served).toMatchObject({ status: 200 });
      expect(await httpGet(testbed.lan, { host: renumbered, port, hostHeader: `[${a6.gatewayLan}]:${port}` })).toMatchObject({ status: 403 });
    } finally {
      await listener.kill();
    }
  });
});

describeNetns('upnpd over IPv6 with secureMode: false', ['ip', 'upnpc'], () => {
  const a = TESTBED_ADDRESSES;
  const a6 = TESTBED_IPV6_ADDRESSES;
  let dir: string | undefined;
  afterAll(() => dir && rmSync(dir, { recursive: true, force: true }));
  const running = useTestbedDaemon({ ipv6: true }, (testbed) => {
    dir = mkdtempSync(join(tmpdir(), 'upnpdt-v6-'));
    const configFile = join(dir, 'upnpd.config.mjs');
    writeFileSync(configFile, 'export default { secureMode: false };\n');
    return ['--dry-run', '--lan', testbed.lanInterface, '--config', configFile];
  });

  it('upnpc -6 adds an IPv4 mapping over the IPv6 control connection and lists it', async () => {
    const { testbed } = running;
    const add = await upnpc(testbed.lan, ['-6', '-i', '-m', HOST_INTERFACE, '-e', 'over v6', '-a', a.lanClient, '9400', '9400', 'UDP', '600']);
    expect(add.exitCode, add.output).toBe(0);
    const listed = await upnpc(testbed.lan, ['-6', '-i', '-m', HOST_INTERFACE, '-l']);
    expect(listed.output).toContain(`desc: http://[${a6.gatewayLan}]:`);
    expect(parseUpnpcListing(listed.output)).toMatchObject([{ protocol: 'UDP', externalPort: 9400, internalClient: a.lanClient, description: 'over v6' }]);
  });
});
