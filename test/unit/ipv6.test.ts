import { describe, expect, it } from 'vitest';
import { formatIpv6, Ipv6Lan, parseIpv6, readIpv6Addresses, type Ipv6InterfaceAddress } from '../../core/net/ipv6.js';
import { parseHost } from '../../core/upnp/http/server.js';

const GLOBAL: Ipv6InterfaceAddress = { interface: 'br-lan', address: '2001:db8:77::1', prefixLength: 64, scopeId: 4, linkLocal: false };
const ULA: Ipv6InterfaceAddress = { interface: 'br-lan', address: 'fd00:77::1', prefixLength: 48, scopeId: 4, linkLocal: false };
const LINK_LOCAL: Ipv6InterfaceAddress = { interface: 'br-lan', address: 'fe80::1', prefixLength: 64, scopeId: 4, linkLocal: true };
const GUEST: Ipv6InterfaceAddress = { interface: 'br-guest', address: '2001:db8:78::1', prefixLength: 64, scopeId: 5, linkLocal: false };

describe('IPv6 address text', () => {
  it('parses full, compressed, zoned and IPv4-embedded forms to the same 128-bit values', () => {
    expect(parseIpv6('2001:db8::1')?.value).toBe(parseIpv6('2001:0db8:0000:0000:0000:0000:0000:0001')?.value);
    expect(parseIpv6('fe80::1%br-lan')).toEqual({ value: parseIpv6('fe80::1')!.value, zone: 'br-lan' });
    expect(parseIpv6('::ffff:192.0.2.1')?.value).toBe(parseIpv6('::ffff:c000:201')?.value);
    expect(parseIpv6('::')?.value).toBe(0n);
  });

  it('refuses IPv4, names, bad zones and garbage', () => {
    for (const text of ['192.0.2.1', 'localhost', '2001:db8::1%', '2001:db8::1%a b', 'fe80::1%0123456789abcdef', '1::2::3', ':::']) {
      expect(parseIpv6(text), text).toBeUndefined();
    }
  });

  it('formats canonically (RFC 5952): lower case, the longest zero run compressed, a single zero group kept', () => {
    const roundTrip = (text: string) => formatIpv6(parseIpv6(text)!.value);
    expect(roundTrip('2001:DB8:0:0:0:0:0:1')).toBe('2001:db8::1');
    expect(roundTrip('2001:db8:0:1:0:0:0:1')).toBe('2001:db8:0:1::1');
    expect(roundTrip('2001:db8:0:1:1:1:1:1')).toBe('2001:db8:0:1:1:1:1:1');
    expect(roundTrip('0:0:0:0:0:0:0:0')).toBe('::');
    expect(roundTrip('::1')).toBe('::1');
    expect(roundTrip('fe80::')).toBe('fe80::');
  });
});

describe('Ipv6Lan: who is a LAN peer, on which interface', () => {
  const lan = new Ipv6Lan([GLOBAL, ULA, LINK_LOCAL, GUEST]);

  it('lists the on-link prefixes of the global and ULA addresses, not link-local', () => {
    expect(lan.prefixes).toEqual([
      { interface: 'br-lan', prefix: '2001:db8:77::', prefixLength: 64 },
      { interface: 'br-lan', prefix: 'fd00:77::', prefixLength: 48 },
      { interface: 'br-guest', prefix: '2001:db8:78::', prefixLength: 64 },
    ]);
  });

  it('places global and ULA peers by prefix', () => {
    expect(lan.interfaceOf('2001:db8:77::10')).toBe('br-lan');
    expect(lan.interfaceOf('2001:db8:77:0:ffff:ffff:ffff:ffff')).toBe('br-lan');
    expect(lan.interfaceOf('fd00:77:0:1234::5')).toBe('br-lan');
    expect(lan.interfaceOf('2001:db8:78::9')).toBe('br-guest');
  });

  it('places link-local peers by the zone they came in on (name or index), and only on a LAN interface', () => {
    expect(lan.interfaceOf('fe80::abcd%br-lan')).toBe('br-lan');
    expect(lan.interfaceOf('fe80::abcd%4')).toBe('br-lan');
    expect(lan.interfaceOf('fe80::abcd%wan0')).toBeUndefined();
    expect(lan.interfaceOf('fe80::abcd%9')).toBeUndefined();
    expect(lan.interfaceOf('fe80::abcd')).toBeUndefined();
  });

  it('refuses neighbours of the prefixes, the WAN, IPv4 and IPv4-mapped peers', () => {
    for (const peer of ['2001:db8:79::1', '2001:db8:ff::2', '2001:db8:77:1::1', '::1', '192.168.77.10', '::ffff:192.168.77.10', 'garbage']) {
      expect(lan.interfaceOf(peer), peer).toBeUndefined();
      expect(lan.contains(peer), peer).toBe(false);
    }
  });

  it('knows its own addresses whatever their spelling or zone', () => {
    expect(lan.isOwnAddress('2001:DB8:77:0::1')).toBe(true);
    expect(lan.isOwnAddress('fe80::1%eth0')).toBe(true);
    expect(lan.isOwnAddress('2001:db8:77::2')).toBe(false);
  });

  it('an empty LAN holds nobody', () => {
    expect(new Ipv6Lan([]).contains('2001:db8:77::10')).toBe(false);
    expect(new Ipv6Lan([]).prefixes).toEqual([]);
  });
});

