import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import type { Protocol } from '../../core/mapping/types.js';
import { describeNetns } from './netns.js';
import {
  TESTBED_ADDRESSES,
  createTestbed,
  firewallSnapshot,
  installNftAdminFirewall,
  parseUpnpcListing,
  startDaemonInGateway,
  tcpReachable,
  udpReachable,
  upnpc,
  type ListedMapping,
  type ReachabilityOptions,
  type RunningDaemon,
  type Testbed,
  type TestbedOptions,
  type UpnpcRun,
  PUBLIC_API,
  NFT_FORWARD_JUMP_PLUGIN,
} from './topology.js';

// The whole daemon (`node bin/upnpd.js`) in the testbed's gateway, driven by miniupnpc from the
// LAN clients, with real packets from the WAN host. Each backend runs the same scenarios.

/** A delivery that should happen gets this long; one that should not, this long. */
const PASSES_MS = 5_000;
const BLOCKED_MS = 1_500;
/** A lease short enough to watch run out, long enough for a traffic check before it does. */
const SHORT_LEASE_SECONDS = 5;
/** How long after the lease's end its rules may take to go (expiry timer plus one firewall change). */
const EXPIRY_GRACE_MS = 5_000;
const POLL_INTERVAL_MS = 250;
/** The lease the scenarios ask for when they do not watch it run out. */
const LEASE = '3600';

/** The ports of one mapping: what the kernel's entries for it mention. */
interface MappingPorts {
  readonly protocol: Protocol;
  readonly externalPort: number;
  readonly internalPort: number;
}

interface BackendUnderTest {
  readonly name: string;
  readonly programs: readonly string[];
  readonly testbed: TestbedOptions;
  /** Completes the admin's firewall where needed; returns the daemon's backend arguments (a config file goes in `scratchDir`). */
  prepare(testbed: Testbed, scratchDir: string): Promise<string[]>;
  /** Every rule, chain and set in the gateway as the admin lists them, without counters. */
  ruleset(testbed: Testbed): Promise<string>;
  /** What the kernel holds for one mapping: its rules, or its map and set elements. */
  entriesFor(testbed: Testbed, mapping: MappingPorts): Promise<string[]>;
}

/** The testbed's own firewall is iptables (nf_tables) with FORWARD's policy DROP: the backend's ACCEPT rules are needed. */
const IPTABLES: BackendUnderTest = {
  name: 'iptables',
  programs: ['ip', 'upnpc', 'iptables', 'iptables-save', 'iptables-restore'],
  testbed: {},
  prepare: () => Promise.resolve(['--backend', 'iptables']),
  ruleset: async (testbed) => (await firewallSnapshot(testbed.gateway)).join('\n'),
  async entriesFor(testbed, mapping) {
    const matchesPort = new RegExp(`-p ${mapping.protocol.toLowerCase()} .*--dport (${mapping.externalPort}|${mapping.internalPort})( |$)`);
    return (await firewallSnapshot(testbed.gateway)).filter((rule) => matchesPort.test(rule));
  },
};

/**
 * The admin's forward drop is an nftables chain: the backend accepts mapped flows there through
 * its `forwardJump`, set in a config file (which also proves that config files load).
 */
const NFTABLES: BackendUnderTest = {
  name: 'nftables',
  programs: ['ip', 'upnpc', 'iptables-restore', 'nft'],
  testbed: { forwardPolicy: 'ACCEPT' },
  async prepare(testbed, scratchDir) {
    await installNftAdminFirewall(testbed);
    const configFile = join(scratchDir, 'upnpd.config.mjs');
    const config = [
      `import { defineConfig, nftables } from ${JSON.stringify(PUBLIC_API)};`,
      `export default defineConfig({ plugins: [${NFT_FORWARD_JUMP_PLUGIN}] });`,
      '',
    ].join('\n');
    await writeFile(configFile, config);
    return ['--config', configFile];
  },
  ruleset: (testbed) => testbed.gateway.exec('nft', ['--stateless', 'list', 'ruleset']),
  async entriesFor(testbed, mapping) {
    return nftElementsOf(JSON.parse(await testbed.gateway.exec('nft', ['--json', 'list', 'ruleset'])) as NftListing, mapping);
  },
};

