import { createSocket } from 'node:dgram';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Ipv6Lan, readIpv6Addresses, type Ipv6InterfaceAddress } from '../../core/net/ipv6.js';
import { SsdpAdvertiser, preferredLocation } from '../../core/upnp/ssdp/advertiser.js';
import { describeRequiring } from '../support/requirements.js';
import { testAdvertiserOptions } from '../support/ssdp-options.js';

// SSDP over IPv6 on loopback (::1, as in dry-run): unicast M-SEARCH answered from ::1 with an
// IPv6 LOCATION, and the M-SEARCH rate limit keyed by the IPv6 source. Multicast on ff02::c and
// ff05::c, link-local zones and sources outside the prefixes are tested in the namespace testbed.

const LOOPBACK_IPV6 = readIpv6Addresses('lo').filter((a) => a.address === '::1');
const SEARCH = ['M-SEARCH * HTTP/1.1', 'HOST: [FF02::C]:1900', 'MAN: "ssdp:discover"', 'MX: 1', 'ST: upnp:rootdevice', '', ''].join('\r\n');
const REPLY_WAIT_MS = 300;

async function freeUdpPort(): Promise<number> {
  const socket = createSocket('udp6');
  await new Promise<void>((resolve) => socket.bind({ address: '::1', port: 0 }, resolve));
  const { port } = socket.address();
  await new Promise<void>((resolve) => socket.close(resolve));
  return port;
}

/** Sends `count` searches to host:port from a fresh socket and returns the answers' texts. */
async function search(type: 'udp4' | 'udp6', host: string, port: number, count = 1): Promise<string[]> {
  const socket = createSocket(type);
  const replies: string[] = [];
  socket.on('message', (msg) => replies.push(msg.toString('latin1')));
  await new Promise<void>((resolve) => socket.bind({ address: host, port: 0 }, resolve));
  for (let i = 0; i < count; i++) socket.send(SEARCH, port, host);
  await sleep(REPLY_WAIT_MS);
  await new Promise<void>((resolve) => socket.close(resolve));
  return replies;
}

describeRequiring('SSDP advertiser over IPv6 on loopback', Promise.resolve(LOOPBACK_IPV6.length === 0 ? 'no ::1 on this host (IPv6 off)' : undefined), () => {
  let port: number;
  let advertiser: SsdpAdvertiser;

  beforeAll(async () => {
    port = await freeUdpPort();
    advertiser = new SsdpAdvertiser({
      ...testAdvertiserOptions(port),
      ipv6: new Ipv6Lan(LOOPBACK_IPV6),
      mSearchRate: { burst: 1, perSecond: 0.001, reason: 'test' },
    });
    await advertiser.start();
  });
  afterAll(async () => {
    await advertiser?.stop();
  });

  it('answers a unicast M-SEARCH to ::1 with the IPv6 LOCATION and the same BOOTID and CONFIGID', async () => {
    const [reply, ...more] = await search('udp6', '::1', port);
    expect(more).toEqual([]);
    expect(reply).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(reply).toContain('\r\nLOCATION: http://[::1]:5555/rootDesc.xml\r\n');
    expect(reply).toContain('\r\nBOOTID.UPNP.ORG: 17\r\n');
    expect(reply).toContain('\r\nCONFIGID.UPNP.ORG: 3\r\n');
  });

  it('limits searches per IPv6 source, and an IPv4 source has its own budget', async () => {
    expect(await search('udp6', '::1', port, 3)).toEqual([]);
    const v4 = await search('udp4', '127.0.0.1', port);
    expect(v4).toHaveLength(1);
    expect(v4[0]).toContain('\r\nLOCATION: http://127.0.0.1:5555/rootDesc.xml\r\n');
  });
});

describe('the IPv6 LOCATION of an interface', () => {
  const address = (text: string, linkLocal = false): Ipv6InterfaceAddress => ({ interface: 'br-lan', address: text, prefixLength: 64, scopeId: 4, linkLocal });
  const linkLocal = address('fe80::1', true);
  const global = address('2001:db8:77::1');
  const ula = address('fd00:77::1');

  it('names a ULA first (stable when the delegated prefix changes), then a global address, then link-local', () => {
    expect(preferredLocation('br-lan', [linkLocal, global, ula])).toBe(ula);
    expect(preferredLocation('br-lan', [linkLocal, global])).toBe(global);
    expect(preferredLocation('br-lan', [linkLocal])).toBe(linkLocal);
  });

  it('names only an address of that interface', () => {
    expect(preferredLocation('br-lan', [{ ...ula, interface: 'br-guest' }, linkLocal])).toBe(linkLocal);
  });
});
