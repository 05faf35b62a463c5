import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import { devicesOf, parseDescription, type DescribedDevice } from '../support/upnp-xml.js';
import { describeNetns, type TestNamespace } from './netns.js';
import {
  TESTBED_ADDRESSES,
  createTestbed,
  parseUpnpcListing,
  startDaemonInGateway,
  upnpc,
  type RunningDaemon,
  type Testbed,
  type UpnpcRun,
} from './topology.js';

// The whole daemon on the dry-run backend, serving the testbed's LAN bridge: miniupnpc and raw
// SSDP searches from a LAN client find and use it; nothing reaches it from the WAN side.

const GROUP = '239.255.255.250';
const SSDP_PORT = 1900;
const IGD = 'urn:schemas-upnp-org:device:InternetGatewayDevice';
const WAN_CONNECTION_DEVICE = 'urn:schemas-upnp-org:device:WANConnectionDevice';
const WAN_IP_CONNECTION = 'urn:schemas-upnp-org:service:WANIPConnection';
/** MX of the searches: the daemon answers within 1 s. */
const SEARCH_MX = 1;
/** How long a search collects answers: MX plus a margin for a busy machine. */
const SEARCH_WAIT_MS = SEARCH_MX * 1000 + 1_500;
const HTTP_TIMEOUT_MS = 5_000;
/** A counter table in the gateway, only while a test looks at what arrives on its WAN interface. */
const SSDP_PROBE_TABLE = 'upnpdt_ssdp_probe';

/** Sends one M-SEARCH from `job.bind` to `job.to` (multicast out of the bind address's interface) and prints the answers as JSON. */
const SSDP_SEARCH = `
const job = JSON.parse(process.argv[1]);
const socket = require('node:dgram').createSocket('udp4');
const replies = [];
socket.on('message', (msg, peer) => replies.push({ from: peer.address + ':' + peer.port, text: msg.toString('latin1') }));
socket.on('error', (err) => { console.error(err.message); process.exit(1); });
socket.bind(0, job.bind, () => {
  socket.setMulticastInterface(job.bind);
  socket.setMulticastTTL(2);
  const message = ['M-SEARCH * HTTP/1.1', 'HOST: ' + job.to + ':${SSDP_PORT}', 'MAN: "ssdp:discover"', 'MX: ${SEARCH_MX}', 'ST: ' + job.searchTarget, '', ''];
  socket.send(message.join('\\r\\n'), ${SSDP_PORT}, job.to);
  setTimeout(() => { console.log(JSON.stringify(replies)); process.exit(0); }, job.waitMs);
});
`;

/** GETs a URL and prints { status, body } or { error: code } as JSON. */
const HTTP_GET = `
const job = JSON.parse(process.argv[1]);
const request = require('node:http').get(job.url, { timeout: job.timeoutMs }, (res) => {
  let body = '';
  res.setEncoding('utf8');
  res.on('data', (chunk) => { body += chunk; });
  res.on('end', () => console.log(JSON.stringify({ status: res.statusCode, body })));
});
request.on('timeout', () => request.destroy(Object.assign(new Error('timed out'), { code: 'TIMEOUT' })));
request.on('error', (err) => console.log(JSON.stringify({ error: err.code || err.message })));
`;

interface SsdpReply {
  readonly from: string;
  readonly text: string;
}

async function mSearch(ns: TestNamespace, job: { bind: string; to: string; searchTarget: string }): Promise<SsdpReply[]> {
  const stdout = await ns.exec(process.execPath, ['-e', SSDP_SEARCH, JSON.stringify({ ...job, waitMs: SEARCH_WAIT_MS })], {
    timeoutMs: SEARCH_WAIT_MS + 10_000,
  });
  return JSON.parse(stdout) as SsdpReply[];
}

type HttpOutcome = { readonly status: number; readonly body: string } | { readonly error: string };

async function httpGet(ns: TestNamespace, url: string): Promise<HttpOutcome> {
  const stdout = await ns.exec(process.execPath, ['-e', HTTP_GET, JSON.stringify({ url, timeoutMs: HTTP_TIMEOUT_MS })], {
    timeoutMs: HTTP_TIMEOUT_MS + 10_000,
  });
  return JSON.parse(stdout) as HttpOutcome;
}

