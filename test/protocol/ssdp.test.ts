import { describe, expect, it } from 'vitest';
import { deriveUdns } from '../../core/upnp/identity.js';
import { M_SEARCH_LIMITS, parseMSearch, responseWindowSeconds } from '../../core/upnp/ssdp/m-search.js';
import { buildAlive, buildByebye, buildSearchResponse, buildUpdate, type MessageContext } from '../../core/upnp/ssdp/messages.js';
import { advertisedSet, answersFor } from '../../core/upnp/ssdp/targets.js';
import { ReplyScheduler } from '../../core/upnp/ssdp/reply-scheduler.js';
import { ManualClock } from '../support/fakes.js';

const G = 'uuid:11111111-1111-5111-8111-111111111111';
const W = 'uuid:22222222-2222-5222-8222-222222222222';
const C = 'uuid:33333333-3333-5333-8333-333333333333';
const udns = { gateway: G, wan: W, wanConnection: C };

const IGD = 'urn:schemas-upnp-org:device:InternetGatewayDevice';
const WAN_DEVICE = 'urn:schemas-upnp-org:device:WANDevice';
const WAN_CONNECTION_DEVICE = 'urn:schemas-upnp-org:device:WANConnectionDevice';
const WAN_IP = 'urn:schemas-upnp-org:service:WANIPConnection';
const WAN_IPV6_FIREWALL = 'urn:schemas-upnp-org:service:WANIPv6FirewallControl';
const WAN_COMMON = 'urn:schemas-upnp-org:service:WANCommonInterfaceConfig';
const L3F = 'urn:schemas-upnp-org:service:Layer3Forwarding';

/** The full NT/USN set of an IGD of version v: per device its UDN, device type and services. */
function fullSet(v: 1 | 2): [string, string][] {
  return [
    ['upnp:rootdevice', `${G}::upnp:rootdevice`],
    [G, G],
    [`${IGD}:${v}`, `${G}::${IGD}:${v}`],
    [`${L3F}:1`, `${G}::${L3F}:1`],
    [W, W],
    [`${WAN_DEVICE}:${v}`, `${W}::${WAN_DEVICE}:${v}`],
    [`${WAN_COMMON}:1`, `${W}::${WAN_COMMON}:1`],
    [C, C],
    [`${WAN_CONNECTION_DEVICE}:${v}`, `${C}::${WAN_CONNECTION_DEVICE}:${v}`],
    [`${WAN_IP}:${v}`, `${C}::${WAN_IP}:${v}`],
    ...(v === 2 ? ([[`${WAN_IPV6_FIREWALL}:1`, `${C}::${WAN_IPV6_FIREWALL}:1`]] as [string, string][]) : []),
  ];
}

describe('advertised set', () => {
  it.each([1, 2] as const)('IGD:%i notifies the full NT/USN set of its three devices', (v) => {
    const set = advertisedSet(udns, v);
    expect(set.targets.map((t) => [t.nt, t.usn])).toEqual(fullSet(v));
  });

  it('derives three distinct UDNs that stay the same across restarts', () => {
    const nts = (seed: string) =>
      advertisedSet(deriveUdns(seed), 2)
        .targets.map((t) => t.nt)
        .filter((nt) => nt.startsWith('uuid:'));
    expect(new Set(nts('gateway-a')).size).toBe(3);
    expect(nts('gateway-a')).toEqual(nts('gateway-a'));
    expect(nts('gateway-b')).not.toEqual(nts('gateway-a'));
  });
});

