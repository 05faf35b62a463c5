import { afterEach, describe, expect, it } from 'vitest';
import { LoadSession, runWorkers } from '../load/session.js';
import { FakeIgd } from './fake-igd.js';

const CLIENT = '192.168.77.10';
const throughputLimits = { warmupMs: 0, maxMs: 10_000 };

let igd: FakeIgd | undefined;
let session: LoadSession | undefined;
afterEach(async () => {
  session?.close();
  await igd?.stop();
  igd = session = undefined;
});

async function started(options: ConstructorParameters<typeof FakeIgd>[0] = {}): Promise<{ igd: FakeIgd; session: LoadSession }> {
  igd = new FakeIgd(options);
  const descriptionUrl = await igd.start();
  session = new LoadSession(CLIENT);
  await session.run({ kind: 'discover', descriptionUrl, timeoutMs: 5_000 });
  return { igd, session };
}

describe.each([
  { name: 'keep-alive', closeEachResponse: false, connection: 'keep-alive' as const },
  { name: 'keep-alive', closeEachResponse: false, connection: 'close' as const },
  { name: 'Connection: close (like miniupnpd)', closeEachResponse: true, connection: 'keep-alive' as const },
  { name: 'Connection: close (like miniupnpd)', closeEachResponse: true, connection: 'close' as const },
])('load session ($connection) against an IGD answering with $name', ({ closeEachResponse, connection }) => {
  it('discovers the highest WANIPConnection version and its control URL', async () => {
    igd = new FakeIgd({ closeEachResponse });
    const descriptionUrl = await igd.start();
    session = new LoadSession(CLIENT);
    const found = await session.run({ kind: 'discover', descriptionUrl, timeoutMs: 5_000 });
    expect(found).toEqual({
      controlUrl: descriptionUrl.replace('/rootDesc.xml', '/ctl/IPConn'),
      serviceType: 'urn:schemas-upnp-org:service:WANIPConnection:2',
    });
  });

  it('runs exactly maxOps GetExternalIPAddress calls from 8 clients', async () => {
    const { igd, session } = await started({ closeEachResponse });
    const result = await session.run({ kind: 'getExternalIp', connection, concurrency: 8, maxOps: 50, ...throughputLimits, expectedAddress: '203.0.113.1' });
    expect(result).toMatchObject({ ops: 50 });
    expect(igd.calls.filter((c) => c === 'GetExternalIPAddress')).toHaveLength(50);
    const soapRequests = igd.requests.slice(1);
    const sockets = new Set(soapRequests.map((r) => r.socket));
    if (connection === 'close') {
      // miniupnpc's way: a new connection for every request, each saying so.
      expect(sockets.size).toBe(50);
      expect(soapRequests.every((r) => r.connection === 'Close')).toBe(true);
    } else {
      expect(soapRequests.every((r) => r.connection === undefined)).toBe(true);
      if (!closeEachResponse) expect(sockets.size).toBeLessThanOrEqual(8);
    }
  });

  it('add/delete cycles leave the table empty, each client on its own port', async () => {
    const { igd, session } = await started({ closeEachResponse });
    const result = await session.run({ kind: 'addDeleteCycles', connection, concurrency: 8, maxOps: 40, ...throughputLimits, firstPort: 40000 });
    expect(result).toMatchObject({ ops: 40 });
    expect(igd.mappings.size).toBe(0);
    expect(igd.calls.filter((c) => c === 'AddPortMapping')).toHaveLength(40);
  });

  it('adds mappings to the client itself and times each checkpoint', async () => {
    const { igd, session } = await started({ closeEachResponse });
    const result = await session.run({ kind: 'addMappings', connection, firstPort: 20000, count: 30, checkpoints: [10, 30], maxMs: 10_000 });
    expect(result.added).toBe(30);
    expect(result.checkpointMs[10]).toBeLessThanOrEqual(result.checkpointMs[30]!);
    expect([...igd.mappings.keys()]).toEqual(Array.from({ length: 30 }, (_, i) => 20000 + i));
    expect(new Set([...igd.mappings.values()].map((m) => m.client))).toEqual(new Set([CLIENT]));
  });

  it('lists by index up to the first 713, and in pages by port', async () => {
    const { igd, session } = await started({ closeEachResponse });
    for (let port = 30000; port < 30010; port += 1) igd.mappings.set(port, { client: CLIENT, description: 'x' });
    expect(await session.run({ kind: 'listByIndex', connection, maxEntries: 100, maxMs: 10_000 })).toMatchObject({ entries: 10, calls: 11 });
    expect(await session.run({ kind: 'listInPages', connection, pageSize: 3, maxEntries: 100, maxMs: 10_000 })).toMatchObject({ entries: 10, calls: 4 });
    expect(await session.run({ kind: 'listInPages', connection, pageSize: 5, maxEntries: 100, maxMs: 10_000 })).toMatchObject({ entries: 10, calls: 3 });
  });
});

