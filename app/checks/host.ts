import { createSocket } from 'node:dgram';
import { readFile } from 'node:fs/promises';
import { isIPv4 } from 'node:net';
import type { ResolvedConfig } from '../../core/config/schema.js';
import type { InterfaceAddress, NetworkInfo } from '../../core/net/network-info.js';
import { SubnetSet } from '../../core/net/network-info.js';
import type { Finding } from '../../core/plugins/types.js';
import { SSDP_MULTICAST_ADDRESS, SSDP_PORT } from '../../core/upnp/ssdp/constants.js';

/**
 * Checks of the host a gateway daemon runs on, as pure functions of what was read (so that each
 * is tested without the host), plus the small readers that read it.
 */

/** Where the kernel says whether it forwards IPv4 (per network namespace). */
export const IP_FORWARD_SYSCTL = '/proc/sys/net/ipv4/ip_forward';
/** Where the kernel says whether it forwards IPv6 (per network namespace). */
export const IPV6_FORWARD_SYSCTL = '/proc/sys/net/ipv6/conf/all/forwarding';

/** One family's forwarding switch: what a 0 there breaks, and its fix. */
interface ForwardingSwitch {
  readonly check: string;
  readonly family: string;
  readonly path: string;
  readonly sysctl: string;
  readonly breaks: string;
  readonly alternative: string;
}

const FORWARDING: Readonly<Record<'ipv4' | 'ipv6', ForwardingSwitch>> = {
  ipv4: {
    check: 'ip-forwarding',
    family: 'IPv4',
    path: IP_FORWARD_SYSCTL,
    sysctl: 'net.ipv4.ip_forward',
    breaks: 'no mapping can work (clients are told it succeeded and nothing arrives)',
    alternative: '',
  },
  ipv6: {
    check: 'ipv6-forwarding',
    family: 'IPv6',
    path: IPV6_FORWARD_SYSCTL,
    sysctl: 'net.ipv6.conf.all.forwarding',
    breaks: 'no pinhole can work (clients are told it opened and nothing arrives)',
    alternative: ', or ipv6: false to serve IPv4 only',
  },
};

function forwardingFinding(value: string | undefined, s: ForwardingSwitch): Finding {
  const check = s.check;
  if (value === undefined) return { check, severity: 'warning', message: `cannot read ${s.path}: whether this host forwards ${s.family} is unknown` };
  if (value.trim() === '1') return { check, severity: 'ok', message: `${s.sysctl} is 1: this host forwards ${s.family}` };
  return {
    check,
    severity: 'error',
    message: `${s.sysctl} is 0: this host forwards no ${s.family} packet, so ${s.breaks}`,
    fix: `sysctl -w ${s.sysctl}=1 (and ${s.sysctl}=1 in /etc/sysctl.d/ to keep it)${s.alternative}`,
  };
}

export function ipForwardingFinding(value: string | undefined): Finding {
  return forwardingFinding(value, FORWARDING.ipv4);
}

/** IPv6 forwarding, checked where upnpd opens IPv6 pinholes (a backend with pinholes, `ipv6` on). */
export function ipv6ForwardingFinding(value: string | undefined): Finding {
  return forwardingFinding(value, FORWARDING.ipv6);
}

/**
 * Address ranges that miniupnpc (upnpc, Transmission, many games) and libp2p's nat-port-mapper
 * treat as "not connected" or double NAT when the gateway reports them as its external address.
 */
const NON_PUBLIC_RANGES: ReadonlyArray<readonly [cidr: string, what: string]> = [
  ['0.0.0.0/8', 'a "this network" address'],
  ['10.0.0.0/8', 'a private address (RFC 1918)'],
  ['100.64.0.0/10', 'a carrier-grade NAT address (RFC 6598)'],
  ['127.0.0.0/8', 'a loopback address'],
  ['169.254.0.0/16', 'a link-local address'],
  ['172.16.0.0/12', 'a private address (RFC 1918)'],
  ['192.0.0.0/24', 'an IETF protocol assignment'],
  ['192.0.2.0/24', 'a documentation address (TEST-NET-1)'],
  ['192.168.0.0/16', 'a private address (RFC 1918)'],
  ['198.18.0.0/15', 'a benchmarking address'],
  ['198.51.100.0/24', 'a documentation address (TEST-NET-2)'],
  ['203.0.113.0/24', 'a documentation address (TEST-NET-3)'],
  ['224.0.0.0/3', 'a multicast or reserved address'],
];