describe('search matching', () => {
  const none: [string, string][] = [];
  const cases: [string, 1 | 2, [string, string][]][] = [
    ['ssdp:all', 2, fullSet(2)],
    ['ssdp:all', 1, fullSet(1)],
    ['upnp:rootdevice', 2, [['upnp:rootdevice', `${G}::upnp:rootdevice`]]],
    [G, 2, [[G, G]]],
    [W, 2, [[W, W]]],
    [C, 2, [[C, C]]],
    [`${IGD}:1`, 2, [[`${IGD}:1`, `${G}::${IGD}:1`]]],
    [`${IGD}:2`, 2, [[`${IGD}:2`, `${G}::${IGD}:2`]]],
    [`${IGD}:1`, 1, [[`${IGD}:1`, `${G}::${IGD}:1`]]],
    [`${IGD}:2`, 1, none],
    [`${IGD}:3`, 2, none],
    [`${WAN_DEVICE}:1`, 2, [[`${WAN_DEVICE}:1`, `${W}::${WAN_DEVICE}:1`]]],
    [`${WAN_DEVICE}:2`, 2, [[`${WAN_DEVICE}:2`, `${W}::${WAN_DEVICE}:2`]]],
    [`${WAN_CONNECTION_DEVICE}:1`, 2, [[`${WAN_CONNECTION_DEVICE}:1`, `${C}::${WAN_CONNECTION_DEVICE}:1`]]],
    [`${WAN_CONNECTION_DEVICE}:2`, 2, [[`${WAN_CONNECTION_DEVICE}:2`, `${C}::${WAN_CONNECTION_DEVICE}:2`]]],
    [`${WAN_CONNECTION_DEVICE}:2`, 1, none],
    [`${WAN_IP}:1`, 2, [[`${WAN_IP}:1`, `${C}::${WAN_IP}:1`]]],
    [`${WAN_IP}:2`, 2, [[`${WAN_IP}:2`, `${C}::${WAN_IP}:2`]]],
    [`${WAN_IP}:2`, 1, none],
    [`${WAN_IPV6_FIREWALL}:1`, 2, [[`${WAN_IPV6_FIREWALL}:1`, `${C}::${WAN_IPV6_FIREWALL}:1`]]],
    [`${WAN_IPV6_FIREWALL}:1`, 1, none],
    [`${WAN_IP}:3`, 2, none],
    [`${WAN_COMMON}:1`, 2, [[`${WAN_COMMON}:1`, `${W}::${WAN_COMMON}:1`]]],
    [`${WAN_COMMON}:2`, 2, none],
    [`${L3F}:1`, 2, [[`${L3F}:1`, `${G}::${L3F}:1`]]],
    [`${L3F}:2`, 2, none],
    ['urn:schemas-upnp-org:service:WANPPPConnection:1', 2, none],
    ['urn:schemas-upnp-org:device:MediaServer:1', 2, none],
    ['urn:microsoft-com:device:InternetGatewayDevice:1', 2, none],
    [`${IGD}:0`, 2, none],
    [`${IGD}:01`, 2, none],
    [`${IGD}:-1`, 2, none],
    [`${IGD}:1.0`, 2, none],
    [IGD, 2, none],
    ['uuid:44444444-4444-5444-8444-444444444444', 2, none],
    ['SSDP:ALL', 2, none],
    ['', 2, none],
  ];
  it.each(cases)('ST %j on IGD:%i', (st, version, expected) => {
    expect(answersFor(st, advertisedSet(udns, version)).map((a) => [a.st, a.usn])).toEqual(expected);
  });

  // Which description view the answer's LOCATION points at (undefined: the default one).
  const views: [string, 1 | 2, 1 | undefined][] = [
    [`${IGD}:1`, 2, 1],
    [`${WAN_DEVICE}:1`, 2, 1],
    [`${WAN_CONNECTION_DEVICE}:1`, 2, 1],
    [`${WAN_IP}:1`, 2, 1],
    [`${IGD}:2`, 2, undefined],
    [`${WAN_IP}:2`, 2, undefined],
    [`${L3F}:1`, 2, undefined],
    [`${WAN_COMMON}:1`, 2, undefined],
    ['upnp:rootdevice', 2, undefined],
    [G, 2, undefined],
    [`${IGD}:1`, 1, undefined],
    [`${WAN_IP}:1`, 1, undefined],
  ];
  it.each(views)('ST %j on IGD:%i points at the IGD view %j', (st, version, view) => {
    const answers = answersFor(st, advertisedSet(udns, version));
    expect(answers).toHaveLength(1);
    expect(answers[0]!.igdVersion).toBe(view);
  });

  it('points every ssdp:all answer at the default view', () => {
    expect(answersFor('ssdp:all', advertisedSet(udns, 2)).every((a) => a.igdVersion === undefined)).toBe(true);
  });
});

