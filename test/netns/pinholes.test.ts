import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import type { Listing } from '../../app/control/protocol.js';
import { describeNetns } from './netns.js';
import {
  NFT_FORWARD_JUMP_PLUGIN,
  PUBLIC_API,
  TESTBED_ADDRESSES,
  TESTBED_IPV6_ADDRESSES,
  HOST_INTERFACE,
  createTestbed,
  installNftAdminFirewall,
  parseUpnpcListing,
  startDaemonInGateway,
  tcpReachable,
  udpReachable,
  upnpc,
  type ReachabilityOptions,
  type RunningDaemon,
  type Testbed,
  type UpnpcRun,
} from './topology.js';

// IPv6 pinholes end to end: the daemon in the gateway with each backend (the admin's IPv6
// forward path drops by default), miniupnpc in the LAN clients, real TCP and UDP from the
// WAN host to the LAN clients' global IPv6 addresses. miniupnpc speaks to the daemon over IPv4
// here (HTTP over IPv6 comes with the wt-v6net branch): the LAN client's pinholes to its IPv6
// addresses are then accepted because the gateway's neighbour table gives its IPv4 and IPv6
// addresses the same link-layer address, which is the "any address of the same host" rule.

/** A second IPv6 address of the first LAN client. */
const LAN_CLIENT_SECOND = '2001:db8:77::20';
const BIN = new URL('../../bin/upnpd.js', import.meta.url).pathname;
const PASSES_MS = 5_000;
const BLOCKED_MS = 1_500;
const LEASE = '3600';
const SHORT_LEASE_SECONDS = 4;
/** How long a lease's end or a repair may take to reach the kernel (expiry timer or 2 s reconcile period, plus one change). */
const SETTLE_MS = 6_000;
const POLL_INTERVAL_MS = 250;
/** upnpc's -A turns these into the IANA numbers WANIPv6FirewallControl carries (6, 17). */
const TCP = 'TCP';
const UDP = 'UDP';

// upnpc exits 0 whatever the gateway answers to pinhole commands: what it printed tells.
function expectSucceeded(run: UpnpcRun): void {
  expect(run.exitCode, run.output).toBe(0);
  expect(run.output).not.toMatch(/failed with code|returned : [1-9]/);
}

function expectRefused(run: UpnpcRun, upnpErrorCode: number): void {
  expect(run.output).toMatch(new RegExp(`(failed with code(?: :)?|returned :) ${upnpErrorCode}\\b`));
}

/** The UniqueID upnpc printed for AddPinhole (`/ Pinhole ID = 3`). */
function uniqueIdOf(run: UpnpcRun): string {
  const id = /AddPinhole: .* Pinhole ID = (\d+)/.exec(run.output)?.[1];
  expect(id, run.output).toBeDefined();
  return id!;
}

async function eventually(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
  }
}

interface BackendUnderTest {
  readonly name: string;
  readonly programs: readonly string[];
  readonly forwardPolicy: 'ACCEPT' | 'DROP';
  /** The admin's IPv6 forward drop, and the daemon's config (plugin source text). */
  prepare(testbed: Testbed): Promise<string>;
  /** The pinholes in the kernel, as `<client> . <tcp|udp> . <port>`. */
  pinholesInKernel(testbed: Testbed): Promise<string[]>;
  /** What a firewall reload does to upnpd's pinhole rules. */
  losePinholes(testbed: Testbed): Promise<void>;
  /** The admin's saved firewall (`nft list ruleset`, `ip6tables-save`), as netfilter-persistent or nftables.conf keep it. */
  saveFirewall(testbed: Testbed): Promise<string>;
  /** The admin's ways of loading such a save again. */
  readonly reloads: ReadonlyArray<{ readonly name: string; readonly reload: (testbed: Testbed, saved: string) => Promise<void> }>;
}

