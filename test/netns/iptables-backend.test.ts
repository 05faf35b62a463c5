import 'reflect-metadata';
import { afterAll, afterEach, beforeAll, beforeEach, expect, it } from 'vitest';
import { silentLogger } from '../../core/logger.js';
import type { RuleSpec } from '../../core/mapping/types.js';
import { IptablesBackend } from '../../plugins/iptables/backend.js';
import { buildRestoreScript, iptablesOptionsSchema, programsOf, type IptablesOptions } from '../../plugins/iptables/rules.js';
import { MappingService } from '../../core/mapping/service.js';
import { PluginDriver } from '../../core/plugins/driver.js';
import { backendPluginFor, DEFAULT_LEASE, ManualClock } from '../support/fakes.js';
import { childProcesses } from '../support/processes.js';
import { describeNetns } from './netns.js';
import { createTestbed, firewallSnapshot, ruleTo, tcpReachable, udpReachable, type Testbed } from './topology.js';

/** A delivery that should happen gets this long; one that should not, this long. */
const PASSES_MS = 5_000;
const BLOCKED_MS = 1_500;
/** The restore session's sync chain under the default chain names. */
const SYNC_CHAIN = 'UPNPD-PREROUTING.sync';

for (const flavour of ['iptables', 'iptables-legacy'] as const) {
  const programs = programsOf(flavour);
  describeNetns(`${flavour} backend in the testbed`, [programs.iptables, programs.restore, programs.save], () => {
    let testbed: Testbed;
    let adminRules: string[];
    let backend: IptablesBackend;
    const a = () => testbed.addresses;
    const makeBackend = (options: Partial<IptablesOptions> = {}) =>
      new IptablesBackend(
        iptablesOptionsSchema.parse({ flavour, wanInterface: testbed.wanInterface, ...options }),
        testbed.gateway.runner(),
        silentLogger,
        undefined,
      );
    const save = () => testbed.gateway.exec(programs.save, []);
    const mapping = (externalPort: number, overrides: Partial<RuleSpec> = {}) => ruleTo(a().lanClient, externalPort, overrides);
    const fromWan = {
      tcp: (port: number, listener = testbed.lan, options = {}) => tcpReachable(testbed.wan, a().gatewayWan, port, listener, PASSES_MS, options),
      udp: (port: number, listener = testbed.lan, options = {}) => udpReachable(testbed.wan, a().gatewayWan, port, listener, PASSES_MS, options),
      tcpBlocked: async (port: number, listener = testbed.lan, options = {}) =>
        !(await tcpReachable(testbed.wan, a().gatewayWan, port, listener, BLOCKED_MS, options)),
      udpBlocked: async (port: number, listener = testbed.lan, options = {}) =>
        !(await udpReachable(testbed.wan, a().gatewayWan, port, listener, BLOCKED_MS, options)),
    };

    beforeAll(async () => {
      testbed = await createTestbed({ adminFlavour: flavour });
      adminRules = await firewallSnapshot(testbed.gateway, flavour);
    });
    afterAll(async () => {
      await testbed?.destroy();
    });
    beforeEach(async () => {
      backend = makeBackend();
      await backend.probe();
      await backend.init();
    });
    afterEach(async () => {
      await backend.shutdown();
    });

    it('starts from a gateway where the LAN reaches the WAN but the WAN reaches nothing in the LAN', async () => {
      expect(await tcpReachable(testbed.lan, a().wanHost, 7000, testbed.wan, PASSES_MS)).toBe(true);
      expect(await udpReachable(testbed.lan2, a().wanHost, 7000, testbed.wan, PASSES_MS)).toBe(true);
      expect(await fromWan.tcpBlocked(7000)).toBe(true);
      expect(await fromWan.udpBlocked(7000)).toBe(true);
    });

    it('forwards TCP and UDP from the WAN address to the LAN client, and stops after removal', async () => {
      const tcp = mapping(8080, { internalPort: 80 });
      const udp = mapping(5353, { protocol: 'UDP' });
      expect(await fromWan.tcpBlocked(8080, testbed.lan, { listenPort: 80 })).toBe(true);

      await backend.apply({ remove: [], add: [tcp, udp] });
      expect(await fromWan.tcp(8080, testbed.lan, { listenPort: 80 })).toBe(true);
      expect(await fromWan.udp(5353)).toBe(true);
      expect(await backend.list()).toEqual([tcp, udp]);

      await backend.apply({ remove: [tcp, udp], add: [] });
      expect(await fromWan.tcpBlocked(8080, testbed.lan, { listenPort: 80 })).toBe(true);
      expect(await fromWan.udpBlocked(5353)).toBe(true);
      expect(await backend.list()).toEqual([]);
      expect(await save()).not.toMatch(/^-A UPNPD-.* -j (DNAT|ACCEPT)\b/m);
    });

    it('needs its ACCEPT rule under a FORWARD policy of DROP (and none without filter rules under ACCEPT)', async () => {
      const dnatOnly = makeBackend({ insertForwardRules: false });
      await dnatOnly.init();
      await dnatOnly.apply({ remove: [], add: [mapping(8081)] });
      expect(await fromWan.tcpBlocked(8081)).toBe(true);
      await testbed.gateway.exec(programs.iptables, ['-P', 'FORWARD', 'ACCEPT']);
      try {
        expect(await fromWan.tcp(8081)).toBe(true);
      } finally {
        await testbed.gateway.exec(programs.iptables, ['-P', 'FORWARD', 'DROP']);
        await dnatOnly.shutdown();
      }
    });

    it('admits only the remote host a mapping is restricted to', async () => {
      await backend.apply({ remove: [], add: [mapping(9000, { remoteHost: a().wanHostAlt })] });
      expect(await fromWan.tcp(9000, testbed.lan, { sourceAddress: a().wanHostAlt })).toBe(true);
      expect(await fromWan.tcpBlocked(9000, testbed.lan, { sourceAddress: a().wanHost })).toBe(true);
    });

    it('sends a remote host to its own mapping before the wildcard one on the same port', async () => {
      await backend.apply({ remove: [], add: [mapping(9001), mapping(9001, { remoteHost: a().wanHostAlt, internalClient: a().lanClient2 })] });
      expect(await fromWan.tcp(9001, testbed.lan2, { sourceAddress: a().wanHostAlt })).toBe(true);
      expect(await fromWan.tcp(9001, testbed.lan, { sourceAddress: a().wanHost })).toBe(true);
    });

    it(
      flavour === 'iptables'
        ? 'applies change sets through one long-lived iptables-restore (nf_tables), which ends at shutdown'
        : 'applies each change set with an iptables-restore of its own (x_tables: every COMMIT rewrites the table), none left running',
      async () => {
        const restores = () => childProcesses(process.pid, `${programs.restore} -w 10 --noflush`);
        const syncChain = async () => (await save()).split('\n').includes(`:${SYNC_CHAIN} - [0:0]`);
        for (const port of [7900, 7901, 7902]) await backend.apply({ remove: [], add: [mapping(port)] });
        await backend.apply({ remove: [mapping(7901)], add: [] });
        expect(restores()).toHaveLength(flavour === 'iptables' ? 1 : 0);
        // The session's empty chain in nat, whose flush marks the end of each change set.
        expect(await syncChain()).toBe(flavour === 'iptables');
        expect(await backend.list()).toEqual([mapping(7900), mapping(7902)]);
        expect(await fromWan.tcp(7902)).toBe(true);
        expect(await fromWan.tcpBlocked(7901)).toBe(true);
        await backend.shutdown();
        expect(restores()).toEqual([]);
        expect(await syncChain()).toBe(false);
        await backend.init();
      },
    );

    it('replaces a mapping leaving exactly one rule pair', async () => {
      const first = mapping(7000);
      const second = mapping(7000, { internalClient: a().lanClient2 });
      await backend.apply({ remove: [], add: [first] });
      await backend.apply({ remove: [first], add: [second] });
      expect(await backend.list()).toEqual([second]);
      const rulesOf7000 = (await save()).split('\n').filter((l) => /^-A UPNPD-.* --dport 7000 -j (DNAT|ACCEPT)\b/.test(l));
      expect(rulesOf7000).toHaveLength(2);
      expect(rulesOf7000).toEqual(
        expect.arrayContaining([
          expect.stringMatching(new RegExp(`^-A UPNPD-PREROUTING\\.t06d .* -j DNAT --to-destination ${a().lanClient2}:7000$`)),
          expect.stringMatching(new RegExp(`^-A UPNPD-FORWARD\\.t06d -d ${a().lanClient2}/32 .* -j ACCEPT$`)),
        ]),
      );
      expect(await fromWan.tcp(7000, testbed.lan2)).toBe(true);
      expect(await fromWan.tcpBlocked(7000, testbed.lan)).toBe(true);
    });

    it('init is idempotent (one jump per chain) and a restart starts clean', async () => {
      await backend.apply({ remove: [], add: [mapping(7100)] });
      await backend.init();
      await makeBackend().init();
      const rules = await save();
      expect(rules.match(/"upnpd jump" -j UPNPD-PREROUTING/g)).toHaveLength(1);
      expect(rules.match(/"upnpd jump" -j UPNPD-FORWARD/g)).toHaveLength(1);
      expect(await backend.list()).toEqual([]);
    });

    it('shutdown leaves no upnpd rule or chain, and the admin rules exactly as they were', async () => {
      await backend.apply({ remove: [], add: [mapping(7200), mapping(7201, { protocol: 'UDP', remoteHost: a().wanHostAlt })] });
      await backend.shutdown();
      await backend.shutdown();
      expect(await save()).not.toMatch(/upnpd|UPNPD/);
      expect(await firewallSnapshot(testbed.gateway, flavour)).toEqual(adminRules);
      // Outbound traffic the admin allows still flows.
      expect(await tcpReachable(testbed.lan, a().wanHost, 7202, testbed.wan, PASSES_MS)).toBe(true);
    });

    it('with the built-in chains (seed-compatible), shutdown removes only its tagged rules', async () => {
      await backend.shutdown();
      backend = makeBackend({ forwardChain: 'FORWARD', preroutingChain: 'PREROUTING' });
      await backend.init();
      await backend.apply({ remove: [], add: [mapping(7300)] });
      expect(await save()).toMatch(/^-A FORWARD -p tcp -m tcp --dport 4096:8191 -m comment --comment "upnpd shard" -j UPNPD-FORWARD\.t1$/m);
      expect(await fromWan.tcp(7300)).toBe(true);
      await backend.shutdown();
      expect(await firewallSnapshot(testbed.gateway, flavour)).toEqual(adminRules);
    });

    /** upnpd's chains in the saved tables, sorted; the restore session's sync chain (there while it runs, under nf_tables) left out. */
    const upnpdChains = async () =>
      (await save())
        .split('\n')
        .filter((l) => l.startsWith(':UPNPD-') && !l.startsWith(`:${SYNC_CHAIN} `))
        .map((l) => l.slice(1).split(' ')[0])
        .sort();

    it('reaches the LAN client through mappings in the lowest and the highest shard; the last mapping out of a shard takes its chains along', async () => {
      const low = mapping(1);
      const highUdp = mapping(65535, { protocol: 'UDP' });
      const highTcp = mapping(65534);
      await backend.apply({ remove: [], add: [low, highUdp, highTcp] });
      expect(await fromWan.tcp(1)).toBe(true);
      expect(await fromWan.udp(65535)).toBe(true);
      expect(await fromWan.tcp(65534)).toBe(true);
      expect(await fromWan.tcpBlocked(65533)).toBe(true);

      await backend.apply({ remove: [low, highUdp], add: [] });
      expect(await fromWan.tcpBlocked(1)).toBe(true);
      expect(await fromWan.udpBlocked(65535)).toBe(true);
      expect(await fromWan.tcp(65534)).toBe(true);
      expect(await upnpdChains()).toEqual([
        'UPNPD-FORWARD',
        'UPNPD-FORWARD.t3ff',
        'UPNPD-FORWARD.tf',
        'UPNPD-PREROUTING',
        'UPNPD-PREROUTING.t3ff',
        'UPNPD-PREROUTING.tf',
      ]);
      await backend.apply({ remove: [highTcp], add: [] });
      expect(await upnpdChains()).toEqual(['UPNPD-FORWARD', 'UPNPD-PREROUTING']);
    });

    it('after a reload of the admin firewall, check and resync (what the reconciler runs) put back every shard, low and high', async () => {
      const rules = [mapping(2), mapping(64000, { protocol: 'UDP' }), mapping(20000)];
      await backend.apply({ remove: [], add: rules });
      const before = await upnpdChains();
      await testbed.gateway.exec(programs.restore, [], { input: `${adminRules.join('\n')}\n` });
      expect(await fromWan.tcpBlocked(2)).toBe(true);
      expect((await backend.check(rules)).missing).toContain('the rules of 3 of 3 mapping(s)');

      await backend.resync(rules);
      expect(await backend.check(rules)).toEqual({ missing: [] });
      expect(await upnpdChains()).toEqual(before);
      expect(await fromWan.tcp(2)).toBe(true);
      expect(await fromWan.udp(64000)).toBe(true);
      expect(await fromWan.tcp(20000)).toBe(true);
      // Changes after the resync start from the shards it made.
      await backend.apply({ remove: [rules[0]!], add: [mapping(3)] });
      expect(await fromWan.tcp(3)).toBe(true);
      expect(await backend.list()).toEqual([mapping(3), rules[2], rules[1]]);
    });

    it('starts over the single-chain layout of earlier versions: its rules go, its mappings come back in shards', async () => {
      const old = [
        '*nat',
        `-A UPNPD-PREROUTING -i ${testbed.wanInterface} -p tcp -m tcp --dport 7700 -m comment --comment "upnpd map tcp/7700 to ${a().lanClient}:7700" -j DNAT --to-destination ${a().lanClient}:7700`,
        'COMMIT',
        '*filter',
        `-A UPNPD-FORWARD -d ${a().lanClient}/32 -i ${testbed.wanInterface} -p tcp -m tcp --dport 7700 -m comment --comment "upnpd map tcp/7700 to ${a().lanClient}:7700" -j ACCEPT`,
        'COMMIT',
        '',
      ].join('\n');
      await testbed.gateway.exec(programs.restore, ['--noflush'], { input: old });
      expect(await fromWan.tcp(7700)).toBe(true);
      const restarted = makeBackend();
      await restarted.init();
      expect(await save()).not.toContain('"upnpd map');
      await restarted.resync([mapping(7700)]);
      expect(await restarted.list()).toEqual([mapping(7700)]);
      expect(await fromWan.tcp(7700)).toBe(true);
    });

    it('a change set whose nat part fails changes nothing (previous mappings keep working)', async () => {
      await backend.apply({ remove: [], add: [mapping(7400)] });
      // Not checked by the schema here on purpose: iptables itself refuses this name.
      const broken = new IptablesBackend(
        { ...iptablesOptionsSchema.parse({ flavour }), wanInterface: 'name-too-long-for-linux' },
        testbed.gateway.runner(),
        silentLogger,
        undefined,
      );
      await expect(broken.apply({ remove: [], add: [mapping(7401)] })).rejects.toThrow(/IFNAMSIZ/);
      expect(await backend.list()).toEqual([mapping(7400)]);
      expect(await fromWan.tcp(7400)).toBe(true);
    });

    it('a change set whose filter part fails after nat committed is undone: previous rules intact, nothing half-applied', async () => {
      const kept = mapping(7500);
      const victim = mapping(7501);
      await backend.apply({ remove: [], add: [kept, victim] });
      // Someone else deletes the victim's ACCEPT rule: removing the victim now fails in the filter table.
      const acceptOfVictim = buildRestoreScript(
        { remove: [], add: [victim] },
        { ...iptablesOptionsSchema.parse({ flavour }), wanInterface: testbed.wanInterface },
      )
        .script.split('\n')
        .find((l) => l.startsWith('-A UPNPD-FORWARD.') && l.endsWith(' -j ACCEPT'))!
        .replace(/^-A /, '-D ');
      await testbed.gateway.exec(programs.restore, ['--noflush'], { input: `*filter\n${acceptOfVictim}\nCOMMIT\n` });

      await expect(backend.apply({ remove: [victim], add: [mapping(7502)] })).rejects.toThrow(/line \d+.*-D UPNPD-FORWARD/);
      // The nat part was undone (no 7502); the victim's lone DNAT is not a mapping for list(), and
      // check names it missing, so that the core's reconciliation resyncs it whole.
      const dnats = () =>
        save().then((out) =>
          out
            .split('\n')
            .filter((l) => l.startsWith('-A UPNPD-PREROUTING.') && l.includes('-j DNAT'))
            .map((l) => /--dport (\d+)/.exec(l)![1]),
        );
      expect(await dnats()).toEqual(['7500', '7501']);
      expect(await backend.list()).toEqual([kept]);
      expect(await fromWan.tcp(7500)).toBe(true);
      expect(await fromWan.tcpBlocked(7502)).toBe(true);

      expect((await backend.check([kept, victim])).missing).toEqual(['the rules of 1 of 2 mapping(s)']);
      await backend.resync([kept, victim]);
      expect(await backend.list()).toEqual([kept, victim]);
      expect(await dnats()).toEqual(['7500', '7501']);
      await backend.apply({ remove: [victim], add: [] });
      expect(await dnats()).toEqual(['7500']);
    });

    it('with the mapping service: after a firewall reload dropped upnpd chains, the next change restores every mapping', async () => {
      const driver = new PluginDriver([backendPluginFor(backend, 'iptables')], silentLogger);
      const mappings = new MappingService(driver, driver.firewall, new ManualClock(), DEFAULT_LEASE, silentLogger);
      const requester = { address: a().lanClient, via: 'test' };
      const request = (port: number) => ({ ...mapping(port), enabled: true, description: 'test', leaseSeconds: 0 });
      try {
        await mappings.add(request(7600), requester);
        // The admin reloads their firewall: nat and filter are replaced by their own rules only.
        await testbed.gateway.exec(programs.restore, [], { input: `${adminRules.join('\n')}\n` });
        expect(await save()).not.toContain('UPNPD');

        await mappings.add(request(7601), requester);
        expect(await backend.list()).toEqual([mapping(7600), mapping(7601)]);
        expect(await fromWan.tcp(7600)).toBe(true);
        expect(await fromWan.tcp(7601)).toBe(true);
      } finally {
        await mappings.close();
      }
    });

    it('check names what a reload removed (chains, jumps, mappings), and resync puts it all back in one run', async () => {
      const rules = [mapping(8080, { internalPort: 80 }), mapping(5353, { protocol: 'UDP' })];
      await backend.apply({ remove: [], add: rules });
      expect(await backend.check(rules)).toEqual({ missing: [] });

      // The admin flushes FORWARD and nat PREROUTING and puts their own rules back: upnpd's chains stay, its jumps are gone.
      await testbed.gateway.exec(programs.iptables, ['-F', 'FORWARD']);
      await testbed.gateway.exec(programs.iptables, ['-t', 'nat', '-F', 'PREROUTING']);
      const forwardRules = adminRules.filter((line) => line.startsWith('-A FORWARD '));
      await testbed.gateway.exec(programs.restore, ['--noflush'], { input: ['*filter', ...forwardRules, 'COMMIT', ''].join('\n') });
      expect((await backend.check(rules)).missing).toEqual([
        'the jump from PREROUTING to UPNPD-PREROUTING (nat)',
        'the jump from FORWARD to UPNPD-FORWARD (filter)',
      ]);
      expect(await fromWan.tcpBlocked(8080, testbed.lan, { listenPort: 80 })).toBe(true);
      await backend.resync(rules);
      expect(await backend.check(rules)).toEqual({ missing: [] });
      expect(await fromWan.tcp(8080, testbed.lan, { listenPort: 80 })).toBe(true);

      // A full restore of the admin's rules: upnpd's chains are gone too.
      await testbed.gateway.exec(programs.restore, [], { input: `${adminRules.join('\n')}\n` });
      expect((await backend.check(rules)).missing).toEqual([
        'chain UPNPD-PREROUTING (nat)',
        'the jump from PREROUTING to UPNPD-PREROUTING (nat)',
        'chain UPNPD-FORWARD (filter)',
        'the jump from FORWARD to UPNPD-FORWARD (filter)',
        'the rules of 2 of 2 mapping(s)',
      ]);
      await backend.resync(rules);
      expect(await backend.check(rules)).toEqual({ missing: [] });
      expect(await backend.list()).toEqual(rules);
      expect(await fromWan.tcp(8080, testbed.lan, { listenPort: 80 })).toBe(true);
      expect(await fromWan.udp(5353)).toBe(true);
    });
  });
}