describe('M-SEARCH parsing', () => {
  const datagram = (...lines: string[]) => Buffer.from([...lines, '', ''].join('\r\n'), 'latin1');
  const START = 'M-SEARCH * HTTP/1.1';
  const HOST = 'HOST: 239.255.255.250:1900';
  const MAN = 'MAN: "ssdp:discover"';

  const accepted: [string, Buffer, { searchTarget: string; mx: string | undefined }][] = [
    ['miniupnpc', datagram(START, HOST, 'ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1', MAN, 'MX: 2'), { searchTarget: `${IGD}:1`, mx: '2' }],
    [
      'libtorrent (no spaces)',
      datagram(START, 'HOST:239.255.255.250:1900', 'ST:upnp:rootdevice', 'MAN:"ssdp:discover"', 'MX:3'),
      { searchTarget: 'upnp:rootdevice', mx: '3' },
    ],
    ['lower-case names', datagram(START, 'host: 239.255.255.250:1900', 'st: ssdp:all', 'man: "ssdp:discover"', 'mx: 1'), { searchTarget: 'ssdp:all', mx: '1' }],
    ['mixed-case names, padded values', datagram(START, 'St:   ssdp:all  ', 'Man:"ssdp:discover"', 'Mx:  0'), { searchTarget: 'ssdp:all', mx: '0' }],
    ['no MX (unicast)', datagram(START, 'HOST: 192.168.1.1:1900', MAN, 'ST: ssdp:all'), { searchTarget: 'ssdp:all', mx: undefined }],
    ['garbage MX is kept for the policy', datagram(START, MAN, 'ST: ssdp:all', 'MX: soon'), { searchTarget: 'ssdp:all', mx: 'soon' }],
    ['bare LF line ends', Buffer.from(`${START}\nMAN: "ssdp:discover"\nST: ssdp:all\nMX: 1\n\n`), { searchTarget: 'ssdp:all', mx: '1' }],
    ['HTTP/1.0', datagram('M-SEARCH * HTTP/1.0', MAN, 'ST: ssdp:all', 'MX: 1'), { searchTarget: 'ssdp:all', mx: '1' }],
    ['repeated harmless header', datagram(START, MAN, 'ST: ssdp:all', 'MX: 1', 'USER-AGENT: a', 'USER-AGENT: b'), { searchTarget: 'ssdp:all', mx: '1' }],
    [
      'lines after the blank line are not headers',
      Buffer.from(`${START}\r\n${MAN}\r\nST: ssdp:all\r\n\r\nnot a header\r\nST: other\r\n`),
      { searchTarget: 'ssdp:all', mx: undefined },
    ],
  ];
  it.each(accepted)('accepts %s', (_name, bytes, request) => {
    expect(parseMSearch(bytes)).toEqual({ ok: true, request });
  });

  const rejected: [string, Buffer, RegExp][] = [
    ['MAN missing', datagram(START, HOST, 'ST: ssdp:all', 'MX: 1'), /MAN/],
    ['MAN unquoted', datagram(START, 'MAN: ssdp:discover', 'ST: ssdp:all', 'MX: 1'), /MAN/],
    ['MAN of another kind', datagram(START, 'MAN: "ssdp:alive"', 'ST: ssdp:all', 'MX: 1'), /MAN/],
    ['ST missing', datagram(START, MAN, 'MX: 1'), /ST/],
    ['ST empty', datagram(START, MAN, 'ST:', 'MX: 1'), /ST/],
    ['ST twice', datagram(START, MAN, 'ST: ssdp:all', 'ST: upnp:rootdevice', 'MX: 1'), /duplicate ST/],
    ['MX twice', datagram(START, MAN, 'ST: ssdp:all', 'MX: 1', 'mx: 5'), /duplicate MX/],
    ['NOTIFY', datagram('NOTIFY * HTTP/1.1', HOST, 'NT: upnp:rootdevice', 'NTS: ssdp:alive'), /not an M-SEARCH/],
    ['a search response', datagram('HTTP/1.1 200 OK', 'ST: upnp:rootdevice'), /not an M-SEARCH/],
    ['lower-case method', datagram('m-search * HTTP/1.1', MAN, 'ST: ssdp:all', 'MX: 1'), /not an M-SEARCH/],
    ['header without colon', datagram(START, MAN, 'ST ssdp:all', 'MX: 1'), /malformed/],
    ['empty header name', datagram(START, MAN, ': ssdp:all', 'MX: 1'), /malformed/],
    ['binary garbage', Buffer.from([0xff, 0x00, 0x13, 0x37, 0x0d, 0x0a]), /not an M-SEARCH/],
    ['empty datagram', Buffer.alloc(0), /not an M-SEARCH/],
  ];
  it.each(rejected)('rejects %s', (_name, bytes, reason) => {
    const result = parseMSearch(bytes);
    expect(result.ok).toBe(false);
    expect(!result.ok && result.reason).toMatch(reason);
  });

  /** A valid M-SEARCH padded with X-PAD headers to exactly `size` bytes. */
  function paddedTo(size: number): Buffer {
    const head = `${START}\r\n${MAN}\r\nST: ssdp:all\r\nMX: 1\r\n`;
    let lines = '';
    let remaining = size - head.length - 2;
    while (remaining > 0) {
      const value = 'x'.repeat(Math.min(400, remaining - 'X-PAD: \r\n'.length));
      lines += `X-PAD: ${value}\r\n`;
      remaining = size - head.length - lines.length - 2;
    }
    return Buffer.from(`${head}${lines}\r\n`);
  }

  it('accepts a datagram of exactly the size limit and rejects one byte more', () => {
    const atLimit = paddedTo(M_SEARCH_LIMITS.maxDatagramBytes);
    expect(atLimit.length).toBe(M_SEARCH_LIMITS.maxDatagramBytes);
    expect(parseMSearch(atLimit).ok).toBe(true);
    const over = paddedTo(M_SEARCH_LIMITS.maxDatagramBytes + 1);
    expect(over.length).toBe(M_SEARCH_LIMITS.maxDatagramBytes + 1);
    expect(parseMSearch(over)).toEqual({ ok: false, reason: expect.stringMatching(/larger than 2048/) as unknown });
  });

  it('bounds the header count', () => {
    const filler = (n: number) => Array.from({ length: n }, (_, i) => `X-${i}: y`);
    expect(parseMSearch(datagram(START, MAN, 'ST: ssdp:all', 'MX: 1', ...filler(M_SEARCH_LIMITS.maxHeaderLines - 3))).ok).toBe(true);
    expect(parseMSearch(datagram(START, MAN, 'ST: ssdp:all', 'MX: 1', ...filler(M_SEARCH_LIMITS.maxHeaderLines - 2)))).toEqual({
      ok: false,
      reason: expect.stringMatching(/header lines/) as unknown,
    });
  });

  it('bounds the line length', () => {
    const line = (length: number) => `USER-AGENT: ${'u'.repeat(length - 'USER-AGENT: '.length)}`;
    expect(parseMSearch(datagram(START, MAN, 'ST: ssdp:all', line(M_SEARCH_LIMITS.maxLineLength))).ok).toBe(true);
    expect(parseMSearch(datagram(START, MAN, 'ST: ssdp:all', line(M_SEARCH_LIMITS.maxLineLength + 1)))).toEqual({
      ok: false,
      reason: expect.stringMatching(/longer than/) as unknown,
    });
  });
});