/** The admin's inet forward chain drops (both families); pinholes are a set in it (forwardJump). */
const NFTABLES: BackendUnderTest = {
  name: 'nftables',
  programs: ['ip', 'upnpc', 'nft', 'iptables-restore'],
  forwardPolicy: 'ACCEPT',
  async prepare(testbed) {
    await installNftAdminFirewall(testbed);
    return NFT_FORWARD_JUMP_PLUGIN;
  },
  async pinholesInKernel(testbed) {
    const listing = await testbed.gateway.exec('nft', ['list', 'table', 'inet', 'filter']);
    return [...listing.matchAll(/2001:db8:7[78]::[0-9a-f]+ \. (tcp|udp) \. \d+/g)].map((m) => m[0]);
  },
  losePinholes: (testbed) => testbed.gateway.exec('nft', ['flush', 'set', 'inet', 'filter', 'upnpd-pinholes']).then(() => undefined),
  saveFirewall: (testbed) => testbed.gateway.exec('nft', ['list', 'ruleset']),
  reloads: [
    // nftables.service (and an nftables.conf written by `nft list ruleset`) replaces the whole ruleset.
    {
      name: 'nft -f after flush ruleset',
      reload: (testbed, saved) => testbed.gateway.exec('nft', ['-f', '-'], { input: `flush ruleset\n${saved}` }).then(() => undefined),
    },
    // Without the flush, nft adds what the save holds to what is there (the set elements among it).
    {
      name: 'nft -f on top of the running ruleset',
      reload: (testbed, saved) => testbed.gateway.exec('nft', ['-f', '-'], { input: saved }).then(() => undefined),
    },
  ],
};

/** ip6tables' FORWARD drops (as the testbed's iptables FORWARD does for IPv4); pinholes are ACCEPT rules in upnpd's chain. */
const IPTABLES: BackendUnderTest = {
  name: 'iptables',
  programs: ['ip', 'upnpc', 'iptables-restore', 'ip6tables-restore', 'ip6tables-save'],
  forwardPolicy: 'DROP',
  async prepare(testbed) {
    const script = [
      '*filter',
      ':FORWARD DROP [0:0]',
      '-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
      `-A FORWARD -i ${testbed.lanInterface} -o ${testbed.wanInterface} -j ACCEPT`,
      'COMMIT',
      '',
    ].join('\n');
    await testbed.gateway.exec('ip6tables-restore', [], { input: script });
    return 'iptables({ pinholes: true })';
  },
  async pinholesInKernel(testbed) {
    const saved = await testbed.gateway.exec('ip6tables-save', ['-t', 'filter']);
    return [...saved.matchAll(/upnpd pinhole (tcp|udp) from \S+ port \d+ to (\S+) port (\d+)/g)].map((m) => `${m[2]} . ${m[1]} . ${m[3]}`);
  },
  losePinholes: (testbed) => testbed.gateway.exec('ip6tables', ['-F', 'UPNPD-PINHOLES']).then(() => undefined),
  saveFirewall: (testbed) => testbed.gateway.exec('ip6tables-save', ['-t', 'filter']),
  reloads: [
    // netfilter-persistent: the filter table replaced by the save.
    { name: 'ip6tables-restore', reload: (testbed, saved) => testbed.gateway.exec('ip6tables-restore', [], { input: saved }).then(() => undefined) },
    // --noflush: the chains the save declares are flushed and refilled, the rest is added to.
    {
      name: 'ip6tables-restore --noflush',
      reload: (testbed, saved) => testbed.gateway.exec('ip6tables-restore', ['--noflush'], { input: saved }).then(() => undefined),
    },
  ],
};