const RANGES = NON_PUBLIC_RANGES.map(([cidr, what]) => {
  const [address = '', length = '32'] = cidr.split('/');
  return { set: new SubnetSet([{ interface: '', address, prefixLength: Number(length) }]), what };
});

/** The external address's class: undefined for a public address, else what it is. */
export function nonPublicKind(address: string): string | undefined {
  return RANGES.find((range) => range.set.contains(address))?.what;
}

export function wanAddressFinding(externalAddress: string | undefined, where: string, dryRun: boolean): Finding {
  const check = 'wan-address';
  if (!externalAddress) {
    return {
      check,
      severity: 'warning',
      message: `no external IPv4 address (${where}): every mapping action answers 501 until there is one`,
      fix: 'set `wan` (or --wan IFACE) to the interface that holds the public address, or `externalIp` (--external-ip ADDR)',
    };
  }
  const kind = nonPublicKind(externalAddress);
  if (!kind) return { check, severity: 'ok', message: `the external address ${externalAddress} is public` };
  return {
    check,
    severity: dryRun ? 'ok' : 'warning',
    message:
      `the external address ${externalAddress} (${where}) is ${kind}: this gateway is behind another NAT, so mapped ports are not reachable from the internet, ` +
      'and miniupnpc-based clients (upnpc, Transmission, many games) and libp2p refuse the gateway as "not connected" or double NAT; ' +
      'NAT-PMP/PCP clients do not check this (Transmission falls back to NAT-PMP, which upnpd serves unless `natPmp: false`)',
    fix: 'get a public address on the WAN interface (bridge mode on the upstream router), or if this host has one elsewhere set `externalIp`',
  };
}

export function lanAddressFindings(config: Pick<ResolvedConfig, 'lan'>, network: NetworkInfo): Finding[] {
  return config.lan.map((iface) => {
    const addresses = network.ipv4Addresses(iface);
    if (addresses.length > 0)
      return {
        check: 'lan-address',
        severity: 'ok',
        message: `LAN interface ${iface} has ${addresses.map((a) => `${a.address}/${a.prefixLength}`).join(', ')}`,
      };
    return {
      check: 'lan-address',
      severity: 'error',
      message: `LAN interface "${iface}" does not exist, is down or has no IPv4 address: upnpd cannot serve it (SSDP and HTTP bind to its addresses)`,
      fix: `give ${iface} an IPv4 address (ip addr add ADDR/PREFIX dev ${iface}), or remove it from \`lan\``,
    };
  });
}

/** A socket bound on this host, as /proc/net/{tcp,udp} list it. */
export interface BoundPort {
  readonly protocol: 'tcp' | 'udp';
  readonly address: string;
  readonly port: number;
}

const TCP_LISTEN = '0A';

/** The listening TCP or bound UDP sockets of one /proc/net/tcp or /proc/net/udp table (IPv4). */
export function parseProcNet(protocol: 'tcp' | 'udp', table: string): BoundPort[] {
  const bound: BoundPort[] = [];
  for (const line of table.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    const [local, , state] = [fields[1], fields[2], fields[3]];
    if (!local || (protocol === 'tcp' && state !== TCP_LISTEN)) continue;
    const [hexAddress = '', hexPort = ''] = local.split(':');
    if (hexAddress.length !== 8) continue;
    const bytes = [6, 4, 2, 0].map((i) => parseInt(hexAddress.slice(i, i + 2), 16));
    bound.push({ protocol, address: bytes.join('.'), port: parseInt(hexPort, 16) });
  }
  return bound;
}

export async function readBoundPorts(): Promise<BoundPort[]> {
  const read = async (protocol: 'tcp' | 'udp') => parseProcNet(protocol, await readFile(`/proc/net/${protocol}`, 'utf8').catch(() => ''));
  return [...(await read('tcp')), ...(await read('udp'))];
}

