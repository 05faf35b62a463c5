import { Socket, createSocket } from 'node:dgram';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { UpnpdError } from '../../core/errors.js';
import { SsdpAdvertiser } from '../../core/upnp/ssdp/advertiser.js';
import { SSDP_MULTICAST_ADDRESS } from '../../core/upnp/ssdp/constants.js';
import { RecordingLogger } from '../support/fakes.js';
import { TEST_UDNS, testAdvertiserOptions } from '../support/ssdp-options.js';

// Everything here stays on loopback: the advertiser serves 127.0.0.1/32, so 127.0.0.2 is a
// requester outside the LAN subnets.
const { gateway: G, wan: W, wanConnection: C } = TEST_UDNS;
const IGD = 'urn:schemas-upnp-org:device:InternetGatewayDevice';
const REPLY_WAIT_MS = 300;

interface Reply {
  readonly text: string;
  readonly from: string;
  readonly at: number;
}

async function freeUdpPort(): Promise<number> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind({ address: '127.0.0.1', port: 0 }, resolve));
  const { port } = socket.address();
  await new Promise<void>((resolve) => socket.close(resolve));
  return port;
}

function mSearch(...headers: string[]): string {
  return ['M-SEARCH * HTTP/1.1', ...headers, '', ''].join('\r\n');
}

/** Sends datagrams to the advertiser from `from` and collects what comes back for a while. */
async function exchange(port: number, datagrams: (string | Buffer)[], from = '127.0.0.1', waitMs = REPLY_WAIT_MS, to = '127.0.0.1'): Promise<Reply[]> {
  const socket = createSocket('udp4');
  const replies: Reply[] = [];
  socket.on('message', (msg, peer) => replies.push({ text: msg.toString('latin1'), from: `${peer.address}:${peer.port}`, at: performance.now() }));
  // An unreachable port (nothing bound there) is an ICMP error on this socket: nothing came back.
  socket.on('error', () => undefined);
  await new Promise<void>((resolve) => socket.bind({ address: from, port: 0 }, resolve));
  for (const d of datagrams) socket.send(d, port, to);
  await sleep(waitMs);
  await new Promise<void>((resolve) => socket.close(resolve));
  return replies;
}

function pick(headers: Map<string, string>, ...names: string[]): Record<string, string | undefined> {
  return Object.fromEntries(names.map((n) => [n, headers.get(n)]));
}

function headersOf(text: string): { statusLine: string; headers: Map<string, string> } {
  const [statusLine, ...rest] = text.split('\r\n');
  const headers = new Map<string, string>();
  for (const line of rest.filter(Boolean)) {
    const colon = line.indexOf(':');
    headers.set(line.slice(0, colon).toUpperCase(), line.slice(colon + 1).trim());
  }
  return { statusLine: statusLine!, headers };
}