for (const backend of [NFTABLES, IPTABLES])
  describeNetns(`IPv6 pinholes (WANIPv6FirewallControl:1) with the ${backend.name} backend, driven by upnpc`, backend.programs, () => {
    const v6 = TESTBED_IPV6_ADDRESSES;
    let testbed: Testbed;
    let scratchDir: string | undefined;
    let daemon: RunningDaemon | undefined;
    let daemonArgs: string[] = [];

    const fromLan = (...args: string[]) => upnpc(testbed.lan, ['-u', daemon!.url, ...args]);
    const fromLan2 = (...args: string[]) => upnpc(testbed.lan2, ['-u', daemon!.url, ...args]);
    /** Traffic from the WAN host straight to a LAN address (no translation), received (or not) in the first LAN client. */
    const toLan = {
      tcp: (address: string, port: number, options: ReachabilityOptions = {}) => tcpReachable(testbed.wan, address, port, testbed.lan, PASSES_MS, options),
      udp: (address: string, port: number, options: ReachabilityOptions = {}) => udpReachable(testbed.wan, address, port, testbed.lan, PASSES_MS, options),
      tcpBlocked: async (address: string, port: number, options: ReachabilityOptions = {}) =>
        !(await tcpReachable(testbed.wan, address, port, testbed.lan, BLOCKED_MS, options)),
      udpBlocked: async (address: string, port: number, options: ReachabilityOptions = {}) =>
        !(await udpReachable(testbed.wan, address, port, testbed.lan, BLOCKED_MS, options)),
    };
    const pinholeElements = () => backend.pinholesInKernel(testbed);
    /** `upnpd ARGS --runtime-dir …` run by the admin in the gateway. */
    const admin = (...args: string[]) => testbed.gateway.exec(process.execPath, [BIN, ...args, '--runtime-dir', join(scratchDir!, 'run')]);

    beforeAll(async () => {
      scratchDir = await mkdtemp(join(tmpdir(), 'upnpd-pinholes-'));
      testbed = await createTestbed({ forwardPolicy: backend.forwardPolicy, ipv6: true });
      // The first client has a second global address (a privacy address, or a second prefix).
      await testbed.lan.exec('ip', ['-6', 'addr', 'add', `${LAN_CLIENT_SECOND}/${v6.prefixLength}`, 'dev', HOST_INTERFACE, 'nodad']);
      const plugin = await backend.prepare(testbed);
      const configFile = join(scratchDir, 'upnpd.config.mjs');
      const config = [
        `import { defineConfig, iptables, nftables } from ${JSON.stringify(PUBLIC_API)};`,
        `export default defineConfig({ plugins: [${plugin}] });`,
        '',
      ];
      await writeFile(configFile, config.join('\n'));
      daemonArgs = [
        '--lan',
        testbed.lanInterface,
        '--wan',
        testbed.wanInterface,
        '--config',
        configFile,
        '--runtime-dir',
        join(scratchDir, 'run'),
        '--state-dir',
        join(scratchDir, 'state'),
      ];
      daemon = await startDaemonInGateway(testbed, daemonArgs);
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

    it(`runs the ${backend.name} backend`, async () => {
      expect(await eventually(() => Promise.resolve(daemon!.output().includes(`"backend":"${backend.name}"`)), SETTLE_MS)).toBe(true);
    });

    it('TCP and UDP from the WAN host reach the LAN client through its pinholes, are dropped without them, and again after -D', async () => {
      expect(await toLan.tcpBlocked(v6.lanClient, 8080)).toBe(true);
      expect(await toLan.udpBlocked(v6.lanClient, 5060)).toBe(true);
      const status = await fromLan('-S');
      expect(status.output).toContain('Inbound Pinhole Allowed: Yes');

      const tcp = await fromLan('-A', 'empty', '0', v6.lanClient, '8080', TCP, LEASE);
      expectSucceeded(tcp);
      const udp = await fromLan('-A', 'empty', '0', v6.lanClient, '5060', UDP, LEASE);
      expectSucceeded(udp);
      expect(uniqueIdOf(tcp)).not.toBe(uniqueIdOf(udp));
      expect(await toLan.tcp(v6.lanClient, 8080)).toBe(true);
      expect(await toLan.udp(v6.lanClient, 5060)).toBe(true);
      // Only the pinholed ports: another port of the same host stays closed.
      expect(await toLan.tcpBlocked(v6.lanClient, 8081)).toBe(true);

      // The kernel counted the packets: CheckPinholeWorking and GetPinholePackets say so.
      const working = await fromLan('-C', uniqueIdOf(tcp));
      expectSucceeded(working);
      expect(working.output).toContain(`Pinhole ID = ${uniqueIdOf(tcp)} / IsWorking = Yes`);
      const packets = await fromLan('-K', uniqueIdOf(tcp));
      expectSucceeded(packets);
      expect(Number(/PinholePackets = (\d+)/.exec(packets.output)?.[1] ?? 0), packets.output).toBeGreaterThan(0);

      expectSucceeded(await fromLan('-D', uniqueIdOf(tcp)));
      expectSucceeded(await fromLan('-D', uniqueIdOf(udp)));
      expect(await toLan.tcpBlocked(v6.lanClient, 8080)).toBe(true);
      expect(await toLan.udpBlocked(v6.lanClient, 5060)).toBe(true);
      expect(await pinholeElements()).toEqual([]);
    });

    it('a pinhole whose lease ran out is closed in the kernel; -U renews a lease', async () => {
      const renewed = await fromLan('-A', 'empty', '0', v6.lanClient, '7001', TCP, String(SHORT_LEASE_SECONDS));
      expectSucceeded(renewed);
      const expiring = await fromLan('-A', 'empty', '0', v6.lanClient, '7002', TCP, String(SHORT_LEASE_SECONDS));
      expectSucceeded(expiring);
      // upnpc's -U asks CheckPinholeWorking first (709: no traffic yet) and then UpdatePinhole.
      const update = await fromLan('-U', uniqueIdOf(renewed), LEASE);
      expect(update.output).toContain(`UpdatePinhole: Pinhole ID = ${uniqueIdOf(renewed)} with Lease Time: ${LEASE}`);
      expect(update.output).not.toContain('UpdatePinhole: ID');
      expect(await toLan.tcp(v6.lanClient, 7002)).toBe(true);

      expect(await eventually(async () => !(await pinholeElements()).some((e) => e.endsWith('tcp . 7002')), SHORT_LEASE_SECONDS * 1000 + SETTLE_MS)).toBe(true);
      expect(await toLan.tcpBlocked(v6.lanClient, 7002)).toBe(true);
      expect(await toLan.tcp(v6.lanClient, 7001)).toBe(true);
      expectSucceeded(await fromLan('-D', uniqueIdOf(renewed)));
    });

    it('a remote-host-restricted pinhole admits only that host', async () => {
      const run = await fromLan('-A', v6.wanHost, '0', v6.lanClient, '2222', TCP, LEASE);
      expectSucceeded(run);
      expect(await toLan.tcp(v6.lanClient, 2222, { sourceAddress: v6.wanHost })).toBe(true);
      expect(await toLan.tcpBlocked(v6.lanClient, 2222, { sourceAddress: v6.wanHostAlt })).toBe(true);
      expectSucceeded(await fromLan('-D', uniqueIdOf(run)));
    });

    it('a client with two IPv6 addresses opens pinholes to both; another client can neither open one to them nor delete them (606)', async () => {
      // A pinhole with no traffic yet: CheckPinholeWorking answers 709 NoTrafficReceived.
      const first = await fromLan('-A', 'empty', '0', v6.lanClient, '6001', TCP, LEASE);
      expectRefused(await fromLan('-C', uniqueIdOf(first)), 709);
      const second = await fromLan('-A', 'empty', '0', LAN_CLIENT_SECOND, '6002', TCP, LEASE);
      expectSucceeded(first);
      expectSucceeded(second);
      expect(await toLan.tcp(LAN_CLIENT_SECOND, 6002)).toBe(true);

      expectRefused(await fromLan2('-A', 'empty', '0', v6.lanClient, '6003', TCP, LEASE), 606);
      expectRefused(await fromLan2('-A', 'empty', '0', LAN_CLIENT_SECOND, '6003', TCP, LEASE), 606);
      expectRefused(await fromLan2('-D', uniqueIdOf(first)), 606);
      expectRefused(await fromLan2('-U', uniqueIdOf(second), LEASE), 606);
      expect(await toLan.tcp(v6.lanClient, 6001)).toBe(true);
      // The second client's own address is fine.
      const own = await fromLan2('-A', 'empty', '0', v6.lanClient2, '6004', TCP, LEASE);
      expectSucceeded(own);

      for (const [from, run] of [
        [fromLan, first],
        [fromLan, second],
        [fromLan2, own],
      ] as const)
        expectSucceeded(await from('-D', uniqueIdOf(run)));
    });

    it('upnpc -6 without -u discovers the IGD:2 view over IPv6 and drives pinholes (-S, -A, -C, -K, -U, -D) and mappings (-a, -l)', async () => {
      // miniupnpc's discovery asks for IGD:1 first and keeps the first answer; over IPv6 that
      // answer points at the IGD:2 view, which has WANIPv6FirewallControl (and WANIPConnection:2).
      // -i: miniupnpc 2.2.4 calls an IGD whose external address is reserved (the testbed's
      // 203.0.113.1) "not connected?", as in the other discovery tests.
      const over6 = (...args: string[]) => upnpc(testbed.lan, ['-6', '-i', '-m', HOST_INTERFACE, ...args]);
      const status = await over6('-S');
      expect(status.output).toMatch(new RegExp(`desc: http://\\[${v6.gatewayLan}\\]:\\d+/rootDesc\\.xml`));
      // It spoke from one of its global IPv6 addresses.
      expect(status.output).toMatch(/Local LAN ip address : 2001:db8:77::/);
      expect(status.output).toContain('Inbound Pinhole Allowed: Yes');
      const add = await over6('-A', 'empty', '0', v6.lanClient, '3333', UDP, LEASE);
      expectSucceeded(add);
      expect(await toLan.udp(v6.lanClient, 3333)).toBe(true);
      const id = uniqueIdOf(add);
      expect((await over6('-C', id)).output).toContain(`Pinhole ID = ${id} / IsWorking = Yes`);
      expect(Number(/PinholePackets = (\d+)/.exec((await over6('-K', id)).output)?.[1] ?? 0)).toBeGreaterThan(0);
      expect((await over6('-U', id, '600')).output).toContain(`UpdatePinhole: Pinhole ID = ${id} with Lease Time: 600`);
      expectSucceeded(await over6('-D', id));
      expect(await toLan.udpBlocked(v6.lanClient, 3333)).toBe(true);
      // The same discovery finds WANIPConnection: it lists a mapping made over IPv4 (secure mode
      // refuses an IPv6 requester's mapping to, or deletion of, an IPv4 client's port: 606).
      expectSucceeded(await fromLan('-e', 'over v4', '-a', TESTBED_ADDRESSES.lanClient, '9010', '9010', TCP, LEASE));
      try {
        expect(parseUpnpcListing((await over6('-l')).output)).toMatchObject([
          { protocol: TCP, externalPort: 9010, internalClient: TESTBED_ADDRESSES.lanClient, description: 'over v4' },
        ]);
        expectRefused(await over6('-d', '9010', TCP), 606);
      } finally {
        expectSucceeded(await fromLan('-d', '9010', TCP));
      }
    });

    it('the admin sees pinholes in upnpd list, closes one with upnpd delete pinhole and the rest with upnpd purge --client', async () => {
      const udp = await fromLan('-A', 'empty', '0', v6.lanClient, '6001', UDP, LEASE);
      const tcp = await fromLan('-A', 'empty', '0', LAN_CLIENT_SECOND, '6002', TCP, LEASE);
      const other = await fromLan2('-A', 'empty', '0', v6.lanClient2, '6003', TCP, LEASE);
      for (const run of [udp, tcp, other]) expectSucceeded(run);
      const listed = JSON.parse(await admin('list', '--json')) as Listing;
      expect(listed.pinholes).toEqual(
        expect.arrayContaining([
          {
            uniqueId: Number(uniqueIdOf(udp)),
            remoteHost: '',
            remotePort: 0,
            internalClient: v6.lanClient,
            internalPort: 6001,
            protocol: UDP,
            leaseSecondsLeft: expect.any(Number) as unknown,
            source: expect.stringMatching(/^upnp-igd:/) as unknown,
            createdBy: TESTBED_ADDRESSES.lanClient,
          },
        ]),
      );
      expect(await admin('list')).toMatch(new RegExp(`pinhole +${uniqueIdOf(tcp)} TCP -> \\[${LAN_CLIENT_SECOND}\\]:6002 from \\*`));
      expect(await toLan.udp(v6.lanClient, 6001)).toBe(true);

      expect(await admin('delete', 'pinhole', uniqueIdOf(udp))).toMatch(/^deleted pinhole/);
      expect(await pinholeElements()).not.toContain(`${v6.lanClient} . udp . 6001`);
      expect(await toLan.udpBlocked(v6.lanClient, 6001)).toBe(true);

      expect(await admin('purge', '--client', LAN_CLIENT_SECOND)).toMatch(/^purged pinhole +\d+ TCP -> \[2001:db8:77::20\]:6002/);
      expect(await pinholeElements()).not.toContain(`${LAN_CLIENT_SECOND} . tcp . 6002`);
      // The other client's pinhole stays.
      expect((JSON.parse(await admin('list', '--json')) as Listing).pinholes.map((p) => p.internalClient)).toEqual([v6.lanClient2]);
      expectSucceeded(await fromLan2('-D', uniqueIdOf(other)));
    });

    it('IPv4 port mappings keep working alongside pinholes', async () => {
      const pinhole = await fromLan('-A', 'empty', '0', v6.lanClient, '9001', TCP, LEASE);
      expectSucceeded(pinhole);
      expectSucceeded(await fromLan('-a', TESTBED_ADDRESSES.lanClient, '9000', '9000', TCP, LEASE));
      expect(await tcpReachable(testbed.wan, TESTBED_ADDRESSES.gatewayWan, 9000, testbed.lan, PASSES_MS)).toBe(true);
      expect(await toLan.tcp(v6.lanClient, 9001)).toBe(true);
      expectSucceeded(await fromLan('-d', '9000', TCP));
      expectSucceeded(await fromLan('-D', uniqueIdOf(pinhole)));
    });

    it('a pinhole the firewall lost (a reload emptied the set) comes back by itself', async () => {
      const run = await fromLan('-A', 'empty', '0', v6.lanClient, '4444', TCP, LEASE);
      expectSucceeded(run);
      // Proof that the loss happened: the daemon's repair names the pinholes it found missing (looking
      // at the kernel right after the loss raced with a repair that had already run).
      const repairs = () => daemon!.output().match(/had lost part of upnpd's rules[^\n]*pinhole\(s\)/g)?.length ?? 0;
      const repairsBefore = repairs();
      await backend.losePinholes(testbed);
      expect(await eventually(async () => repairs() > repairsBefore && (await pinholeElements()).some((e) => e.endsWith('tcp . 4444')), SETTLE_MS)).toBe(true);
      expect(await toLan.tcp(v6.lanClient, 4444)).toBe(true);
      expectSucceeded(await fromLan('-D', uniqueIdOf(run)));
    });

    it("a deleted pinhole's UniqueID is not given out again at once: the old ID answers 704 NoSuchEntry, the new pinhole has its own", async () => {
      const first = await fromLan('-A', 'empty', '0', v6.lanClient, '4446', TCP, LEASE);
      expectSucceeded(first);
      expectSucceeded(await fromLan('-D', uniqueIdOf(first)));
      const again = await fromLan('-A', 'empty', '0', v6.lanClient, '4446', TCP, LEASE);
      expectSucceeded(again);
      expect(uniqueIdOf(again)).not.toBe(uniqueIdOf(first));
      expectRefused(await fromLan('-D', uniqueIdOf(first)), 704);
      expectRefused(await fromLan('-C', uniqueIdOf(first)), 704);
      expectRefused(await fromLan('-K', uniqueIdOf(first)), 704);
      expect(await toLan.tcp(v6.lanClient, 4446)).toBe(true);
      expectSucceeded(await fromLan('-D', uniqueIdOf(again)));
      expectRefused(await fromLan('-D', uniqueIdOf(again)), 704);
      expect(await toLan.tcpBlocked(v6.lanClient, 4446)).toBe(true);
    });

    it('a pinhole the firewall lost is deleted at once all the same (before a repair put it back), and stays closed', async () => {
      const run = await fromLan('-A', 'empty', '0', v6.lanClient, '4445', TCP, LEASE);
      expectSucceeded(run);
      await backend.losePinholes(testbed);
      expectSucceeded(await fromLan('-D', uniqueIdOf(run)));
      expect((JSON.parse(await admin('list', '--json')) as Listing).pinholes.map((p) => p.uniqueId)).not.toContain(Number(uniqueIdOf(run)));
      await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
      expect(await pinholeElements()).not.toContain(`${v6.lanClient} . tcp . 4445`);
      expect(await toLan.tcpBlocked(v6.lanClient, 4445)).toBe(true);
    });

    it('a restart keeps the pinholes whose leases have not ended (same UniqueID, packets pass) and not one that ended meanwhile, whose UniqueID is not given out again', async () => {
      const kept = await fromLan('-A', 'empty', '0', v6.lanClient, '4447', TCP, LEASE);
      const ended = await fromLan('-A', 'empty', '0', v6.lanClient, '4448', TCP, String(SHORT_LEASE_SECONDS));
      for (const run of [kept, ended]) expectSucceeded(run);
      await daemon!.stop();
      await new Promise((resolve) => setTimeout(resolve, SHORT_LEASE_SECONDS * 1000));
      daemon = await startDaemonInGateway(testbed, daemonArgs);
      expect(await eventually(async () => (await pinholeElements()).some((e) => e.endsWith('tcp . 4447')), SETTLE_MS)).toBe(true);
      expect(await toLan.tcp(v6.lanClient, 4447)).toBe(true);
      expect(await toLan.tcpBlocked(v6.lanClient, 4448)).toBe(true);
      expectRefused(await fromLan('-D', uniqueIdOf(ended)), 704);
      // A new pinhole does not take the UniqueID of the one that ended (a client still holding it would renew or delete another's).
      const next = await fromLan('-A', 'empty', '0', v6.lanClient, '4449', TCP, LEASE);
      expectSucceeded(next);
      expect([uniqueIdOf(kept), uniqueIdOf(ended)]).not.toContain(uniqueIdOf(next));
      expectRefused(await fromLan('-U', uniqueIdOf(ended), LEASE), 704);
      for (const run of [kept, next]) expectSucceeded(await fromLan('-D', uniqueIdOf(run)));
    });

    it('the remote host, remote port and protocol of a pinhole filter real packets; the wildcards admit any', async () => {
      // One remote port, any remote host (UDP).
      const port = await fromLan('-A', 'empty', '4000', v6.lanClient, '5001', UDP, LEASE);
      // One remote host and port (TCP; each source port once per destination: TIME_WAIT).
      const hostPort = await fromLan('-A', v6.wanHost, '4100', v6.lanClient, '5002', TCP, LEASE);
      expectSucceeded(port);
      expectSucceeded(hostPort);
      expect(await toLan.udp(v6.lanClient, 5001, { sourcePort: 4000 })).toBe(true);
      expect(await toLan.udp(v6.lanClient, 5001, { sourcePort: 4000, sourceAddress: v6.wanHostAlt })).toBe(true);
      expect(await toLan.udpBlocked(v6.lanClient, 5001, { sourcePort: 4001 })).toBe(true);
      expect(await toLan.tcpBlocked(v6.lanClient, 5001, { sourcePort: 4000 })).toBe(true);
      expect(await toLan.tcp(v6.lanClient, 5002, { sourcePort: 4100, sourceAddress: v6.wanHost })).toBe(true);
      expect(await toLan.tcpBlocked(v6.lanClient, 5002, { sourcePort: 4100, sourceAddress: v6.wanHostAlt })).toBe(true);
      expect(await toLan.tcpBlocked(v6.lanClient, 5002, { sourcePort: 4101, sourceAddress: v6.wanHost })).toBe(true);
      expect(await toLan.udpBlocked(v6.lanClient, 5002, { sourcePort: 4102, sourceAddress: v6.wanHost })).toBe(true);
      // A pinhole's address is that host alone: the client's second address stays closed.
      expect(await toLan.udpBlocked(LAN_CLIENT_SECOND, 5001, { sourcePort: 4000 })).toBe(true);
      for (const run of [port, hostPort]) expectSucceeded(await fromLan('-D', uniqueIdOf(run)));
      expect(await toLan.udpBlocked(v6.lanClient, 5001, { sourcePort: 4000 })).toBe(true);
    });

    for (const { name, reload } of backend.reloads)
      it(`a reload (${name}) of a firewall saved while pinholes were open does not reopen them once deleted or expired`, async () => {
        const deleted = await fromLan('-A', v6.wanHost, '0', v6.lanClient, '8443', TCP, LEASE);
        const expired = await fromLan('-A', 'empty', '0', v6.lanClient, '8444', UDP, String(SHORT_LEASE_SECONDS));
        const kept = await fromLan('-A', 'empty', '0', v6.lanClient, '8445', UDP, LEASE);
        for (const run of [deleted, expired, kept]) expectSucceeded(run);
        const saved = await backend.saveFirewall(testbed);
        expect(saved).toMatch(/8443/);
        const closedInKernel = async () => !(await pinholeElements()).some((e) => / \. (tcp \. 8443|udp \. 8444)$/.test(e));
        expectSucceeded(await fromLan('-D', uniqueIdOf(deleted)));
        expect(await eventually(closedInKernel, SHORT_LEASE_SECONDS * 1000 + SETTLE_MS)).toBe(true);
        const surplusRepairs = () => daemon!.output().match(/had lost part of upnpd's rules[^\n]*that the table does not hold/g)?.length ?? 0;
        const repairsBefore = surplusRepairs();

        await reload(testbed, saved);
        // The daemon closes them again within a bounded time (what the kernel holds, then real packets).
        const closedAgain = await eventually(closedInKernel, SETTLE_MS);
        expect(await toLan.tcpBlocked(v6.lanClient, 8443, { sourceAddress: v6.wanHost })).toBe(true);
        expect(await toLan.udpBlocked(v6.lanClient, 8444)).toBe(true);
        expect(closedAgain).toBe(true);
        // It did so because it saw them come back (a proof that the reload brought them back).
        expect(surplusRepairs()).toBeGreaterThan(repairsBefore);
        // The pinhole still held passes, and the admin's own rules are what the save holds.
        expect(await toLan.udp(v6.lanClient, 8445)).toBe(true);
        expect(await toLan.tcpBlocked(v6.lanClient, 8446)).toBe(true);
        expectSucceeded(await fromLan('-D', uniqueIdOf(kept)));
      });

    // Last: it renumbers the LAN.
    it('a LAN prefix change closes the pinholes to addresses that left the LAN, in the table and the kernel; the new prefix keeps its own', async () => {
      const newPrefixClient = '2001:db8:78::10';
      const gw = (...args: string[]) => testbed.gateway.exec('ip', ['-6', ...args]);
      // The new delegated prefix arrives first (gateway and client, as SLAAC would), then the old one goes.
      await testbed.lan.exec('ip', ['-6', 'addr', 'add', `${newPrefixClient}/64`, 'dev', HOST_INTERFACE, 'nodad']);
      await gw('addr', 'add', '2001:db8:78::1/64', 'dev', testbed.lanInterface, 'nodad');
      await testbed.wan.exec('ip', ['-6', 'route', 'add', '2001:db8:78::/64', 'via', v6.gatewayWan]);
      const listedIds = async () => (JSON.parse(await admin('list', '--json')) as Listing).pinholes.map((p) => p.uniqueId);
      const old = await fromLan('-A', 'empty', '0', v6.lanClient, '7001', TCP, LEASE);
      expectSucceeded(old);
      // The daemon has to see the new prefix before it admits a pinhole to it.
      let kept: UpnpcRun | undefined;
      await eventually(async () => {
        kept = await fromLan('-A', 'empty', '0', newPrefixClient, '7002', TCP, LEASE);
        return !/failed with code|returned : [1-9]/.test(kept.output);
      }, SETTLE_MS);
      expectSucceeded(kept!);
      expect(await toLan.tcp(v6.lanClient, 7001)).toBe(true);
      expect(await toLan.tcp(newPrefixClient, 7002)).toBe(true);

      await gw('addr', 'del', `${v6.gatewayLan}/${v6.prefixLength}`, 'dev', testbed.lanInterface);
      // A route to the old prefix stays, so only the firewall decides whether traffic passes.
      await gw('route', 'replace', `2001:db8:77::/${v6.prefixLength}`, 'dev', testbed.lanInterface);
      expect(await eventually(async () => !(await listedIds()).includes(Number(uniqueIdOf(old))), SETTLE_MS)).toBe(true);
      expect(await listedIds()).toEqual([Number(uniqueIdOf(kept!))]);
      expect(await eventually(async () => !(await pinholeElements()).includes(`${v6.lanClient} . tcp . 7001`), SETTLE_MS)).toBe(true);
      expect(await pinholeElements()).toContain(`${newPrefixClient} . tcp . 7002`);
      expect(await toLan.tcpBlocked(v6.lanClient, 7001)).toBe(true);
      expect(await toLan.tcp(newPrefixClient, 7002)).toBe(true);
      expect(daemon!.output()).toMatch(/closed 1 pinhole\(s\) to addresses no longer on the LAN/);
    });
  });
