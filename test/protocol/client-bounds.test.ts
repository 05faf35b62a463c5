import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../core/clock.js';
import { DEFAULT_CLIENT_LIMITS } from '../../core/limits/client-limits.js';
import { Refusals } from '../../core/limits/refusals.js';
import { silentLogger } from '../../core/logger.js';
import { DEFAULT_HTTP_LIMITS } from '../../core/upnp/http/server.js';
import { SsdpAdvertiser } from '../../core/upnp/ssdp/advertiser.js';
import { addArgs, rawRequest, soap, startIgd, type IgdFixture } from './fixture.js';

/**
 * Resource bounds, tried as a hostile LAN host would: one host holding connections, flooding
 * state-changing requests, flooding M-SEARCH from ten addresses — and in each case another host
 * is served. The LAN is 127.0.0.0/8 (as in dry-run), so 127.0.0.x are different hosts. Every
 * test runs with the default limits.
 */

const ATTACKER = '127.0.0.2';
const VICTIM = '127.0.0.3';
const DEFAULTS = { config: { limits: {} } };

function ignoreErrors(socket: Socket): Socket {
  socket.on('error', () => {});
  return socket;
}

function openFrom(port: number, localAddress: string): Promise<Socket> {
  return new Promise((resolve) => {
    const socket = ignoreErrors(connect({ host: '127.0.0.1', port, localAddress }, () => resolve(socket)));
    socket.on('close', () => resolve(socket));
  });
}

describe('one host holding idle, slow-header and slow-body connections', () => {
  let f: IgdFixture;
  const held: Socket[] = [];
  const drips: NodeJS.Timeout[] = [];
  beforeAll(async () => {
    f = await startIgd(DEFAULTS);
  });
  afterAll(async () => {
    for (const drip of drips) clearInterval(drip);
    for (const socket of held) socket.destroy();
    await f.close();
  });

  it('cannot keep another host from being served, renewals included', async () => {
    const head = (extra: string) => `POST /igd2/WANIPConn/control HTTP/1.1\r\nHost: 127.0.0.1:${f.port}\r\n${extra}`;
    for (let i = 0; i < 32; i++) held.push(await openFrom(f.port, ATTACKER));
    for (let i = 0; i < 32; i++) {
      const socket = await openFrom(f.port, ATTACKER);
      socket.write(head('X-Slow: 0\r\n'));
      drips.push(setInterval(() => socket.writable && socket.write('X-Slow: 1\r\n'), 500));
      held.push(socket);
    }
    for (let i = 0; i < 32; i++) {
      const socket = await openFrom(f.port, ATTACKER);
      socket.write(head('Content-Type: text/xml\r\nContent-Length: 4096\r\n\r\n<'));
      drips.push(setInterval(() => socket.writable && socket.write(' '), 500));
      held.push(socket);
    }
    await sleep(200);
    const stillOpen = held.filter((s) => !s.destroyed).length;
    expect(stillOpen).toBeLessThanOrEqual(DEFAULT_CLIENT_LIMITS.connectionsPerClient);

    const mapping = addArgs({ NewInternalClient: VICTIM, NewExternalPort: 6000, NewInternalPort: 6000 });
    const from = { localAddress: VICTIM };
    const statuses: number[] = [];
    statuses.push((await soap(f, 'AddPortMapping', mapping, from)).status);
    for (let i = 0; i < 3; i++) statuses.push((await soap(f, 'AddPortMapping', mapping, from)).status); // renewals
    for (let i = 0; i < 10; i++) statuses.push((await soap(f, 'GetExternalIPAddress', {}, from)).status);
    for (let i = 0; i < 5; i++) statuses.push((await rawRequest(f.port, `GET /rootDesc.xml HTTP/1.1\r\nHost: 127.0.0.1:${f.port}`, '', from)).status);
    for (let i = 0; i < 5; i++) statuses.push((await soap(f, 'GetGenericPortMappingEntry', { NewPortMappingIndex: 0 }, from)).status);
    const key = { NewRemoteHost: '', NewExternalPort: 6000, NewProtocol: 'TCP' };
    for (let i = 0; i < 4; i++) statuses.push((await soap(f, 'GetSpecificPortMappingEntry', key, from)).status);
    statuses.push((await soap(f, 'DeletePortMapping', key, from)).status);

    expect(statuses).toEqual(Array.from({ length: 29 }, () => 200));
    expect(f.frontEnd.limits.stats().refused['connections-per-client']).toBeGreaterThanOrEqual(96 - DEFAULT_CLIENT_LIMITS.connectionsPerClient);
  });
});