/** Whether upnpd can bind its ports on its LAN addresses (read before it binds them). */
export function portFindings(bound: readonly BoundPort[], lan: readonly InterfaceAddress[], httpPort: number): Finding[] {
  const on = (protocol: 'tcp' | 'udp', port: number) =>
    bound.filter((b) => b.protocol === protocol && b.port === port && (b.address === '0.0.0.0' || lan.some((a) => a.address === b.address)));
  const findings: Finding[] = [];
  if (httpPort !== 0) {
    const taken = on('tcp', httpPort);
    findings.push(
      taken.length > 0
        ? {
            check: 'http-port',
            severity: 'error',
            message: `TCP port ${httpPort} is already taken on ${taken.map((b) => b.address).join(', ')}: upnpd cannot serve its descriptions and control URL there`,
            fix: `stop what listens on ${httpPort} (ss -ltnp 'sport = :${httpPort}'), or choose another \`httpPort\` (0: any free port)`,
          }
        : { check: 'http-port', severity: 'ok', message: `TCP port ${httpPort} is free` },
    );
  }
  const ssdp = on('udp', SSDP_PORT);
  findings.push(
    ssdp.length > 0
      ? {
          check: 'ssdp-port',
          severity: 'warning',
          message: `UDP port ${SSDP_PORT} (SSDP) is already bound on ${ssdp.map((b) => b.address).join(', ')}: another SSDP service runs here (a second IGD daemon such as miniupnpd?), and clients may find it instead of upnpd`,
          fix: `find it with ss -lunp 'sport = :${SSDP_PORT}' and stop it if it is an IGD`,
        }
      : { check: 'ssdp-port', severity: 'ok', message: `UDP port ${SSDP_PORT} is free` },
  );
  return findings;
}

/** An answer to our M-SEARCH: who answered, and the device it names. */
export interface IgdAnswer {
  readonly from: string;
  readonly usn: string;
  readonly server: string;
  readonly location: string;
}

/** Bounds of the one discovery upnpd makes at start: one query per LAN address, answers awaited this long. */
export const IGD_PROBE = { waitMs: 1_500, mx: 1, maxAnswers: 32 } as const;

/** Asks the LAN once for Internet Gateway Devices, from each LAN address; resolves with the answers. */
export function probeIgds(lan: readonly InterfaceAddress[], waitMs: number = IGD_PROBE.waitMs): Promise<IgdAnswer[]> {
  const query =
    `M-SEARCH * HTTP/1.1\r\nHOST: ${SSDP_MULTICAST_ADDRESS}:${SSDP_PORT}\r\nMAN: "ssdp:discover"\r\n` +
    `MX: ${IGD_PROBE.mx}\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n\r\n`;
  const answers: IgdAnswer[] = [];
  const sockets = lan
    .filter((a) => isIPv4(a.address))
    .map((address) => {
      const socket = createSocket({ type: 'udp4' });
      socket.on('error', () => socket.close());
      socket.on('message', (message, remote) => {
        if (answers.length >= IGD_PROBE.maxAnswers) return;
        const header = (name: string) => new RegExp(`^${name}:[ \\t]*(.*)$`, 'im').exec(message.toString('latin1'))?.[1]?.trim() ?? '';
        answers.push({ from: remote.address, usn: header('USN'), server: header('SERVER'), location: header('LOCATION') });
      });
      socket.bind(0, address.address, () => {
        try {
          socket.setMulticastInterface(address.address);
          socket.send(query, SSDP_PORT, SSDP_MULTICAST_ADDRESS);
        } catch {
          socket.close();
        }
      });
      return socket;
    });
  return new Promise((resolve) =>
    setTimeout(() => {
      for (const socket of sockets) {
        try {
          socket.close();
        } catch {
          // already closed after an error
        }
      }
      resolve(answers);
    }, waitMs).unref(),
  );
}

/** Another IGD on the LAN: answers that are not upnpd's own (its UDNs). */
export function otherIgdFinding(answers: readonly IgdAnswer[], ownUdns: readonly string[]): Finding {
  const others = answers.filter((a) => !ownUdns.some((udn) => a.usn.startsWith(udn)));
  const check = 'other-igd';
  if (others.length === 0) return { check, severity: 'ok', message: 'no other Internet Gateway Device answered on the LAN' };
  const who = [...new Set(others.map((a) => `${a.from} (${a.server || 'no SERVER header'}, ${a.location || 'no LOCATION'})`))].join('; ');
  return {
    check,
    severity: 'warning',
    message: `another Internet Gateway Device answers on the LAN: ${who}. Clients may map ports on it instead of upnpd, and their traffic then never reaches them`,
    fix: 'stop the other IGD (e.g. a miniupnpd left running: systemctl disable --now miniupnpd), or UPnP on the upstream router if it is on this LAN',
  };
}
