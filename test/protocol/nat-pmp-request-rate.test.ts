import { createSocket, type Socket } from 'node:dgram';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DEFAULT_REQUEST_RATE } from '../../plugins/nat-pmp/options.js';
import { settle } from '../support/fakes.js';
import { startNatPmp, type NatPmpFixture, type NatPmpFixtureOptions } from '../support/nat-pmp-fixture.js';
import { NAT_PMP_EXTERNAL_ADDRESS_REQUEST, natPmpMapRequest, parseNatPmpResponse } from '../support/pcp-client.js';

const FLOODER = '127.0.0.2';
const OTHER = '127.0.0.3';

let fixture: NatPmpFixture | undefined;
const sockets: Socket[] = [];
/** Firewalls stalled by a test, let go before the fixture closes (a failed test leaves one stalled). */
const stalls: Array<() => void> = [];
afterEach(async () => {
  for (const release of stalls.splice(0)) release();
  for (const socket of sockets.splice(0)) socket.close();
  await fixture?.close();
  fixture = undefined;
});

async function start(options: NatPmpFixtureOptions = {}): Promise<NatPmpFixture> {
  fixture = await startNatPmp(options);
  return fixture;
}

/** A LAN host sending datagrams back to back from one address, keeping every answer it gets. */
async function host(f: NatPmpFixture, address: string) {
  const socket = createSocket('udp4');
  sockets.push(socket);
  const answers: Buffer[] = [];
  socket.on('message', (answer) => answers.push(answer));
  await new Promise<void>((resolve) => socket.bind(0, address, resolve));
  return {
    answers,
    /**
     * Sends the packets, then waits until the front-end has read them all: another host's request
     * sent after them is answered (one socket reads in order), and answers already sent are in.
     */
    send: async (packets: readonly Buffer[]) => {
      for (const packet of packets) socket.send(packet, f.port, '127.0.0.1');
      expect(await f.send(NAT_PMP_EXTERNAL_ADDRESS_REQUEST, OTHER)).toBeDefined();
      await settle(20);
    },
  };
}

const times = (n: number, packet: Buffer) => Array.from({ length: n }, () => packet);

describe('requests read per client (RFC 6887 §8.3: an overloading client may be silently discarded)', () => {
  it('past its burst, a client is dropped unanswered until tokens come back, counted as refusals; another client is answered all along', async () => {
    const f = await start({ options: { requestsPerClient: { burst: 4, perSecond: 2 } } });
    const flooder = await host(f, FLOODER);

    await flooder.send(times(10, NAT_PMP_EXTERNAL_ADDRESS_REQUEST));
    expect(flooder.answers).toHaveLength(4);
    expect(f.frontEnd.status()).toMatchObject({ rateLimited: 6 });
    expect(f.limits.stats().refused['datagram-rate']).toBe(6);

    // One second of the (injected) clock gives two tokens back.
    await f.clock.advance(1_000);
    await flooder.send(times(5, NAT_PMP_EXTERNAL_ADDRESS_REQUEST));
    expect(flooder.answers).toHaveLength(6);
    expect(f.frontEnd.status()).toMatchObject({ rateLimited: 9 });
  });

  it('drops a flood of map requests past the burst before the mapping lifecycle sees them', async () => {
    const f = await start({ options: { requestsPerClient: { burst: 3, perSecond: 1 } } });
    const flooder = await host(f, FLOODER);
    await flooder.send([5000, 5001, 5002, 5003, 5004].map((port) => natPmpMapRequest('tcp', port, port, 3600)));
    expect(f.frontEnd.status()).toMatchObject({ rateLimited: 2 });
    await vi.waitFor(() => expect(flooder.answers).toHaveLength(3));
    expect(flooder.answers.map((a) => parseNatPmpResponse(a).result)).toEqual([0, 0, 0]);
    expect(f.mappings.size).toBe(3);
  });

  it('with the defaults, a BitTorrent client mapping TCP and UDP of 63 ports at once, then renewing them all a minute later, is answered in full', async () => {
    const f = await start({ options: { requestsPerClient: DEFAULT_REQUEST_RATE } });
    const client = await host(f, FLOODER);
    const ports = Array.from({ length: 63 }, (_, i) => 6881 + i);
    const requests = [NAT_PMP_EXTERNAL_ADDRESS_REQUEST, ...ports.flatMap((p) => [natPmpMapRequest('tcp', p, p, 120), natPmpMapRequest('udp', p, p, 120)])];
    await client.send(requests);
    await vi.waitFor(() => expect(client.answers).toHaveLength(requests.length));
    await f.clock.advance(60_000);
    await client.send(requests);
    await vi.waitFor(() => expect(client.answers).toHaveLength(2 * requests.length));
    expect(client.answers.every((a) => parseNatPmpResponse(a).result === 0)).toBe(true);
    expect(f.frontEnd.status()).toMatchObject({ rateLimited: 0 });
  });
});

describe('requests waiting for the mapping lifecycle (RFC 6887 §8.3: a server overloaded by all clients may silently discard requests)', () => {
  /** Holds every firewall change until released, as a firewall that stalls (xtables lock held, slow flash) does. */
  function stallBackend(f: NatPmpFixture): () => void {
    const apply = f.backend.apply.bind(f.backend);
    let release!: () => void;
    const stalled = new Promise<void>((resolve) => (release = resolve));
    f.backend.apply = (changes) => stalled.then(() => apply(changes));
    stalls.push(release);
    return release;
  }

  it('are bounded per client and in all while the lifecycle stalls: the others are dropped, those waiting are answered, a cheap request still is', async () => {
    const f = await start({ options: { pending: { perClient: 8, total: 16 } } });
    const release = stallBackend(f);
    const hosts = await Promise.all(['127.0.0.10', '127.0.0.11', '127.0.0.12', '127.0.0.13'].map((a) => host(f, a)));
    for (const [i, h] of hosts.entries()) {
      await h.send(Array.from({ length: 50 }, (_, n) => natPmpMapRequest('tcp', 10_000 + i * 100 + n, 10_000 + i * 100 + n, 3600)));
    }
    // Two hosts hold 8 each; the 34 others of theirs and all 100 of the last two were dropped.
    expect(f.frontEnd.status()).toMatchObject({ pending: 16, busy: 184 });
    expect(f.limits.stats().refused['datagrams-pending']).toBe(184);
    release();
    await vi.waitFor(() => expect(hosts.map((h) => h.answers.length)).toEqual([8, 8, 0, 0]));
    expect(f.mappings.size).toBe(16);
    expect(f.frontEnd.status()).toMatchObject({ pending: 0 });
    // Nothing waits now: the host dropped is answered.
    await hosts[3]!.send([natPmpMapRequest('tcp', 20_000, 20_000, 3600)]);
    await vi.waitFor(() => expect(hosts[3]!.answers).toHaveLength(1));
  });

  it('a request answered after the front-end stopped (a LAN change, shutdown) is made, its answer dropped, and nothing is thrown', async () => {
    const f = await start();
    const release = stallBackend(f);
    const client = await host(f, FLOODER);
    await client.send([natPmpMapRequest('tcp', 7000, 7000, 3600)]);
    expect(f.frontEnd.status()).toMatchObject({ pending: 1 });
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      await f.frontEnd.stop();
      release();
      await vi.waitFor(() => expect(f.frontEnd.status()).toMatchObject({ pending: 0 }));
      await settle(20);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
    expect(unhandled).toEqual([]);
    expect(f.mappings.size).toBe(1);
    expect(client.answers).toHaveLength(0);
  });
});