describe('one host holding connections from sixteen addresses and more', () => {
  let f: IgdFixture;
  const held: Socket[] = [];
  beforeAll(async () => {
    f = await startIgd(DEFAULTS);
  });
  afterAll(async () => {
    for (const socket of held) socket.destroy();
    await f.close();
  });

  it('cannot keep another host out: its connections give way to the host holding fewer', async () => {
    // 20 addresses at their maximum: more than the 128 connections a listening address takes.
    const sources = Array.from({ length: 20 }, (_, i) => `127.0.3.${i + 1}`);
    for (const source of sources) for (let i = 0; i < DEFAULT_CLIENT_LIMITS.connectionsPerClient; i++) held.push(await openFrom(f.port, source));
    await sleep(200);
    expect(held.filter((s) => !s.destroyed).length).toBe(DEFAULT_HTTP_LIMITS.maxConnections);

    const from = { localAddress: VICTIM };
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) {
      statuses.push((await soap(f, 'GetExternalIPAddress', {}, from)).status);
      statuses.push((await soap(f, 'AddPortMapping', addArgs({ NewInternalClient: VICTIM, NewExternalPort: 6100, NewInternalPort: 6100 }), from)).status);
    }
    expect(statuses).toEqual([200, 200, 200, 200, 200, 200]);
    // The other host's connections took the places of some of the biggest holders' connections, one each at most.
    await sleep(100);
    const left = held.filter((s) => !s.destroyed).length;
    expect(left).toBeLessThan(DEFAULT_HTTP_LIMITS.maxConnections);
    expect(left).toBeGreaterThanOrEqual(DEFAULT_HTTP_LIMITS.maxConnections - statuses.length);
  });
});

describe('one host flooding state-changing requests', () => {
  let f: IgdFixture;
  beforeAll(async () => {
    f = await startIgd(DEFAULTS);
  });
  afterAll(async () => {
    await f.close();
  });

  it('is answered 503 with Retry-After beyond its rate, while another host maps and it can still walk its table', async () => {
    const { burst, perSecond } = DEFAULT_CLIENT_LIMITS.stateChanges;
    const flood = 200;
    const started = performance.now();
    const answers: { status: number; retryAfter: string | undefined }[] = [];
    for (let i = 0; i < flood; i++) {
      const result = await soap(f, 'AddPortMapping', addArgs({ NewInternalClient: ATTACKER, NewExternalPort: 10000 + i }), { localAddress: ATTACKER });
      answers.push({ status: result.status, retryAfter: result.headers['retry-after'] });
    }
    const elapsedSeconds = (performance.now() - started) / 1000;
    const served = answers.filter((a) => a.status === 200).length;
    const limited = answers.filter((a) => a.status === 503);
    expect(served + limited.length).toBe(flood);
    expect(served).toBeGreaterThanOrEqual(burst);
    expect(served).toBeLessThanOrEqual(Math.ceil(burst + perSecond * elapsedSeconds) + 1);
    expect(limited.length).toBeGreaterThan(0);
    expect(limited.every((a) => Number(a.retryAfter) >= 1)).toBe(true);

    // Another host maps fine meanwhile.
    for (let i = 0; i < 5; i++) {
      const result = await soap(f, 'AddPortMapping', addArgs({ NewInternalClient: VICTIM, NewExternalPort: 20000 + i }), { localAddress: VICTIM });
      expect(result.status).toBe(200);
    }
    // The flooding host, its bucket empty, still walks its whole table and lists it.
    expect((await soap(f, 'AddPortMapping', addArgs({ NewInternalClient: ATTACKER, NewExternalPort: 30000 }), { localAddress: ATTACKER })).status).toBe(503);
    const total = f.mappings.size;
    expect(total).toBe(served + 5);
    for (let index = 0; index < total; index++) {
      expect((await soap(f, 'GetGenericPortMappingEntry', { NewPortMappingIndex: index }, { localAddress: ATTACKER })).status).toBe(200);
    }
    const list = await soap(
      f,
      'GetListOfPortMappings',
      { NewStartPort: 1, NewEndPort: 65535, NewProtocol: 'TCP', NewManage: 0, NewNumberOfPorts: 0 },
      { localAddress: ATTACKER },
    );
    expect(list.status).toBe(200);
    // SUBSCRIBE counts as a state change too.
    const subscribe = await rawRequest(
      f.port,
      `SUBSCRIBE /igd2/WANIPConn/events HTTP/1.1\r\nHost: 127.0.0.1:${f.port}\r\nCALLBACK: <http://${ATTACKER}:9/>\r\nNT: upnp:event\r\nTIMEOUT: Second-1800`,
      '',
      { localAddress: ATTACKER },
    );
    expect(subscribe.status).toBe(503);
    expect(f.frontEnd.limits.stats().refused['state-change-rate']).toBe(limited.length + 2);
  });
});

