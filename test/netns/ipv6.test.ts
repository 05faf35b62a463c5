import { beforeAll, expect, it } from 'vitest';
import { describeNetns, type TestNamespace } from './netns.js';
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
});