describe('SSDP advertiser on loopback (unicast M-SEARCH)', () => {
  let port: number;
  let advertiser: SsdpAdvertiser;

  beforeAll(async () => {
    port = await freeUdpPort();
    advertiser = new SsdpAdvertiser(testAdvertiserOptions(port));
    await advertiser.start();
  });
  afterAll(async () => {
    await advertiser?.stop();
  });

  it('answers a unicast search without MX at once, from the LAN address, with every required header', async () => {
    const sentAt = performance.now();
    const replies = await exchange(port, [mSearch(`HOST: 127.0.0.1:${port}`, 'MAN: "ssdp:discover"', `ST: ${IGD}:2`)]);
    expect(replies).toHaveLength(1);
    const reply = replies[0]!;
    expect(reply.from).toBe(`127.0.0.1:${port}`);
    expect(reply.at - sentAt).toBeLessThan(REPLY_WAIT_MS);
    const { statusLine, headers } = headersOf(reply.text);
    expect(statusLine).toBe('HTTP/1.1 200 OK');
    expect(Object.fromEntries(headers)).toEqual({
      'CACHE-CONTROL': 'max-age=1800',
      DATE: expect.stringMatching(/GMT$/) as unknown,
      EXT: '',
      LOCATION: 'http://127.0.0.1:5555/rootDesc.xml',
      SERVER: 'Linux/6.1 UPnP/1.1 upnpd/0.1.0',
      ST: `${IGD}:2`,
      USN: `${G}::${IGD}:2`,
      'BOOTID.UPNP.ORG': '17',
      'CONFIGID.UPNP.ORG': '3',
      'SEARCHPORT.UPNP.ORG': String(port),
    });
    expect(Math.abs(Date.parse(headers.get('DATE')!) - Date.now())).toBeLessThan(5000);
    expect(reply.text.endsWith('\r\n\r\n')).toBe(true);
  });

  it("answers an IGD:1 search with IGD:1 and the IGD:1 view, and libtorrent's spaceless headers", async () => {
    const replies = await exchange(port, [
      mSearch('MAN: "ssdp:discover"', `ST: ${IGD}:1`, 'MX: 2'),
      mSearch('Host:127.0.0.1', 'St:upnp:rootdevice', 'Man:"ssdp:discover"', 'Mx:3'),
    ]);
    const answered = replies.map((r) => {
      const { headers } = headersOf(r.text);
      return [headers.get('ST'), headers.get('USN'), headers.get('LOCATION')];
    });
    expect(answered).toEqual(
      expect.arrayContaining([
        [`${IGD}:1`, `${G}::${IGD}:1`, 'http://127.0.0.1:5555/rootDesc1.xml'],
        ['upnp:rootdevice', `${G}::upnp:rootdevice`, 'http://127.0.0.1:5555/rootDesc.xml'],
      ]),
    );
    expect(replies).toHaveLength(2);
  });

  it('answers ssdp:all with the whole set, paced', async () => {
    const replies = await exchange(port, [mSearch('MAN: "ssdp:discover"', 'ST: ssdp:all')], '127.0.0.1', 600);
    expect(replies).toHaveLength(11);
    const sts = replies.map((r) => headersOf(r.text).headers.get('ST'));
    expect(new Set(sts).size).toBe(11);
    expect(sts).toEqual(expect.arrayContaining(['upnp:rootdevice', G, W, C, `${IGD}:2`, 'urn:schemas-upnp-org:service:WANIPv6FirewallControl:1']));
    // Eleven datagrams 10 ms apart: not one burst.
    expect(replies.at(-1)!.at - replies[0]!.at).toBeGreaterThanOrEqual(80);
  });

  it('ignores a requester outside the LAN subnets', async () => {
    const request = mSearch('MAN: "ssdp:discover"', 'ST: upnp:rootdevice');
    expect(await exchange(port, [request], '127.0.0.2')).toHaveLength(0);
    expect(await exchange(port, [request], '127.0.0.1')).toHaveLength(1);
  });

  it('ignores invalid requests and keeps answering', async () => {
    const replies = await exchange(port, [
      mSearch('MAN: ssdp:discover', 'ST: upnp:rootdevice'),
      mSearch('MAN: "ssdp:discover"', 'ST: urn:schemas-upnp-org:service:WANPPPConnection:1'),
      Buffer.concat([Buffer.from(mSearch('MAN: "ssdp:discover"', 'ST: upnp:rootdevice')), Buffer.alloc(2048, 0x20)]),
      Buffer.from([0xde, 0xad, 0xbe, 0xef]),
      mSearch('MAN: "ssdp:discover"', `ST: ${W}`),
    ]);
    expect(replies.map((r) => headersOf(r.text).headers.get('ST'))).toEqual([W]);
  });
});

