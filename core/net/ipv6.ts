import { readFileSync } from 'node:fs';
import { isIPv6 } from 'node:net';

/** An IPv6 address of a LAN interface, as the kernel lists it (usable: not tentative, DAD not failed). */
export interface Ipv6InterfaceAddress {
  readonly interface: string;
  /** Canonical text (RFC 5952), without zone. */
  readonly address: string;
  /** On-link prefix length, e.g. 64. */
  readonly prefixLength: number;
  /** Index of the interface: the scope id of its link-local addresses. */
  readonly scopeId: number;
  /** fe80::/10: reachable only on this interface, named with a zone (`fe80::1%br-lan`). */
  readonly linkLocal: boolean;
}

/** An on-link prefix of a LAN interface (global or ULA), e.g. 2001:db8:77::/64 on br-lan. */
export interface Ipv6Prefix {
  readonly interface: string;
  /** The network address, canonical text. */
  readonly prefix: string;
  readonly prefixLength: number;
}

const ALL_ONES = (1n << 128n) - 1n;

/** A parsed IPv6 address: its 128-bit value and the zone after `%`, if any. */
export interface ParsedIpv6 {
  readonly value: bigint;
  readonly zone: string | undefined;
}

/** `2001:db8::1`, `fe80::1%br-lan`, `::ffff:192.0.2.1`; undefined for anything else (IPv4 included). */
export function parseIpv6(text: string): ParsedIpv6 | undefined {
  const percent = text.indexOf('%');
  const address = percent < 0 ? text : text.slice(0, percent);
  const zone = percent < 0 ? undefined : text.slice(percent + 1);
  if (zone !== undefined && !/^[\w.@:-]{1,15}$/.test(zone)) return undefined;
  if (!isIPv6(address)) return undefined;
  let groups = address;
  const lastColon = groups.lastIndexOf(':');
  const tail = groups.slice(lastColon + 1);
  if (tail.includes('.')) {
    const [a, b, c, d] = tail.split('.').map(Number) as [number, number, number, number];
    groups = `${groups.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, rest] = groups.split('::') as [string, string | undefined];
  const left = head === '' ? [] : head.split(':');
  const right = rest === undefined || rest === '' ? [] : rest.split(':');
  const all = rest === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  const value = all.reduce((acc, group) => (acc << 16n) | BigInt(parseInt(group, 16)), 0n);
  return { value, zone };
}

/** The canonical text of a 128-bit value (RFC 5952: lower case, longest run of zero groups as `::`). */
export function formatIpv6(value: bigint): string {
  const groups = Array.from({ length: 8 }, (_, i) => Number((value >> BigInt(112 - 16 * i)) & 0xffffn));
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) [bestStart, bestLength] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}

function prefixMask(prefixLength: number): bigint {
  return prefixLength === 0 ? 0n : (ALL_ONES << BigInt(128 - prefixLength)) & ALL_ONES;
}

export function isLinkLocalIpv6(value: bigint): boolean {
  return value >> 118n === 0x3fan;
}

/** Whether the text is an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`): an IPv4 peer on a dual-stack socket. */
export function isIpv4Mapped(value: bigint): boolean {
  return value >> 32n === 0xffffn;
}

/**
 * The IPv6 side of the LAN: the gateway's usable IPv6 addresses on the LAN interfaces and the
 * on-link prefixes they give. Who is a LAN peer: a global or ULA address inside one of those
 * prefixes, or a link-local address whose zone (the interface the packet came in on, as the
 * kernel reports it for link-local peers) is a LAN interface. A link-local address without zone
 * says nothing about where it is, and is not a LAN peer.
 */
export class Ipv6Lan {
  readonly prefixes: readonly Ipv6Prefix[];
  private readonly networks: readonly { readonly interface: string; readonly network: bigint; readonly mask: bigint }[];
  private readonly zones: ReadonlyMap<string, string>;
  private readonly own: ReadonlySet<bigint>;

  constructor(readonly addresses: readonly Ipv6InterfaceAddress[]) {
    const global = addresses.filter((a) => !a.linkLocal);
    this.networks = global.map((a) => {
      const mask = prefixMask(a.prefixLength);
      return { interface: a.interface, network: parseIpv6(a.address)!.value & mask, mask };
    });
    const seen = new Set<string>();
    this.prefixes = this.networks
      .map((n) => ({ interface: n.interface, prefix: formatIpv6(n.network), prefixLength: 128 - bitLength(~n.mask & ALL_ONES) }))
      .filter((p) => !seen.has(`${p.interface} ${p.prefix}/${p.prefixLength}`) && seen.add(`${p.interface} ${p.prefix}/${p.prefixLength}`));
    // Zones as the kernel names them (the interface name) and as a number (the scope id).
    this.zones = new Map(addresses.flatMap((a) => [[a.interface, a.interface] as const, [String(a.scopeId), a.interface] as const]));
    this.own = new Set(addresses.map((a) => parseIpv6(a.address)!.value));
  }

  /** The LAN interfaces that have IPv6 addresses. */
  get interfaces(): string[] {
    return [...new Set(this.addresses.map((a) => a.interface))];
  }

  /** The LAN interface a peer address is on, or undefined when it is not a LAN peer (see the class). */
  interfaceOf(peer: string): string | undefined {
    const parsed = parseIpv6(peer);
    if (!parsed || isIpv4Mapped(parsed.value)) return undefined;
    if (isLinkLocalIpv6(parsed.value)) return parsed.zone === undefined ? undefined : this.zones.get(parsed.zone);
    return this.networks.find((n) => (parsed.value & n.mask) === n.network)?.interface;
  }

  contains(peer: string): boolean {
    return this.interfaceOf(peer) !== undefined;
  }

  /** Whether `address` (zone ignored) is one of the gateway's own LAN IPv6 addresses. */
  isOwnAddress(address: string): boolean {
    const parsed = parseIpv6(address);
    return parsed !== undefined && this.own.has(parsed.value);
  }

  /** One line per address, sorted (to tell whether the LAN changed). */
  describe(): string[] {
    return this.addresses.map((a) => `${a.interface}:${a.address}/${a.prefixLength}`).sort();
  }
}

function bitLength(n: bigint): number {
  return n === 0n ? 0 : n.toString(2).length;
}

/** /proc/net/if_inet6 flags (linux/if_addr.h) of addresses that cannot be used yet or at all. */
const IFA_F_DADFAILED = 0x08;
const IFA_F_TENTATIVE = 0x40;

/**
 * The usable IPv6 addresses of an interface from /proc/net/if_inet6 (which, unlike
 * os.networkInterfaces(), says which are still tentative: such an address cannot be bound until
 * duplicate address detection ends, and the kernel's address event when it does lets the daemon
 * look again). Empty when IPv6 is off on the host.
 */
export function readIpv6Addresses(iface: string, table: string = readIfInet6()): Ipv6InterfaceAddress[] {
  const addresses: Ipv6InterfaceAddress[] = [];
  for (const line of table.split('\n')) {
    const fields = line.trim().split(/\s+/);
    if (fields.length !== 6 || fields[5] !== iface || !/^[0-9a-f]{32}$/.test(fields[0]!)) continue;
    const flags = parseInt(fields[4]!, 16);
    if (flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED)) continue;
    const value = BigInt(`0x${fields[0]!}`);
    addresses.push({
      interface: iface,
      address: formatIpv6(value),
      prefixLength: parseInt(fields[2]!, 16),
      scopeId: parseInt(fields[1]!, 16),
      linkLocal: isLinkLocalIpv6(value),
    });
  }
  return addresses;
}

