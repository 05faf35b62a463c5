import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { toUpnpFault } from '../../core/errors.js';
import type { MappingRequest, MappingView, PolicyContext, PortMapping, Requester } from '../../core/mapping/types.js';
import { RefusalRegistry, RefusalReporter } from '../../core/plugins/refusals.js';
import type { Plugin } from '../../core/plugins/types.js';
import { description, cleanDescription } from '../../plugins/description/index.js';
import { permissions, parseRule, safePatternProblem } from '../../plugins/permissions/index.js';
import { quota } from '../../plugins/quota/index.js';
import { remoteHost } from '../../plugins/remote-host/index.js';
import { ProcNetSockets, listeningPorts, reservedPorts } from '../../plugins/reserved-ports/index.js';
import { ManualClock, RecordingLogger } from '../support/fakes.js';
import { FakeSockets, buildPolicy } from '../support/policies.js';

/** The policy plugins, each on its own: what it allows, what it refuses and with which UPnP code. */

const LAN = [{ interface: 'br-lan', address: '192.168.1.1', prefixLength: 24 }];
const CLIENT: Requester = { address: '192.168.1.50', via: 'upnp-igd:2' };
const V1_CLIENT: Requester = { address: '192.168.1.50', via: 'upnp-igd:1' };

function request(overrides: Partial<MappingRequest> = {}): MappingRequest {
  return {
    remoteHost: '',
    externalPort: 5000,
    protocol: 'TCP',
    internalClient: '192.168.1.50',
    internalPort: 5000,
    enabled: true,
    description: 'test',
    leaseSeconds: 3600,
    ...overrides,
  };
}

function held(externalPort: number, by: string): PortMapping {
  return { ...request({ externalPort, internalClient: by }), expiresAt: null, createdBy: { address: by, via: 'upnp-igd:2' } };
}

function table(mappings: readonly PortMapping[]): MappingView {
  return {
    get: (k) => mappings.find((m) => m.externalPort === k.externalPort && m.protocol === k.protocol && m.remoteHost === k.remoteHost),
    size: mappings.length,
    values: () => mappings,
    heldBy: (address) => mappings.filter((m) => m.createdBy.address === address).length,
    ofClient: (internalClient) => mappings.filter((m) => m.internalClient === internalClient),
  };
}

function context(requester: Requester = CLIENT, mappings: readonly PortMapping[] = [], asked?: MappingRequest): PolicyContext {
  const view = table(mappings);
  return { requester, existing: asked ? view.get(asked) : undefined, mappings: view };
}

/** The UPnP code the policy refuses with, or 0 when it allows. */
async function verdict(policy: Plugin, req: MappingRequest, ctx: PolicyContext = context()): Promise<number> {
  try {
    await policy.hooks!.beforeMap!(req, ctx);
    return 0;
  } catch (err) {
    return toUpnpFault(err).upnpCode;
  }
}