describe('SSDP advertiser lifecycle', () => {
  /** Binding without SO_REUSEADDR fails while any socket still holds address:port. */
  async function canBindExclusively(address: string, port: number): Promise<boolean> {
    const socket = createSocket({ type: 'udp4', reuseAddr: false });
    const bound = await new Promise<boolean>((resolve) => {
      socket.once('error', () => resolve(false));
      socket.bind({ address, port }, () => resolve(true));
    });
    await new Promise<void>((resolve) => socket.close(() => resolve()));
    return bound;
  }

  it('stops answering and closes its sockets on stop, and stop is safe to repeat', async () => {
    const port = await freeUdpPort();
    const advertiser = new SsdpAdvertiser(testAdvertiserOptions(port));
    await advertiser.start();
    const request = mSearch('MAN: "ssdp:discover"', 'ST: upnp:rootdevice');
    expect(await exchange(port, [request])).toHaveLength(1);
    expect(await canBindExclusively('127.0.0.1', port)).toBe(false);
    await advertiser.stop();
    await advertiser.stop();
    expect(await exchange(port, [request])).toHaveLength(0);
    expect(await canBindExclusively('127.0.0.1', port)).toBe(true);
    expect(await canBindExclusively('239.255.255.250', port)).toBe(true);
  });

  it('serves an address added while running and stops serving one removed, the others answering all along with the next BOOTID', async () => {
    const port = await freeUdpPort();
    const first = { interface: 'lo', address: '127.0.0.1', prefixLength: 32 };
    const second = { interface: 'lo', address: '127.0.0.2', prefixLength: 32 };
    const advertiser = new SsdpAdvertiser(testAdvertiserOptions(port));
    const search = (to: string, from: string) =>
      exchange(port, [mSearch(`HOST: ${to}:${port}`, 'MAN: "ssdp:discover"', 'ST: upnp:rootdevice')], from, REPLY_WAIT_MS, to).then((replies) =>
        replies.map((r) => ({ from: r.from, ...pick(headersOf(r.text).headers, 'LOCATION', 'BOOTID.UPNP.ORG') })),
      );
    await advertiser.start();
    try {
      expect(await search('127.0.0.2', '127.0.0.2')).toEqual([]);
      await advertiser.update([first, second], undefined, 18);
      expect(await search('127.0.0.2', '127.0.0.2')).toEqual([
        { from: `127.0.0.2:${port}`, LOCATION: 'http://127.0.0.2:5555/rootDesc.xml', 'BOOTID.UPNP.ORG': '18' },
      ]);
      expect(await search('127.0.0.1', '127.0.0.1')).toEqual([
        { from: `127.0.0.1:${port}`, LOCATION: 'http://127.0.0.1:5555/rootDesc.xml', 'BOOTID.UPNP.ORG': '18' },
      ]);
      await advertiser.update([first], undefined, 19);
      expect(await search('127.0.0.2', '127.0.0.2')).toEqual([]);
      expect(await canBindExclusively('127.0.0.2', port)).toBe(true);
      expect(await search('127.0.0.1', '127.0.0.1')).toEqual([
        { from: `127.0.0.1:${port}`, LOCATION: 'http://127.0.0.1:5555/rootDesc.xml', 'BOOTID.UPNP.ORG': '19' },
      ]);
    } finally {
      await advertiser.stop();
    }
  });

  it('rejects start with a coded error when it cannot bind, closing what it opened', async () => {
    const port = await freeUdpPort();
    const advertiser = new SsdpAdvertiser({
      ...testAdvertiserOptions(port),
      // TEST-NET-1: no interface of this host has it, so bind fails with EADDRNOTAVAIL.
      interfaces: [
        { interface: 'lo', address: '127.0.0.1', prefixLength: 32 },
        { interface: 'none', address: '192.0.2.1', prefixLength: 24 },
      ],
    });
    await expect(advertiser.start()).rejects.toMatchObject({ code: 'UPNPD_ERR_SSDP_BIND' });
    expect(await canBindExclusively('127.0.0.1', port)).toBe(true);
    await advertiser.stop();
  });

  it.each([
    ['no interfaces', { interfaces: [] }],
    ['a UDN shared by two devices', { udns: { gateway: G, wan: W, wanConnection: G } }],
    ['max-age below 1800', { maxAgeSeconds: 1799 }],
    ['notify interval above max-age/2', { notifyIntervalSeconds: 901 }],
    ['notify interval 0', { notifyIntervalSeconds: 0 }],
  ])('refuses options with %s', (_name, override) => {
    expect(() => new SsdpAdvertiser({ ...testAdvertiserOptions(1900), ...override })).toThrow(UpnpdError);
  });
});

describe('SSDP NOTIFYs that cannot be sent', () => {
  // What a laptop's dry-run meets on ::1 (a loopback without MULTICAST: ENETUNREACH), here made
  // certain by failing every send to the group; answers to searches are sent as usual.
  it('warns once per endpoint and failure, logs the repeats at debug level, and says when NOTIFYs are sent again', async () => {
    const logger = new RecordingLogger();
    const port = await freeUdpPort();
    const advertiser = new SsdpAdvertiser({ ...testAdvertiserOptions(port), logger });
    const send = Object.getOwnPropertyDescriptor(Socket.prototype, 'send')!.value as (...a: unknown[]) => void;
    const failing = vi.spyOn(Socket.prototype, 'send').mockImplementation(function (this: Socket, ...args: unknown[]) {
      const callback = args.at(-1);
      if (args[2] === SSDP_MULTICAST_ADDRESS && typeof callback === 'function') {
        process.nextTick(() => (callback as (err: Error) => void)(Object.assign(new Error('send ENETUNREACH'), { code: 'ENETUNREACH' })));
        return;
      }
      return send.apply(this, args);
    });
    try {
      await advertiser.start(); // byebye, then alive: one NOTIFY per target each
      const warnings = logger.lines.filter((l) => l.level === 'warn');
      expect(warnings.map((l) => l.message)).toEqual(['SSDP NOTIFY from 127.0.0.1 failed (send ENETUNREACH); the same failure again is logged at debug level']);
      expect(logger.lines.filter((l) => l.level === 'debug' && l.message === 'SSDP NOTIFY failed again').length).toBeGreaterThan(5);
      expect(await exchange(port, [mSearch('HOST: 239.255.255.250:1900', 'MAN: "ssdp:discover"', 'MX: 1', 'ST: upnp:rootdevice')])).toHaveLength(1);
    } finally {
      failing.mockRestore();
      await advertiser.stop(); // byebye, now sent
    }
    expect(logger.messages()).toContain('SSDP NOTIFY from 127.0.0.1 sent again');
    expect(logger.lines.filter((l) => l.level === 'warn')).toHaveLength(1);
  });
});