describe('MX semantics', () => {
  const cases: [string | undefined, 'multicast' | 'unicast', number | undefined][] = [
    [undefined, 'multicast', undefined],
    ['0', 'multicast', 0],
    ['1', 'multicast', 1],
    ['3', 'multicast', 3],
    ['5', 'multicast', 5],
    ['9', 'multicast', 5],
    ['120', 'multicast', 5],
    ['99999999999999999999999999', 'multicast', 5],
    ['', 'multicast', undefined],
    ['soon', 'multicast', undefined],
    ['-1', 'multicast', undefined],
    ['2.5', 'multicast', undefined],
    ['0x3', 'multicast', undefined],
    ['3 seconds', 'multicast', undefined],
    [undefined, 'unicast', 0],
    ['3', 'unicast', 0],
    ['soon', 'unicast', 0],
  ];
  it.each(cases)('MX %j (%s) → answer within %j s', (mx, delivery, expected) => {
    expect(responseWindowSeconds(mx, delivery)).toBe(expected);
  });
});

describe('message builders', () => {
  const context: MessageContext = {
    location: 'http://192.168.1.1:49152/rootDesc.xml',
    serverString: 'Linux/6.1 UPnP/1.1 upnpd/0.1.0',
    maxAgeSeconds: 1800,
    bootId: 42,
    configId: 7,
    host: '239.255.255.250:1900',
  };
  const lines = (...l: string[]) => [...l, '', ''].join('\r\n');

  it('builds a search response with the exact status line and every required header', () => {
    const text = buildSearchResponse({ st: `${IGD}:1`, usn: `${G}::${IGD}:1` }, context, new Date(Date.UTC(2024, 0, 2, 3, 4, 5)));
    expect(text).toBe(
      lines(
        'HTTP/1.1 200 OK',
        'CACHE-CONTROL: max-age=1800',
        'DATE: Tue, 02 Jan 2024 03:04:05 GMT',
        'EXT: ',
        'LOCATION: http://192.168.1.1:49152/rootDesc.xml',
        'SERVER: Linux/6.1 UPnP/1.1 upnpd/0.1.0',
        `ST: ${IGD}:1`,
        `USN: ${G}::${IGD}:1`,
        'BOOTID.UPNP.ORG: 42',
        'CONFIGID.UPNP.ORG: 7',
      ),
    );
  });

  it('builds ssdp:alive', () => {
    expect(buildAlive({ nt: 'upnp:rootdevice', usn: `${G}::upnp:rootdevice` }, context)).toBe(
      lines(
        'NOTIFY * HTTP/1.1',
        'HOST: 239.255.255.250:1900',
        'CACHE-CONTROL: max-age=1800',
        'LOCATION: http://192.168.1.1:49152/rootDesc.xml',
        'NT: upnp:rootdevice',
        'NTS: ssdp:alive',
        'SERVER: Linux/6.1 UPnP/1.1 upnpd/0.1.0',
        `USN: ${G}::upnp:rootdevice`,
        'BOOTID.UPNP.ORG: 42',
        'CONFIGID.UPNP.ORG: 7',
      ),
    );
  });

  it('builds ssdp:byebye', () => {
    expect(buildByebye({ nt: W, usn: W }, context)).toBe(
      lines('NOTIFY * HTTP/1.1', 'HOST: 239.255.255.250:1900', `NT: ${W}`, 'NTS: ssdp:byebye', `USN: ${W}`, 'BOOTID.UPNP.ORG: 42', 'CONFIGID.UPNP.ORG: 7'),
    );
  });

  it('builds ssdp:update with the current BOOTID and NEXTBOOTID (UDA 1.1 §1.2.4)', () => {
    expect(buildUpdate({ nt: 'upnp:rootdevice', usn: `${G}::upnp:rootdevice` }, context, 43)).toBe(
      lines(
        'NOTIFY * HTTP/1.1',
        'HOST: 239.255.255.250:1900',
        'LOCATION: http://192.168.1.1:49152/rootDesc.xml',
        'NT: upnp:rootdevice',
        'NTS: ssdp:update',
        `USN: ${G}::upnp:rootdevice`,
        'BOOTID.UPNP.ORG: 42',
        'CONFIGID.UPNP.ORG: 7',
        'NEXTBOOTID.UPNP.ORG: 43',
      ),
    );
  });

  it('names a non-standard search port in alive and responses, not in byebye', () => {
    const onPort = { ...context, searchPort: 41900 };
    const target = { nt: G, usn: G };
    expect(buildAlive(target, onPort)).toContain('\r\nSEARCHPORT.UPNP.ORG: 41900\r\n');
    expect(buildSearchResponse({ st: G, usn: G }, onPort, new Date())).toContain('\r\nSEARCHPORT.UPNP.ORG: 41900\r\n');
    expect(buildByebye(target, onPort)).not.toContain('SEARCHPORT');
  });

  it('keeps every datagram under 512 bytes (small client buffers)', () => {
    const longest = { ...context, location: 'http://192.168.100.100:65535/rootDesc.xml', bootId: 2 ** 31 - 1, configId: 2 ** 24 - 1 };
    for (const t of advertisedSet(udns, 2).targets) {
      for (const text of [
        buildAlive(t, longest),
        buildByebye(t, longest),
        buildUpdate(t, longest, 2 ** 31 - 1),
        buildSearchResponse({ st: t.nt, usn: t.usn }, longest, new Date()),
      ]) {
        expect(Buffer.byteLength(text)).toBeLessThan(512);
      }
    }
  });
});