interface NftListing {
  readonly nftables: ReadonlyArray<{ readonly set?: NftSet; readonly map?: NftSet }>;
}
interface NftSet {
  readonly family: string;
  readonly table: string;
  readonly name: string;
  readonly elem?: readonly unknown[];
}

/** Elements of any set or map, in any table, whose key holds the mapping's protocol and one of its ports. */
function nftElementsOf(listing: NftListing, mapping: MappingPorts): string[] {
  const protocol = mapping.protocol.toLowerCase();
  return listing.nftables.flatMap(({ set, map }) => {
    const container = set ?? map;
    if (!container) return [];
    return (container.elem ?? [])
      .filter((element) => {
        const key = elementKey(element);
        return key.includes(protocol) && (key.includes(mapping.externalPort) || key.includes(mapping.internalPort));
      })
      .map((element) => `${container.family} ${container.table} ${container.name}: ${JSON.stringify(element)}`);
  });
}

/** The parts of an element's key: a map element is [key, value]; a concatenation lists its parts. */
function elementKey(element: unknown): unknown[] {
  const key: unknown = Array.isArray(element) ? element[0] : element;
  if (key && typeof key === 'object' && 'concat' in key && Array.isArray(key.concat)) return key.concat as unknown[];
  return [key];
}

function expectSucceeded(run: UpnpcRun): void {
  expect(run.exitCode, run.output).toBe(0);
}

/** upnpc failed, and printed the UPnP error code the gateway answered. */
function expectRefused(run: UpnpcRun, upnpErrorCode: number): void {
  expect(run.exitCode, run.output).not.toBe(0);
  expect(run.output).toMatch(new RegExp(`\\b${upnpErrorCode}\\b`));
}

/** Polls (bounded) until the kernel holds no entry for the mappings; resolves with what is left. */
async function entriesLeftAfter(read: () => Promise<string[]>, timeoutMs: number): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const entries = await read();
    if (entries.length === 0 || Date.now() >= deadline) return entries;
    await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
  }
}

