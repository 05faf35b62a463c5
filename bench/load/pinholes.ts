import { performance } from 'node:perf_hooks';
import { findWanIpv6FirewallControl, type ControlEndpoint } from './description.js';
import { HttpClient } from './http-client.js';
import { SoapClient } from './soap-client.js';

/**
 * The pinhole load: AddPinhole over IPv6 from several LAN IPv6 addresses of one namespace, each
 * pinhole to its requester's own address (as secure mode wants), spread over the hosts in turn as
 * the UPnP rows spread mappings over their 100 LAN hosts. The plan and the kernel check are pure
 * (unit-tested); `addPinholes` sends the requests (run in the LAN client's namespace by
 * pinholes-main.ts).
 */

/** IANA protocol number of TCP, as WANIPv6FirewallControl carries it. */
const TCP = 6;

export interface PlannedPinhole {
  /** The requester, and the pinhole's InternalClient. */
  readonly host: string;
  readonly port: number;
}

/** Pinhole i goes to hosts[i % hosts.length], on port firstPort + floor(i / hosts.length): every (host, port) once. */
export function planPinholes(count: number, hosts: readonly string[], firstPort: number): PlannedPinhole[] {
  if (hosts.length === 0) throw new RangeError('no LAN hosts to add pinholes from');
  if (firstPort + Math.ceil(count / hosts.length) - 1 > 65535)
    throw new RangeError(`${count} pinholes over ${hosts.length} hosts do not fit above port ${firstPort}`);
  return Array.from({ length: count }, (_, i) => ({ host: hosts[i % hosts.length]!, port: firstPort + Math.floor(i / hosts.length) }));
}

/**
 * How many of the planned pinholes an `nft list table` listing holds, each counted once: as a set
 * element `<address> . tcp . <port>` (upnpd), or as a rule of miniupnpd's chain, which matches raw
 * IPv6 header bytes (`th dport <port> @nh,192,128 0x<destination address> @nh,48,8 0x6`: nft
 * cannot name them as `ip6 daddr` in an inet table without an IPv6 dependency).
 */
export function pinholesInListing(listing: string, planned: readonly PlannedPinhole[]): number {
  const found = new Set<string>();
  for (const m of listing.matchAll(/([0-9a-f:]+:[0-9a-f]*) \. tcp \. (\d+)/g)) found.add(`${canonical(m[1]!)}/${m[2]}`);
  for (const m of listing.matchAll(/th dport (\d+) @nh,192,128 0x([0-9a-f]{32}) @nh,48,8 0x6 accept/g)) {
    found.add(`${canonical(m[2]!.match(/.{4}/g)!.join(':'))}/${m[1]}`);
  }
  return planned.filter((p) => found.has(`${canonical(p.host)}/${p.port}`)).length;
}

/** An IPv6 address as nft prints it (compressed, lower case). */
function canonical(address: string): string {
  return new URL(`http://[${address}]/`).hostname.slice(1, -1);
}

export interface PinholeLoadOptions {
  /** Description URLs to try in turn (IPv6 literals), the first with WANIPv6FirewallControl used. */
  readonly descriptionUrls: readonly string[];
  readonly hosts: readonly string[];
  readonly count: number;
  readonly firstPort: number;
  readonly leaseSeconds: number;
  /** Requests in flight at once, each from the next host in turn. */
  readonly concurrency: number;
  readonly maxMs: number;
}

export interface PinholeLoadResult {
  /** The WANIPv6FirewallControl control URL used (none when it was not found). */
  readonly controlUrl?: string;
  readonly added: number;
  readonly elapsedMs: number;
  /** The first failure, when not every pinhole was added. */
  readonly error?: string;
}

/** Finds the WANIPv6FirewallControl service, then adds the planned pinholes, `concurrency` requests at once. */
export async function addPinholes(options: PinholeLoadOptions): Promise<PinholeLoadResult> {
  const endpoint = await findFirewallControl(options.descriptionUrls, options.hosts[0]!);
  const plan = planPinholes(options.count, options.hosts, options.firstPort);
  const clients = new Map(options.hosts.map((host) => [host, soapFrom(host, endpoint)]));
  let next = 0;
  let added = 0;
  let error: string | undefined;
  const started = performance.now();
  const deadline = started + options.maxMs;
  const worker = async () => {
    while (error === undefined && next < plan.length && performance.now() < deadline) {
      const pinhole = plan[next++]!;
      try {
        await clients.get(pinhole.host)!.call('AddPinhole', {
          RemoteHost: '',
          RemotePort: 0,
          InternalClient: pinhole.host,
          InternalPort: pinhole.port,
          Protocol: TCP,
          LeaseTime: options.leaseSeconds,
        });
        added += 1;
      } catch (err) {
        error ??= `AddPinhole from ${pinhole.host} port ${pinhole.port}: ${err instanceof Error ? err.message : String(err)}`;
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  const elapsedMs = performance.now() - started;
  if (error === undefined && added < plan.length) error = `only ${added} of ${plan.length} pinholes added within ${options.maxMs / 1000} s`;
  return { controlUrl: endpoint.controlUrl.href, added, elapsedMs, ...(error === undefined ? {} : { error }) };
}

function soapFrom(host: string, endpoint: ControlEndpoint): SoapClient {
  // A new connection per request, as miniupnpc sends them (and as the UPnP rows do).
  return new SoapClient(endpoint.controlUrl, endpoint.serviceType, new HttpClient(host, 'close'));
}

async function findFirewallControl(descriptionUrls: readonly string[], host: string): Promise<ControlEndpoint> {
  const http = new HttpClient(host, 'close');
  const reasons: string[] = [];
  for (const href of descriptionUrls) {
    const url = new URL(href);
    try {
      const response = await http.request(url, { method: 'GET' });
      if (response.status !== 200) throw new Error(`${href}: HTTP ${response.status}`);
      return findWanIpv6FirewallControl(response.body, url);
    } catch (err) {
      reasons.push(err instanceof Error ? err.message : String(err));
    }
  }
  throw new Error(`no WANIPv6FirewallControl service over IPv6: ${reasons.join('; ')}`);
}