function readIfInet6(): string {
  try {
    return readFileSync('/proc/net/if_inet6', 'utf8');
  } catch {
    return '';
  }
}

/**
 * The host part of a URL for an address: `[2001:db8::1]`. A link-local address is written without
 * its zone: the zone names an interface of this host, which means nothing (or another interface)
 * on the client; miniupnpc, for one, takes the scope from the interface the SSDP answer came in on
 * unless the URL names a zone, which it then looks up among its own interfaces.
 */
export function urlHost(address: string): string {
  return address.includes(':') ? `[${address}]` : address;
}

// For IPv6 pinholes: which addresses a pinhole may open, and the one text form rules are compared in.

/** The canonical text of an IPv6 address (RFC 5952); the text itself when it is not one (or has a zone). */
export function canonicalIPv6(address: string): string {
  const parsed = parseIpv6(address);
  return parsed && parsed.zone === undefined ? formatIpv6(parsed.value) : address;
}

/** Whether `address` lies in `prefix`/`length`. */
export function inIPv6Prefix(address: string, prefix: string, length: number): boolean {
  const a = parseIpv6(address);
  const p = parseIpv6(prefix);
  if (!a || !p || a.zone !== undefined) return false;
  const mask = prefixMask(length);
  return (a.value & mask) === (p.value & mask);
}

/**
 * Whether an address may be a pinhole's internal client at all: a unicast address a WAN host can
 * reach (not unspecified, loopback, link-local, multicast or IPv4-mapped; no zone).
 */
export function isRoutableIPv6(address: string): boolean {
  const parsed = parseIpv6(address);
  if (!parsed || parsed.zone !== undefined) return false;
  const { value } = parsed;
  return value > 1n && value >> 120n !== 0xffn && !isLinkLocalIpv6(value) && !isIpv4Mapped(value);
}