/** Status line and headers (names lower-cased) of an SSDP answer. */
function parseSsdpReply(text: string): { statusLine: string; headers: Map<string, string> } {
  const [statusLine = '', ...lines] = text.split('\r\n');
  const headers = new Map<string, string>();
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  return { statusLine, headers };
}

/** The root device and every embedded one of a device description, root first. */
function describedDevices(xml: string): DescribedDevice[] {
  return parseDescription(xml).device.flatMap(devicesOf);
}

/** Each search target the issue names, and what the answer must say. */
const SEARCHES = [
  { searchTarget: `${IGD}:1`, device: 'root', igdVersion: 1 },
  { searchTarget: `${IGD}:2`, device: 'root', igdVersion: 2 },
  { searchTarget: 'upnp:rootdevice', device: 'root', igdVersion: 2 },
  { searchTarget: `${WAN_IP_CONNECTION}:1`, device: 'WANConnectionDevice', igdVersion: 1 },
] as const;

describeNetns('upnpd on the dry-run backend, found and used from the LAN of the testbed', ['ip', 'upnpc', 'iptables-restore', 'nft'], () => {
  const a = TESTBED_ADDRESSES;
  let testbed: Testbed;
  let daemon: RunningDaemon | undefined;
  /** The description URL of each IGD view: IGD:2 is the default, IGD:1 the view for older clients. */
  let descriptionUrl: Record<1 | 2, string>;

  /** upnpc finding the gateway by SSDP out of the first client's interface (-i: see topology.ts on TEST-NET-3). */
  const discovered = (...args: string[]) => upnpc(testbed.lan, ['-i', '-m', a.lanClient, ...args]);
  const expectSucceeded = (run: UpnpcRun) => expect(run.exitCode, run.output).toBe(0);

  beforeAll(async () => {
    testbed = await createTestbed();
    daemon = await startDaemonInGateway(testbed, ['--dry-run', '--lan', testbed.lanInterface]);
    descriptionUrl = { 2: daemon.url, 1: new URL('/rootDesc1.xml', daemon.url).href };
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

  it('upnpc -s finds the gateway by SSDP discovery and reads its status', async () => {
    const status = await discovered('-s');
    expectSucceeded(status);
    expect(status.output).toContain(`desc: ${descriptionUrl[1]}`);
    expect(status.output).toContain('Status : Connected');
    expect(status.output).toContain(`ExternalIPAddress = ${a.gatewayWan}`);
  });

  it('upnpc -a, -l, -L and -d manage a mapping, and dry-run changes no firewall', async () => {
    const firewallBefore = await testbed.gateway.exec('nft', ['--stateless', 'list', 'ruleset']);

    expectSucceeded(await discovered('-e', 'dry run', '-a', a.lanClient, '9100', '9200', 'UDP', '3600'));
    const expected = { protocol: 'UDP', externalPort: 9200, internalClient: a.lanClient, internalPort: 9100, description: 'dry run', remoteHost: '' };
    const listed = await discovered('-l');
    expectSucceeded(listed);
    expect(parseUpnpcListing(listed.output)).toMatchObject([expected]);
    // GetListOfPortMappings is an IGD:2 action: ask through the IGD:2 description.
    const listedByV2 = await upnpc(testbed.lan, ['-u', descriptionUrl[2], '-L']);
    expectSucceeded(listedByV2);
    expect(parseUpnpcListing(listedByV2.output)).toMatchObject([expected]);
    // What the iptables backend would have run, shown instead.
    expect(daemon!.output()).toMatch(/--dport 9200\b/);
    expect(await testbed.gateway.exec('nft', ['--stateless', 'list', 'ruleset'])).toBe(firewallBefore);

    expectSucceeded(await discovered('-d', '9200', 'UDP'));
    const afterDelete = await discovered('-l');
    expectSucceeded(afterDelete);
    expect(parseUpnpcListing(afterDelete.output)).toEqual([]);
  });

  for (const search of SEARCHES) {
    it(`answers a multicast M-SEARCH for ${search.searchTarget} once, from its LAN address, pointing to the IGD:${search.igdVersion} description`, async () => {
      const replies = await mSearch(testbed.lan, { bind: a.lanClient, to: GROUP, searchTarget: search.searchTarget });
      expect(replies).toHaveLength(1);
      const [reply] = replies;
      expect(reply!.from.split(':')[0]).toBe(a.gatewayLan);
      const { statusLine, headers } = parseSsdpReply(reply!.text);
      expect(statusLine).toBe('HTTP/1.1 200 OK');
      expect(headers.get('st')).toBe(search.searchTarget);
      expect(headers.get('location')).toBe(descriptionUrl[search.igdVersion]);
      expect(Number(headers.get('cache-control')?.match(/max-age\s*=\s*(\d+)/)?.[1])).toBeGreaterThanOrEqual(1800);
      expect(headers.has('ext')).toBe(true);
      expect(headers.get('server')).toContain('UPnP/1.1');
      expect(headers.get('bootid.upnp.org')).toMatch(/^\d+$/);

      // The USN names a device of the description the answer points to.
      const description = await httpGet(testbed.lan, headers.get('location')!);
      if (!('status' in description)) throw new Error(`GET ${headers.get('location')} failed: ${description.error}`);
      expect(description.status).toBe(200);
      const devices = describedDevices(description.body);
      expect(devices[0]!.deviceType).toBe(`${IGD}:${search.igdVersion}`);
      const device = search.device === 'root' ? devices[0] : devices.find((d) => d.deviceType.startsWith(`${WAN_CONNECTION_DEVICE}:`));
      expect(headers.get('usn')).toBe(`${device!.UDN}::${search.searchTarget}`);
    });
  }

  it('answers nothing on the WAN side: no SSDP answer, and no HTTP server on the WAN address', async () => {
    const fromWan = (to: string) => mSearch(testbed.wan, { bind: a.wanHost, to, searchTarget: 'ssdp:all' });
    // Counts the searches arriving on the WAN interface, so that "no answer" cannot mean "never arrived".
    const probe = `table ip ${SSDP_PROBE_TABLE} { chain prerouting { type filter hook prerouting priority raw; iifname "${testbed.wanInterface}" udp dport ${SSDP_PORT} counter; }; }`;
    await testbed.gateway.exec('nft', ['-f', '-'], { input: probe });
    try {
      expect(await fromWan(GROUP)).toEqual([]);
      expect(await fromWan(a.gatewayWan)).toEqual([]);
      const counted = await testbed.gateway.exec('nft', ['list', 'table', 'ip', SSDP_PROBE_TABLE]);
      expect(counted).toMatch(/counter packets 2 /);
    } finally {
      await testbed.gateway.exec('nft', ['delete', 'table', 'ip', SSDP_PROBE_TABLE]);
    }
    const port = new URL(daemon!.url).port;
    expect(await httpGet(testbed.wan, `http://${a.gatewayWan}:${port}/rootDesc.xml`)).toEqual({ error: 'ECONNREFUSED' });
  });

  it('refuses a WAN host that routes to the LAN address: no SSDP answer, HTTP 403', async () => {
    // The unicast path exists: a LAN client asking the same way is answered.
    const unicastTo = (ns: TestNamespace, bind: string) => mSearch(ns, { bind, to: a.gatewayLan, searchTarget: `${IGD}:1` });
    expect(await unicastTo(testbed.lan, a.lanClient)).toHaveLength(1);

    await testbed.wan.exec('ip', ['route', 'add', a.lanSubnet, 'via', a.gatewayWan]);
    try {
      expect(await unicastTo(testbed.wan, a.wanHost)).toEqual([]);
      expect(await httpGet(testbed.wan, daemon!.url)).toMatchObject({ status: 403 });
    } finally {
      await testbed.wan.exec('ip', ['route', 'del', a.lanSubnet, 'via', a.gatewayWan]);
    }
  });
});