describe('load session failures', () => {
  it('fails a phase on a wrong answer', async () => {
    const { session } = await started({ externalAddress: '198.51.100.7' });
    await expect(
      session.run({ kind: 'getExternalIp', connection: 'close', concurrency: 2, maxOps: 10, ...throughputLimits, expectedAddress: '203.0.113.1' }),
    ).rejects.toThrow(/198\.51\.100\.7/);
  });

  it('fails a phase on a UPnP fault it does not expect, naming the action and the code', async () => {
    const { session } = await started({ faultOn: { action: 'AddPortMapping', code: 718 } });
    await expect(session.run({ kind: 'addMappings', connection: 'close', firstPort: 20000, count: 5, checkpoints: [5], maxMs: 1_000 })).rejects.toThrow(
      /AddPortMapping: UPnP error 718/,
    );
  });

  it('waits for a daemon that starts late, and gives up after the timeout', async () => {
    igd = new FakeIgd();
    const probe = await igd.start();
    const port = Number(new URL(probe).port);
    await igd.stop();
    session = new LoadSession(CLIENT);
    const late = new FakeIgd();
    setTimeout(() => void late.start(port), 200);
    await expect(session.run({ kind: 'discover', descriptionUrl: probe, timeoutMs: 5_000 })).resolves.toMatchObject({
      serviceType: expect.stringContaining('WANIPConnection:2') as unknown,
    });
    await late.stop();
    await expect(session.run({ kind: 'discover', descriptionUrl: probe, timeoutMs: 200 })).rejects.toThrow(/not served within 200 ms/);
  });

  it('spreads the state-changing phases over the LAN hosts, each mapping to itself, and never shares a host between workers', async () => {
    const fake = (igd = new FakeIgd());
    const descriptionUrl = await fake.start();
    const hosts = Array.from({ length: 4 }, (_, i) => `127.0.0.${21 + i}`);
    session = new LoadSession(CLIENT, hosts);
    await session.run({ kind: 'discover', descriptionUrl, timeoutMs: 5_000 });
    await session.run({ kind: 'addMappings', connection: 'close', firstPort: 20000, count: 8, checkpoints: [8], maxMs: 10_000 });
    expect([...igd.mappings.values()].map((m) => m.client)).toEqual([...hosts, ...hosts]);
    expect(igd.changes.map((c) => c.from)).toEqual([...hosts, ...hosts]);

    igd.changes.length = 0;
    await session.run({ kind: 'addDeleteCycles', connection: 'close', concurrency: 2, warmupMs: 0, maxOps: 8, maxMs: 10_000, firstPort: 40000 });
    // Worker 0 (port 40000) goes round hosts 0 and 2, worker 1 (port 40001) round hosts 1 and 3.
    const fromOf = (port: number) => fake.changes.filter((c) => c.port === port).map((c) => c.from);
    expect(fromOf(40000)).toEqual([hosts[0], hosts[0], hosts[2], hosts[2], hosts[0], hosts[0], hosts[2], hosts[2]]);
    expect(fromOf(40001)).toEqual([hosts[1], hosts[1], hosts[3], hosts[3], hosts[1], hosts[1], hosts[3], hosts[3]]);
    expect(igd.mappings.size).toBe(8);
  });

  it('needs a discover before any phase', async () => {
    session = new LoadSession(CLIENT);
    await expect(session.run({ kind: 'listByIndex', connection: 'close', maxEntries: 1, maxMs: 1_000 })).rejects.toThrow(/discover/);
  });
});

describe('runWorkers', () => {
  it('starts no more than maxOps operations', async () => {
    let calls = 0;
    const result = await runWorkers(4, 10, 10_000, async () => {
      calls += 1;
      await new Promise((resolve) => setImmediate(resolve));
    });
    expect(result.ops).toBe(10);
    expect(calls).toBe(10);
  });

  it('stops every worker at the first failure', async () => {
    let calls = 0;
    const failing = runWorkers(4, 1000, 10_000, async () => {
      calls += 1;
      await new Promise((resolve) => setImmediate(resolve));
      if (calls === 5) throw new Error('boom');
    });
    await expect(failing).rejects.toThrow('boom');
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(calls).toBeLessThan(10);
  });

  it('stops when the time is up', async () => {
    const result = await runWorkers(2, Number.POSITIVE_INFINITY, 50, () => new Promise((resolve) => setTimeout(resolve, 5)));
    expect(result.elapsedMs).toBeGreaterThanOrEqual(50);
    expect(result.elapsedMs).toBeLessThan(1_000);
    expect(result.ops).toBeGreaterThan(0);
  });
});