describe('a client walking a table of 5000 mappings', () => {
  let f: IgdFixture;
  const WALKER = '127.0.0.4';
  const COUNT = 5000;
  beforeAll(async () => {
    f = await startIgd(DEFAULTS);
    // Made through the mapping service (50 LAN hosts, 100 each), not the client under test.
    const adds = Array.from({ length: COUNT }, (_, i) => {
      const internalClient = `127.0.2.${1 + (i % 50)}`;
      const request = {
        remoteHost: '',
        externalPort: 10000 + i,
        protocol: 'TCP' as const,
        internalClient,
        internalPort: 10000 + i,
        enabled: true,
        description: 'walk',
        leaseSeconds: 3600,
      };
      return f.mappings.add(request, { address: internalClient, via: 'test' });
    });
    await Promise.all(adds);
  }, 60_000);
  afterAll(async () => {
    await f.close();
  });

  it('is not slowed: every GetGenericPortMappingEntry of a full walk and GetListOfPortMappings answered at once', { timeout: 120_000 }, async () => {
    const statuses = new Map<number, number>();
    for (let index = 0; index < COUNT; index++) {
      const { status } = await soap(f, 'GetGenericPortMappingEntry', { NewPortMappingIndex: index }, { localAddress: WALKER });
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
    }
    expect(Object.fromEntries(statuses)).toEqual({ 200: COUNT });
    const list = await soap(
      f,
      'GetListOfPortMappings',
      { NewStartPort: 1, NewEndPort: 65535, NewProtocol: 'TCP', NewManage: 1, NewNumberOfPorts: 1000 },
      { localAddress: WALKER },
    );
    expect(list.status).toBe(200);
    expect(f.frontEnd.limits.stats().refused).toEqual({
      'connections-per-client': 0,
      'pipelined-requests': 0,
      'state-change-rate': 0,
      'm-search-rate': 0,
      'm-search-queue': 0,
      'datagram-rate': 0,
      'datagrams-pending': 0,
    });
  });
});

describe('one host flooding M-SEARCH from ten addresses', () => {
  const FLOOD_SOURCES = Array.from({ length: 10 }, (_, i) => `127.0.1.${10 + i}`);
  const SOCKETS_PER_SOURCE = 8;
  let advertiser: SsdpAdvertiser;
  let port: number;
  const refusals = new Refusals(silentLogger, systemClock);

  beforeAll(async () => {
    const probe = createSocket('udp4');
    await new Promise<void>((resolve) => probe.bind({ address: '127.0.0.1', port: 0 }, resolve));
    port = probe.address().port;
    await new Promise<void>((resolve) => probe.close(resolve));
    advertiser = new SsdpAdvertiser({
      interfaces: [{ interface: 'lo', address: '127.0.0.1', prefixLength: 8 }],
      location: (lan) => `http://${lan.address}:5555/rootDesc.xml`,
      udns: {
        gateway: 'uuid:11111111-1111-5111-8111-111111111111',
        wan: 'uuid:22222222-2222-5222-8222-222222222222',
        wanConnection: 'uuid:33333333-3333-5333-8333-333333333333',
      },
      igdVersion: 2,
      bootId: 1,
      configId: 1,
      notifyIntervalSeconds: 300,
      serverString: 'Linux/6.1 UPnP/1.1 upnpd/0.1.0',
      logger: silentLogger,
      port,
      refusals,
    });
    await advertiser.start();
  });
  afterAll(async () => {
    await advertiser.stop();
  });

  const search = (st: string) => Buffer.from(`M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: "ssdp:discover"\r\nMX: 1\r\nST: ${st}\r\n\r\n`);

  async function bound(address: string): Promise<UdpSocket> {
    const socket = createSocket('udp4');
    socket.on('error', () => {});
    await new Promise<void>((resolve) => socket.bind({ address, port: 0 }, resolve));
    return socket;
  }

  /** One discovery: a search for the IGD, successful if an answer arrives within a second. */
  async function discover(socket: UdpSocket): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => finish(false), 1_000);
      const onMessage = () => finish(true);
      function finish(found: boolean) {
        clearTimeout(timer);
        socket.off('message', onMessage);
        resolve(found);
      }
      socket.on('message', onMessage);
      socket.send(search('urn:schemas-upnp-org:device:InternetGatewayDevice:1'), port, '127.0.0.1');
    });
  }

  it('cannot starve another host: at least 9 of its 10 discoveries succeed during the flood', async () => {
    const flooders = await Promise.all(FLOOD_SOURCES.flatMap((address) => Array.from({ length: SOCKETS_PER_SOURCE }, () => bound(address))));
    const victim = await bound(VICTIM);
    const all = search('ssdp:all');
    let rounds = 0;
    // Every 20 ms each flooding socket asks for the whole answer set (ten datagrams, about 100 ms
    // of pending replies each): far more than the queue holds. Bounded by count and by the test.
    const flood = setInterval(() => {
      if (++rounds > 1_000) return;
      for (const socket of flooders) socket.send(all, port, '127.0.0.1');
    }, 20);
    try {
      await sleep(300);
      let found = 0;
      for (let i = 0; i < 10; i++) {
        if (await discover(victim)) found++;
        await sleep(100);
      }
      expect(found).toBeGreaterThanOrEqual(9);
      const refused = refusals.counted;
      expect(refused['m-search-rate'] + refused['m-search-queue']).toBeGreaterThan(0);
    } finally {
      clearInterval(flood);
      for (const socket of [...flooders, victim]) socket.close();
    }
  });
});
