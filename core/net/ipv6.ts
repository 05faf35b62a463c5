import { isIPv6 } from 'node:net';

/** IPv6 address arithmetic without a dependency: canonical text, prefixes, and which addresses are routable. */

/** The canonical text of an IPv6 address (RFC 5952: lower case, longest zero run as ::). */
export function canonicalIPv6(address: string): string {
  try {
    return new URL(`http://[${address}]/`).hostname.slice(1, -1);
  } catch {
    return address;
  }
}

/** 16 bytes of an IPv6 address, or undefined when it is not one. */
export function ipv6Bytes(address: string): Uint8Array | undefined {
  if (!isIPv6(address) || address.includes('%')) return undefined;
  const canonical = canonicalIPv6(address);
  const [head, tail] = canonical.includes('::') ? canonical.split('::') : [canonical, undefined];
  const words = (s: string | undefined) => (s ? s.split(':').map((w) => parseInt(w, 16)) : []);
  const front = words(head);
  const back = words(tail);
  const all = tail === undefined ? front : [...front, ...new Array<number>(8 - front.length - back.length).fill(0), ...back];
  if (all.length !== 8 || all.some((w) => Number.isNaN(w))) return undefined;
  const bytes = new Uint8Array(16);
  all.forEach((w, i) => {
    bytes[2 * i] = w >> 8;
    bytes[2 * i + 1] = w & 0xff;
  });
  return bytes;
}

/** Whether `address` lies in `prefix`/`length`. */
export function inIPv6Prefix(address: string, prefix: string, length: number): boolean {
  const a = ipv6Bytes(address);
  const p = ipv6Bytes(prefix);
  if (!a || !p) return false;
  for (let bit = 0; bit < length; bit++) {
    const mask = 0x80 >> (bit % 8);
    if ((a[bit >> 3]! & mask) !== (p[bit >> 3]! & mask)) return false;
  }
  return true;
}

/**
 * Whether an address may be a pinhole's internal client at all: a unicast address a WAN host can
 * reach (not unspecified, loopback, link-local, multicast or IPv4-mapped).
 */
export function isRoutableIPv6(address: string): boolean {
  const b = ipv6Bytes(address);
  if (!b) return false;
  if (b.every((x) => x === 0)) return false;
  if (b.slice(0, 15).every((x) => x === 0) && b[15] === 1) return false;
  if (b[0] === 0xff) return false;
  if (b[0] === 0xfe && (b[1]! & 0xc0) === 0x80) return false;
  if (b.slice(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff) return false;
  return true;
}