describe('reply scheduling', () => {
  const limits = { maxPending: 4, maxPendingPerSource: 2, spacingMs: 10 };

  function setup(random = () => 0.5) {
    const clock = new ManualClock();
    const sent: { key: string; index: number; at: number }[] = [];
    const scheduler = new ReplyScheduler(limits, clock, random);
    const job = (key: string, source: string, count: number, windowMs: number) => ({
      key,
      source,
      count,
      windowMs,
      send: (index: number) => sent.push({ key, index, at: clock.now() }),
    });
    return { clock, sent, scheduler, job };
  }

  it('MX 0: answers at once', async () => {
    const { clock, sent, scheduler, job } = setup();
    const start = clock.now();
    expect(scheduler.schedule(job('a', '10.0.0.2', 1, 0))).toBe('scheduled');
    await clock.advance(0);
    expect(sent).toEqual([{ key: 'a', index: 0, at: start }]);
  });

  it.each([0, 0.5, 0.999])('delays by a random part of the MX window (random %f)', async (r) => {
    const { clock, sent, scheduler, job } = setup(() => r);
    const start = clock.now();
    scheduler.schedule(job('a', '10.0.0.2', 1, 3000));
    await clock.advance(3000);
    expect(sent).toHaveLength(1);
    expect(sent[0]!.at - start).toBeCloseTo(r * 3000, 5);
  });

  it('paces an answer set so that it ends inside the window', async () => {
    const { clock, sent, scheduler, job } = setup(() => 0.999);
    const start = clock.now();
    scheduler.schedule(job('all', '10.0.0.2', 10, 1000));
    await clock.advance(1000);
    expect(sent.map((s) => s.index)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const gaps = sent.slice(1).map((s, i) => s.at - sent[i]!.at);
    expect(gaps).toEqual(Array(9).fill(10));
    expect(sent.at(-1)!.at - start).toBeLessThanOrEqual(1000);
  });

  it('drops a copy of a pending request, and accepts it again once answered', async () => {
    const { clock, sent, scheduler, job } = setup();
    expect(scheduler.schedule(job('a', '10.0.0.2', 1, 1000))).toBe('scheduled');
    expect(scheduler.schedule(job('a', '10.0.0.2', 1, 1000))).toBe('duplicate');
    await clock.advance(1000);
    expect(sent).toHaveLength(1);
    expect(scheduler.schedule(job('a', '10.0.0.2', 1, 1000))).toBe('scheduled');
  });

  it('bounds pending requests per source and in total', async () => {
    const { clock, scheduler, job } = setup();
    expect(scheduler.schedule(job('a1', '10.0.0.2', 1, 5000))).toBe('scheduled');
    expect(scheduler.schedule(job('a2', '10.0.0.2', 1, 5000))).toBe('scheduled');
    expect(scheduler.schedule(job('a3', '10.0.0.2', 1, 5000))).toBe('too-many-pending');
    expect(scheduler.schedule(job('b1', '10.0.0.3', 1, 5000))).toBe('scheduled');
    expect(scheduler.schedule(job('c1', '10.0.0.4', 1, 5000))).toBe('scheduled');
    // Full: a source with nothing pending takes the newest place of the biggest holder (two ahead of it)…
    expect(scheduler.schedule(job('d1', '10.0.0.5', 1, 5000))).toBe('scheduled');
    expect(scheduler.size).toBe(4);
    // …but once every source holds one, nobody is two ahead: the next is refused.
    expect(scheduler.schedule(job('e1', '10.0.0.6', 1, 5000))).toBe('too-many-pending');
    await clock.advance(5000);
    expect(scheduler.size).toBe(0);
    expect(scheduler.schedule(job('e1', '10.0.0.6', 1, 5000))).toBe('scheduled');
  });

  it('never sends the reply it dropped for a fairer share, and says whose it was', async () => {
    const evicted: string[] = [];
    const { clock, sent, job } = setup();
    const scheduler = new ReplyScheduler(
      { maxPending: 2, maxPendingPerSource: 2, spacingMs: 10 },
      clock,
      () => 0.5,
      (source) => evicted.push(source),
    );
    scheduler.schedule(job('flood-1', '10.0.0.2', 1, 1000));
    scheduler.schedule(job('flood-2', '10.0.0.2', 1, 1000));
    expect(scheduler.schedule(job('victim', '10.0.0.3', 1, 1000))).toBe('scheduled');
    await clock.advance(1000);
    expect(evicted).toEqual(['10.0.0.2']);
    expect(sent.map((s) => s.key).sort()).toEqual(['flood-1', 'victim']);
  });

  it('cancels everything pending', async () => {
    const { clock, sent, scheduler, job } = setup();
    scheduler.schedule(job('a', '10.0.0.2', 10, 1000));
    await clock.advance(510);
    const before = sent.length;
    expect(before).toBeGreaterThan(0);
    scheduler.cancelAll();
    await clock.advance(5000);
    expect(sent).toHaveLength(before);
    expect(scheduler.size).toBe(0);
  });
});