describe('readIpv6Addresses (/proc/net/if_inet6)', () => {
  const table = [
    '00000000000000000000000000000001 01 80 10 80       lo',
    '20010db8007700000000000000000001 04 40 00 80   br-lan',
    'fe800000000000000000000000000001 04 40 20 80   br-lan',
    '20010db8007700000000000000000002 04 40 00 c0   br-lan',
    '20010db8007700000000000000000003 04 40 00 88   br-lan',
    'fd000077000000000000000000000001 04 30 00 a0   br-lan',
    '20010db800ff00000000000000000001 03 40 00 80     wan0',
    'not a line',
  ].join('\n');

  it('reads the usable addresses of one interface with prefix, scope id and link-local flag', () => {
    expect(readIpv6Addresses('br-lan', table)).toEqual([
      { interface: 'br-lan', address: '2001:db8:77::1', prefixLength: 64, scopeId: 4, linkLocal: false },
      { interface: 'br-lan', address: 'fe80::1', prefixLength: 64, scopeId: 4, linkLocal: true },
      // Deprecated (0x20) still works for the hosts of that prefix.
      { interface: 'br-lan', address: 'fd00:77::1', prefixLength: 48, scopeId: 4, linkLocal: false },
    ]);
  });

  it('leaves out tentative (0x40) and DAD-failed (0x08) addresses, and other interfaces', () => {
    const addresses = readIpv6Addresses('br-lan', table).map((a) => a.address);
    expect(addresses).not.toContain('2001:db8:77::2');
    expect(addresses).not.toContain('2001:db8:77::3');
    expect(readIpv6Addresses('eth9', table)).toEqual([]);
    expect(readIpv6Addresses('br-lan', '')).toEqual([]);
  });
});

describe('Host header forms', () => {
  it('accepts IPv4, bracketed IPv6, and IPv6 with a zone as RFC 6874 (%25) or raw (%)', () => {
    expect(parseHost('192.168.77.1:5000')).toEqual({ address: '192.168.77.1', ipv6: false, port: 5000 });
    expect(parseHost('[2001:db8:77::1]:5000')).toEqual({ address: '2001:db8:77::1', ipv6: true, port: 5000 });
    expect(parseHost('[fe80::1%25eth0]:5000')).toEqual({ address: 'fe80::1', ipv6: true, port: 5000 });
    expect(parseHost('[fe80::1%eth0]:5000')).toEqual({ address: 'fe80::1', ipv6: true, port: 5000 });
    expect(parseHost('[2001:db8:77::1]')).toEqual({ address: '2001:db8:77::1', ipv6: true, port: undefined });
  });

  it('refuses names, unbracketed IPv6, bad zones and bad addresses', () => {
    for (const host of [
      'gateway.lan:5000',
      '2001:db8::1:5000',
      '[2001:db8::1',
      '[fe80::1%25a b]:1',
      '[fe80::1%]:1',
      '[1::2::3]:80',
      '[192.168.1.1]:80',
      '300.1.1.1:80',
    ]) {
      expect(parseHost(host), host).toBeUndefined();
    }
  });
});