describe('permission rules', () => {
  it('reads miniupnpd lines verbatim: ranges, a network with a prefix or a dotted mask, an optional description pattern', () => {
    expect(parseRule('allow 1024-65535 192.168.1.0/24 1024-65535')).toMatchObject({
      action: 'allow',
      externalPorts: [1024, 65535],
      internalClient: '192.168.1.0/24',
      internalPorts: [1024, 65535],
    });
    expect(parseRule('deny 0-65535 0.0.0.0/0 0-65535')).toMatchObject({ action: 'deny', internalClient: '0.0.0.0/0' });
    expect(parseRule('  allow 22 192.168.1.10/255.255.255.0 22  ')).toMatchObject({ externalPorts: [22, 22], internalClient: '192.168.1.10/24' });
    expect(parseRule('allow 6881 192.168.1.10 6881 ^qBittorrent')).toMatchObject({ internalClient: '192.168.1.10/32', description: '^qBittorrent' });
  });

  it('reads typed objects with the same meaning', () => {
    expect(parseRule({ action: 'deny', externalPorts: [135, 139], internalClient: '10.0.0.0/8' })).toMatchObject({
      action: 'deny',
      externalPorts: [135, 139],
      internalClient: '10.0.0.0/8',
      internalPorts: [0, 65535],
    });
  });

  it.each([
    ['permit 1-2 0.0.0.0/0 1-2', /is not "allow\|deny EXTPORTS/],
    ['allow 70000 0.0.0.0/0 1', /external ports "70000" must be ports from 0 to 65535/],
    ['allow 2000-1000 0.0.0.0/0 1', /starts above its end/],
    ['allow 1 192.168.1/24 1', /not an IPv4 address or network/],
    ['allow 1 192.168.1.0/255.0.255.0 1', /not an IPv4 address or network/],
    ['allow 1 192.168.1.0/33 1', /not an IPv4 address or network/],
    ['allow 1 0.0.0.0/0 1 (a+)+$', /catastrophic backtracking/],
  ])('refuses %j', (line, problem) => {
    expect(parseRule(line)).toMatch(problem);
  });

  it.each([
    ['(a+)+', true],
    ['(a|aa)*', true],
    ['(x+x+)+y', true],
    ['([a-z]+)*$', true],
    ['(a{1,9}){2,}', true],
    ['(.)\\1', true],
    ['^(qBittorrent|Transmission)', false],
    ['^[a-z]+ [0-9]{1,5}$', false],
    ['(?:abc)+', false],
    ['(ab)?c', false],
    ['[(+)]+', false],
  ])('description pattern %j unsafe: %s', (pattern, unsafe) => {
    expect(safePatternProblem(pattern) !== undefined).toBe(unsafe);
  });

  it('first match wins; the default action decides when none matches; 606 (718 through IGD:1)', async () => {
    const policy = buildPolicy(
      permissions({
        rules: [
          'allow 8000-8999 192.168.1.50 0-65535',
          { action: 'deny', externalPorts: '8000-9999', internalClient: '192.168.1.0/24' },
          'allow 0-65535 0.0.0.0/0 0-65535',
        ],
      }),
    );
    expect(await verdict(policy, request({ externalPort: 8080 }))).toBe(0);
    expect(await verdict(policy, request({ externalPort: 9000 }))).toBe(606);
    expect(await verdict(policy, request({ externalPort: 9000 }), context(V1_CLIENT))).toBe(718);
    expect(await verdict(policy, request({ externalPort: 8080, internalClient: '192.168.1.51' }), context({ ...CLIENT, address: '192.168.1.51' }))).toBe(606);
    expect(await verdict(policy, request({ externalPort: 12000 }))).toBe(0);
    const denyAll = buildPolicy(permissions({ rules: ['allow 1024-65535 192.168.1.0/24 1024-65535'], defaultAction: 'deny' }));
    expect(await verdict(denyAll, request({ externalPort: 2000, internalPort: 80 }))).toBe(606);
    expect(await verdict(denyAll, request({ externalPort: 2000, internalPort: 2000 }))).toBe(0);
  });

  it('matches the description pattern on the description as the client sent it (cut to 256 characters)', async () => {
    const policy = buildPolicy(permissions({ rules: ['allow 0-65535 0.0.0.0/0 0-65535 ^game-'], defaultAction: 'deny' }));
    expect(await verdict(policy, request({ description: 'game-server' }))).toBe(0);
    expect(await verdict(policy, request({ description: 'malware' }))).toBe(606);
  });

  it("accepts the README's example rules", async () => {
    const policy = buildPolicy(
      permissions({
        rules: [
          'allow 1024-65535 192.168.1.0/24 1024-65535',
          'allow 6881 192.168.1.10/255.255.255.255 6881 ^qBittorrent',
          { action: 'deny', externalPorts: [135, 139], internalClient: '0.0.0.0/0' },
          { action: 'allow', externalPorts: '8000-8999', internalClient: '192.168.1.20', internalPorts: 80, description: '^web' },
          'deny 0-65535 0.0.0.0/0 0-65535',
        ],
        defaultAction: 'deny',
      }),
    );
    expect(await verdict(policy, request({ externalPort: 5000 }))).toBe(0);
    expect(await verdict(policy, request({ externalPort: 8080, internalPort: 80 }))).toBe(606);
  });

  it('a bad rule is a config error naming the key path', () => {
    expect(() => buildPolicy(permissions({ rules: ['allow 1-2 0.0.0.0/0 1-2', 'deny nope'] }))).toThrow(
      /^test: plugins\[0\] \(permissions\)\.rules\[1\]: "deny nope" is not "allow\|deny/,
    );
    expect(() => buildPolicy(permissions({ rules: [{ action: 'deny', externalPort: 22 } as never] }))).toThrow(/rules\[0\]: .*externalPort/);
  });
});

describe('reserved ports', () => {
  const sockets = new FakeSockets().listen('TCP', 8443).listen('UDP', 5353);
  const policy = buildPolicy(reservedPorts(), { sockets, config: { httpPort: 49152 } });

  it.each([
    ['ssh', 'TCP', 22, 718],
    ['DNS', 'UDP', 53, 718],
    ['port 1023', 'TCP', 1023, 718],
    ['port 1024', 'TCP', 1024, 0],
    ['a port the gateway listens on (TCP)', 'TCP', 8443, 718],
    ['the same port in the other protocol', 'UDP', 8443, 0],
    ['a port the gateway listens on (UDP)', 'UDP', 5353, 718],
    ["upnpd's HTTP port", 'TCP', 49152, 718],
    ['SSDP', 'UDP', 1900, 718],
    ['TCP 1900 (SSDP is UDP)', 'TCP', 1900, 0],
    ['NAT-PMP', 'UDP', 5351, 718],
  ] as const)('%s: %s %i → %i', async (_, protocol, externalPort, code) => {
    expect(await verdict(policy, request({ protocol, externalPort }))).toBe(code);
    expect(await verdict(policy, request({ protocol, externalPort }), context(V1_CLIENT))).toBe(code);
  });

  it("can allow the privileged ports and skip the listening check, but never gives up upnpd's own", async () => {
    const relaxed = buildPolicy(reservedPorts({ below: 0, listening: false }), { sockets, config: { httpPort: 49152 } });
    expect(await verdict(relaxed, request({ externalPort: 80 }))).toBe(0);
    expect(await verdict(relaxed, request({ externalPort: 8443 }))).toBe(0);
    expect(await verdict(relaxed, request({ protocol: 'UDP', externalPort: 1900 }))).toBe(718);
    expect(await verdict(relaxed, request({ externalPort: 49152 }))).toBe(718);
  });

  it('reads the listening sockets at request time', async () => {
    const live = new FakeSockets();
    const p = buildPolicy(reservedPorts(), { sockets: live });
    expect(await verdict(p, request({ externalPort: 9000 }))).toBe(0);
    live.listen('TCP', 9000);
    expect(await verdict(p, request({ externalPort: 9000 }))).toBe(718);
  });

  it('finds listening TCP sockets and unconnected UDP sockets in /proc/net tables, on any address', () => {
    const tcp = [
      '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
      '   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0',
      '   1: 0100007F:0277 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0',
      '   2: 0101A8C0:C350 0201A8C0:0016 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 100 0 0 10 0',
    ].join('\n');
    const tcp6 = '  sl  local_address remote_address st\n   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 0:0 0 0\n';
    const udp = [
      '   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops',
      ' 100: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4 2 0 0',
      ' 101: 0101A8C0:A000 08080808:0035 01 00000000:00000000 00:00000000 00000000     0        0 5 2 0 0',
    ].join('\n');
    expect([...listeningPorts(tcp + '\n' + tcp6, 'TCP')].sort((a, b) => a - b)).toEqual([22, 631, 8080]);
    expect([...listeningPorts(udp, 'UDP')]).toEqual([53]);
  });

  it('reads the real tables of this host: a port this test listens on is found', async () => {
    const { createServer } = await import('node:net');
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const port = (server.address() as { port: number }).port;
      expect(await new ProcNetSockets({ now: () => 0 }).isListening('TCP', port)).toBe(true);
    } finally {
      server.close();
    }
  });

  it('reads a TCP table only up to its first socket that is not listening (a LAN host can add tens of thousands of TIME_WAIT ones)', async () => {
    // The table is a pipe whose writer gives the listening sockets and one in TIME_WAIT, then no
    // end: as a real table read a page at a time, thousands of pages long. Only its head is needed.
    const root = mkdtempSync(join(tmpdir(), 'upnpd-proc-net-'));
    execFileSync('mkfifo', [join(root, 'tcp')]);
    const writer = open(join(root, 'tcp'), 'w');
    try {
      const answer = new ProcNetSockets({ now: () => 0 }, root).isListening('TCP', 8080);
      await (
        await writer
      ).write(
        [
          '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
          '   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0',
          '   1: 0100007F:C350 0200007F:1F90 06 00000000:00000000 03:00000F2B 00000000     0        0 0 3 0',
          '',
        ].join('\n'),
      );
      expect(await Promise.race([answer, sleep(3_000).then(() => 'still reading')])).toBe(true);
    } finally {
      await (await writer).close();
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('reads the tables at most once a second', async () => {
    const clock = new ManualClock();
    const sockets = new ProcNetSockets(clock, '/nonexistent');
    const read = (sockets as unknown as { read: () => Promise<unknown> }).read.bind(sockets);
    let reads = 0;
    (sockets as unknown as { read: () => Promise<unknown> }).read = () => (reads++, read());
    for (let i = 0; i < 100; i++) await sockets.isListening('TCP', 22);
    await clock.advance(1000);
    await sockets.isListening('TCP', 22);
    expect(reads).toBe(2);
  });
});

describe('quotas', () => {
  const policy = buildPolicy(quota({ perClient: 3, total: 5 }));
  const other = '192.168.1.60';

  it('has a per-client default between 32 and 256 and a total cap', async () => {
    const defaults = buildPolicy(quota());
    const many = Array.from({ length: 128 }, (_, i) => held(10_000 + i, CLIENT.address));
    expect(await verdict(defaults, request({ externalPort: 9000 }), context(CLIENT, many.slice(0, 127)))).toBe(0);
    expect(await verdict(defaults, request({ externalPort: 9000 }), context(CLIENT, many))).toBe(728);
  });

  it('refuses a client its mapping past the per-client quota with 728, counting from the table', async () => {
    const mine = [held(1, CLIENT.address), held(2, CLIENT.address), held(3, CLIENT.address)];
    expect(await verdict(policy, request({ externalPort: 9 }), context(CLIENT, mine.slice(0, 2)))).toBe(0);
    expect(await verdict(policy, request({ externalPort: 9 }), context(CLIENT, mine))).toBe(728);
    expect(await verdict(policy, request({ externalPort: 9, internalClient: other }), context({ ...CLIENT, address: other }, mine))).toBe(0);
  });

  it('lets a client at its quota renew a mapping it holds', async () => {
    const mine = [held(1, CLIENT.address), held(2, CLIENT.address), held(3, CLIENT.address)];
    expect(await verdict(policy, request({ externalPort: 2 }), context(CLIENT, mine, request({ externalPort: 2 })))).toBe(0);
  });

  it('refuses everyone past the total, renewals excepted', async () => {
    const full = [held(1, '192.168.1.2'), held(2, '192.168.1.3'), held(3, '192.168.1.4'), held(4, '192.168.1.5'), held(5, CLIENT.address)];
    expect(await verdict(policy, request({ externalPort: 9 }), context(CLIENT, full))).toBe(728);
    expect(await verdict(policy, request({ externalPort: 5 }), context(CLIENT, full, request({ externalPort: 5 })))).toBe(0);
  });

  it("counts with the view's heldBy, not a walk of the table (a restore asks it of every mapping)", async () => {
    const counted: PolicyContext['mappings'] = {
      get: () => undefined,
      size: 4,
      values: () => {
        throw new Error('walked the table');
      },
      heldBy: (address) => (address === CLIENT.address ? 3 : 1),
      ofClient: () => {
        throw new Error('walked the table');
      },
    };
    expect(await verdict(policy, request({ externalPort: 9 }), { requester: CLIENT, existing: undefined, mappings: counted })).toBe(728);
    expect(
      await verdict(policy, request({ externalPort: 9, internalClient: other }), {
        requester: { ...CLIENT, address: other },
        existing: undefined,
        mappings: counted,
      }),
    ).toBe(0);
  });
});

describe('descriptions', () => {
  const policy = buildPolicy(description());
  const cleaned = async (text: string) =>
    ((await policy.hooks!.beforeMap!(request({ description: text }), context())) ?? request({ description: text })).description;

  it('runs first and never refuses', () => {
    expect(policy.order).toBe('pre');
  });

  it('strips control characters (C0, DEL, C1, line separators) before anything stores or logs them', async () => {
    expect(await cleaned('game\r\n{"level":60}\u0000\u001b[31m\u007f\u0085\u2028ok')).toBe('game{"level":60}[31mok');
  });

  it('caps descriptions at 256 bytes, at a character boundary', async () => {
    expect(Buffer.byteLength(await cleaned('x'.repeat(15_000)))).toBe(256);
    expect(await cleaned('é'.repeat(200))).toBe('é'.repeat(128));
    expect(cleanDescription('a' + '€'.repeat(100), 256)).toBe('a' + '€'.repeat(85));
    expect(cleanDescription('a' + '😀'.repeat(100), 10)).toBe('a😀😀');
    expect(await cleaned('short')).toBe('short');
  });
});

describe('remote host', () => {
  const network = {
    ipv4Addresses: (iface: string) => (iface === 'wan0' ? [{ interface: 'wan0', address: '198.51.100.2', prefixLength: 24 }] : []),
    counters: () => Promise.resolve(null),
    link: () => Promise.resolve(null),
  };
  const policy = buildPolicy(remoteHost(), { lan: LAN, network, config: { wan: 'wan0', externalIp: '203.0.113.9' } });

  it.each([
    ['any host (empty)', '', 0],
    ['a WAN host', '198.51.100.77', 0],
    ['a LAN host', '192.168.1.77', 402],
    ["the gateway's LAN address", '192.168.1.1', 402],
    ["the gateway's WAN address", '198.51.100.2', 402],
    ['the reported external address', '203.0.113.9', 402],
    ['loopback', '127.0.0.1', 402],
  ])('%s (%s) → %i', async (_, remote, code) => {
    expect(await verdict(policy, request({ remoteHost: remote }))).toBe(code);
  });

  it('takes the LAN served now for the LAN: after a LAN address change, the new subnet is refused and the old one is a WAN host', async () => {
    const renumbered = buildPolicy(remoteHost(), { lan: LAN, network, config: { wan: 'wan0' } });
    await renumbered.hooks!.onLanAddressChange!({ previous: LAN, current: [{ interface: 'br-lan', address: '10.7.0.1', prefixLength: 16 }] });
    expect(await verdict(renumbered, request({ remoteHost: '10.7.3.4' }))).toBe(402);
    expect(await verdict(renumbered, request({ remoteHost: '192.168.1.77' }))).toBe(0);
  });
});

describe('refusals', () => {
  it('are counted by policy and rule and logged with the client and the rule, rate-limited', async () => {
    const refusals = new RefusalRegistry();
    const logger = new RecordingLogger();
    const clock = new ManualClock();
    const policy = buildPolicy(reservedPorts(), { sockets: new FakeSockets(), refusals, logger, clock });
    for (let i = 0; i < 25; i++) await verdict(policy, request({ externalPort: 22 }));
    expect(refusals.snapshot()).toEqual({ 'reserved-ports': { 'below 1024': 25 } });
    expect(logger.lines).toHaveLength(10);
    expect(logger.lines[0]).toEqual({ level: 'info', message: expect.stringMatching(/^reserved-ports: refused 192\.168\.1\.50 \(below 1024\)/) as string });
    await clock.advance(60_000);
    await verdict(policy, request({ externalPort: 22 }));
    expect(logger.lines.at(-1)!.message).toMatch(/\(15 earlier refusal\(s\) not logged\)$/);
  });

  it('RefusalReporter returns the error to throw', () => {
    const reporter = new RefusalReporter('p', new RefusalRegistry(), new RecordingLogger(), { now: () => 0 });
    const error = new (class extends Error {})() as never;
    expect(reporter.refuse('r', CLIENT, Object.assign(error, { upnpCode: 606, message: 'x' }))).toBe(error);
  });
});