for (const backend of [IPTABLES, NFTABLES]) {
  describeNetns(`upnpd with the ${backend.name} backend, driven by upnpc in the testbed`, backend.programs, () => {
    const a = TESTBED_ADDRESSES;
    let testbed: Testbed;
    let scratchDir: string | undefined;
    let daemon: RunningDaemon | undefined;
    /** The gateway's firewall before upnpd started. */
    let adminRuleset: string;

    const fromLan = (...args: string[]) => upnpc(testbed.lan, ['-u', daemon!.url, ...args]);
    const fromLan2 = (...args: string[]) => upnpc(testbed.lan2, ['-u', daemon!.url, ...args]);
    const listing = async (flag: '-l' | '-L', externalPort: number): Promise<ListedMapping[]> => {
      const run = await fromLan(flag);
      expectSucceeded(run);
      return parseUpnpcListing(run.output).filter((row) => row.externalPort === externalPort);
    };
    const entriesFor = async (...mappings: MappingPorts[]) => (await Promise.all(mappings.map((m) => backend.entriesFor(testbed, m)))).flat();
    /** Traffic from the WAN host to the gateway's external address, received (or not) in the first LAN client. */
    const fromWan = {
      tcp: (port: number, options: ReachabilityOptions = {}) => tcpReachable(testbed.wan, a.gatewayWan, port, testbed.lan, PASSES_MS, options),
      udp: (port: number, options: ReachabilityOptions = {}) => udpReachable(testbed.wan, a.gatewayWan, port, testbed.lan, PASSES_MS, options),
      tcpBlocked: async (port: number, options: ReachabilityOptions = {}) =>
        !(await tcpReachable(testbed.wan, a.gatewayWan, port, testbed.lan, BLOCKED_MS, options)),
      udpBlocked: async (port: number, options: ReachabilityOptions = {}) =>
        !(await udpReachable(testbed.wan, a.gatewayWan, port, testbed.lan, BLOCKED_MS, options)),
    };

    beforeAll(async () => {
      scratchDir = await mkdtemp(join(tmpdir(), 'upnpd-e2e-'));
      testbed = await createTestbed(backend.testbed);
      const backendArgs = await backend.prepare(testbed, scratchDir);
      adminRuleset = await backend.ruleset(testbed);
      daemon = await startDaemonInGateway(testbed, ['--lan', testbed.lanInterface, '--wan', testbed.wanInterface, ...backendArgs]);
    });
    afterAll(async () => {
      try {
        await daemon?.stop();
      } finally {
        await testbed?.destroy();
        if (scratchDir) await rm(scratchDir, { recursive: true, force: true });
      }
    });
    beforeEach(({ onTestFailed }) => {
      onTestFailed(() => console.error(`upnpd output, last part:\n${daemon?.output().slice(-6000)}`));
    });

    it('maps through the IGD:1 view for a client that finds the gateway by SSDP discovery', async () => {
      const mapping = { protocol: 'TCP', externalPort: 7000, internalPort: 7000 } as const;
      // -i: miniupnpc calls an IGD whose external address is reserved (TEST-NET-3) "not connected"
      // and would stop there; -m: search out of the client's own interface.
      const discovered = (...args: string[]) => upnpc(testbed.lan, ['-i', '-m', a.lanClient, ...args]);

      const add = await discovered('-a', a.lanClient, '7000', '7000', 'TCP', LEASE);
      expectSucceeded(add);
      expect(add.output).toContain(`desc: ${new URL('/rootDesc1.xml', daemon!.url).href}`);
      expect(await entriesFor(mapping)).toHaveLength(2);
      expect(await fromWan.tcp(7000)).toBe(true);

      expectSucceeded(await discovered('-d', '7000', 'TCP'));
      expect(await entriesFor(mapping)).toEqual([]);
    });

    it('maps TCP and UDP for the LAN client: WAN traffic reaches it, -l and -L list both, and after -d neither passes', async () => {
      const tcp = { protocol: 'TCP', externalPort: 8080, internalPort: 80 } as const;
      const udp = { protocol: 'UDP', externalPort: 5353, internalPort: 5353 } as const;
      expect(await fromWan.tcpBlocked(8080, { listenPort: 80 })).toBe(true);

      expectSucceeded(await fromLan('-e', 'web server', '-a', a.lanClient, '80', '8080', 'TCP', LEASE));
      expectSucceeded(await fromLan('-a', a.lanClient, '5353', '5353', 'UDP', LEASE));
      expect(await entriesFor(tcp)).toHaveLength(2);
      expect(await entriesFor(udp)).toHaveLength(2);
      expect(await fromWan.tcp(8080, { listenPort: 80 })).toBe(true);
      expect(await fromWan.udp(5353)).toBe(true);

      for (const flag of ['-l', '-L'] as const) {
        const [tcpRow] = await listing(flag, 8080);
        const [udpRow] = await listing(flag, 5353);
        expect(tcpRow).toMatchObject({ protocol: 'TCP', internalClient: a.lanClient, internalPort: 80, description: 'web server', remoteHost: '' });
        expect(udpRow).toMatchObject({ protocol: 'UDP', internalClient: a.lanClient, internalPort: 5353, remoteHost: '' });
        for (const row of [tcpRow!, udpRow!]) expect(row.leaseSeconds).toBeGreaterThan(Number(LEASE) - 60);
      }

      expectSucceeded(await fromLan('-d', '8080', 'TCP'));
      expectSucceeded(await fromLan('-d', '5353', 'UDP'));
      expect(await entriesFor(tcp, udp)).toEqual([]);
      expect(await fromWan.tcpBlocked(8080, { listenPort: 80 })).toBe(true);
      expect(await fromWan.udpBlocked(5353)).toBe(true);
      expect([...(await listing('-l', 8080)), ...(await listing('-l', 5353))]).toEqual([]);
    });

    it(`lets a ${SHORT_LEASE_SECONDS} s lease run out: its rules go and traffic no longer passes`, async () => {
      const tcp = { protocol: 'TCP', externalPort: 7100, internalPort: 7100 } as const;
      const udp = { protocol: 'UDP', externalPort: 7101, internalPort: 7101 } as const;
      expectSucceeded(await fromLan('-a', a.lanClient, '7100', '7100', 'TCP', String(SHORT_LEASE_SECONDS)));
      expectSucceeded(await fromLan('-a', a.lanClient, '7101', '7101', 'UDP', String(SHORT_LEASE_SECONDS)));
      expect(await entriesFor(tcp, udp)).toHaveLength(4);
      expect(await Promise.all([fromWan.tcp(7100), fromWan.udp(7101)])).toEqual([true, true]);

      expect(await entriesLeftAfter(() => entriesFor(tcp, udp), SHORT_LEASE_SECONDS * 1000 + EXPIRY_GRACE_MS)).toEqual([]);
      expect(await Promise.all([fromWan.tcpBlocked(7100), fromWan.udpBlocked(7101)])).toEqual([true, true]);
      expect([...(await listing('-l', 7100)), ...(await listing('-l', 7101))]).toEqual([]);
    });

    it('keeps the second LAN client from mapping to the first one, taking over its port, or deleting its mapping', async () => {
      const mapping = { protocol: 'TCP', externalPort: 7200, internalPort: 7200 } as const;
      expectSucceeded(await fromLan('-a', a.lanClient, '7200', '7200', 'TCP', LEASE));

      // Secure mode: 606 Action not authorized (IGD:2) for another client's address.
      expectRefused(await fromLan2('-a', a.lanClient, '7201', '7201', 'TCP', LEASE), 606);
      expect(await entriesFor({ protocol: 'TCP', externalPort: 7201, internalPort: 7201 })).toEqual([]);
      // The same key for another client: 718 ConflictInMappingEntry.
      expectRefused(await fromLan2('-a', a.lanClient2, '7200', '7200', 'TCP', LEASE), 718);
      expectRefused(await fromLan2('-d', '7200', 'TCP'), 606);

      expect(await entriesFor(mapping)).toHaveLength(2);
      expect(await listing('-l', 7200)).toMatchObject([{ protocol: 'TCP', internalClient: a.lanClient }]);
      expect(await fromWan.tcp(7200)).toBe(true);
      expectSucceeded(await fromLan('-d', '7200', 'TCP'));
    });

    it('admits only the remote host a mapping names', async () => {
      const mapping = { protocol: 'TCP', externalPort: 7300, internalPort: 7300 } as const;
      expectSucceeded(await fromLan('-a', a.lanClient, '7300', '7300', 'TCP', LEASE, a.wanHostAlt));
      expect(await listing('-l', 7300)).toMatchObject([{ internalClient: a.lanClient, remoteHost: a.wanHostAlt }]);
      expect(await entriesFor(mapping)).toHaveLength(2);

      expect(await fromWan.tcp(7300, { sourceAddress: a.wanHostAlt })).toBe(true);
      expect(await fromWan.tcpBlocked(7300, { sourceAddress: a.wanHost })).toBe(true);

      expectSucceeded(await fromLan('-d', '7300', 'TCP', a.wanHostAlt));
      expect(await entriesFor(mapping)).toEqual([]);
    });

    it('renews a mapping the client adds again: one rule pair, one listed entry with the new lease', async () => {
      const mapping = { protocol: 'UDP', externalPort: 7400, internalPort: 7400 } as const;
      expectSucceeded(await fromLan('-a', a.lanClient, '7400', '7400', 'UDP', '600'));
      expectSucceeded(await fromLan('-a', a.lanClient, '7400', '7400', 'UDP', LEASE));

      expect(await entriesFor(mapping)).toHaveLength(2);
      const rows = await listing('-l', 7400);
      expect(rows).toHaveLength(1);
      expect(rows[0]!.leaseSeconds).toBeGreaterThan(600);
      expect(await fromWan.udp(7400)).toBe(true);
      expectSucceeded(await fromLan('-d', '7400', 'UDP'));
    });

    // Last: it stops the daemon.
    it('on SIGTERM removes every rule, chain and set of its own and leaves the admin rules as they were', async () => {
      expectSucceeded(await fromLan('-a', a.lanClient, '7500', '7500', 'TCP', LEASE));
      expectSucceeded(await fromLan('-a', a.lanClient, '7501', '7501', 'UDP', LEASE, a.wanHost));
      expect(await backend.ruleset(testbed)).toMatch(/upnpd/i);

      expect(await daemon!.stop()).toBe(0);
      const ruleset = await backend.ruleset(testbed);
      expect(ruleset).not.toMatch(/upnpd/i);
      expect(ruleset).toBe(adminRuleset);
      expect(await fromWan.tcpBlocked(7500)).toBe(true);
    });
  });
}
