import 'reflect-metadata';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { silentLogger } from '../../core/logger.js';
import type { RuleSpec } from '../../core/mapping/types.js';
import { NftablesBackend } from '../../plugins/nftables/backend.js';
import { nftablesOptionsSchema, type NftablesUserOptions } from '../../plugins/nftables/options.js';
import { mapping } from '../../plugins/nftables/testing/golden-scripts.js';
import { describeNetns, TestNamespace } from './netns.js';

/** A plain admin firewall: its own inet table that drops forwarded traffic by default. */
const ADMIN_FIREWALL = `table inet filter {
	chain input {
		type filter hook input priority filter; policy accept;
		ct state established,related accept
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname "lan0" oifname "wan0" accept
	}
}
`;

/** The admin's iptables (nf_tables flavour) rules: FORWARD drops, the LAN is masqueraded. */
const ADMIN_IPTABLES = `*filter
:FORWARD DROP [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
*nat
-A POSTROUTING -s 192.168.77.0/24 -o wan0 -j MASQUERADE
COMMIT
`;

function manyMappings(count: number): RuleSpec[] {
  return Array.from({ length: count }, (_, i) =>
    mapping(i % 2 ? 'UDP' : 'TCP', 10_000 + i, `192.168.${1 + (i % 3)}.${10 + (i % 200)}`, 20_000 + i, i % 5 === 0 ? `203.0.113.${1 + (i % 250)}` : ''),
  );
}

describeNetns('nftables ruleset in a namespace', ['nft', 'iptables-nft'], () => {
  let ns: TestNamespace;
  const nft = (args: string[], input?: string) => ns.exec('nft', args, { input });
  const backendWith = (options: NftablesUserOptions = {}) =>
    new NftablesBackend(nftablesOptionsSchema.parse({ wanInterface: 'wan0', ...options }), ns.runner(), silentLogger, undefined);
  const ruleCount = async () => (JSON.parse(await nft(['-j', 'list', 'ruleset'])) as { nftables: object[] }).nftables.filter((o) => 'rule' in o).length;

  beforeEach(async () => {
    ns = await TestNamespace.create('nftrules');
  });
  afterEach(async () => {
    await ns?.destroy();
  });

  it('has as many rules with 2000 mappings as with 1, installed and removed in one transaction each', async () => {
    await nft(['-f', '-'], ADMIN_FIREWALL);
    const adminRules = await ruleCount();
    const backend = backendWith({ forwardJump: { family: 'inet', table: 'filter', chain: 'forward' } });
    await backend.init();
    const many = manyMappings(2000);
    await backend.apply({ remove: [], add: many.slice(0, 1) });
    const withOne = await ruleCount();
    await backend.apply({ remove: many.slice(0, 1), add: [] });

    const started = Date.now();
    await backend.apply({ remove: [], add: many });
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(await ruleCount()).toBe(withOne);
    // Two DNAT rules, the accept rule and the jump to it; with an inet table, the four pinhole
    // rules (one per set: any remote, one host, one port, both), whatever the pinholes.
    expect(withOne).toBe(adminRules + 4 + 4);
    expect(await backend.list()).toHaveLength(2000);

    await backend.apply({ remove: many, add: [] });
    expect(await backend.list()).toEqual([]);
    expect(await nft(['list', 'set', 'inet', 'filter', 'upnpd-accept'])).not.toMatch(/elements/);
  });

  it('changes nothing at all when a transaction fails half way', async () => {
    const backend = backendWith();
    await backend.init();
    await backend.apply({ remove: [], add: manyMappings(50) });
    const before = await nft(['list', 'ruleset']);
    const notInstalled = mapping('TCP', 9, '192.168.1.9', 9);
    await expect(backend.apply({ remove: [manyMappings(1)[0]!, notInstalled], add: manyMappings(60).slice(50) })).rejects.toThrow(/No such file or directory/);
    expect(await nft(['list', 'ruleset'])).toBe(before);
  });

  it('shutdown removes its table and its jump, leaving the admin table exactly as it was', async () => {
    await nft(['-f', '-'], ADMIN_FIREWALL);
    const before = await nft(['list', 'ruleset']);
    const backend = backendWith({ forwardJump: { family: 'inet', table: 'filter', chain: 'forward' } });
    await backend.probe();
    await backend.init();
    await backend.apply({ remove: [], add: manyMappings(10) });
    const during = await nft(['list', 'chain', 'inet', 'filter', 'forward']);
    expect(during.match(/jump upnpd-forward/g)).toHaveLength(1);
    expect(during.indexOf('jump upnpd-forward')).toBeLessThan(during.indexOf('ct state established,related accept'));

    await backend.shutdown();
    expect(await nft(['list', 'ruleset'])).toBe(before);
    await backend.shutdown();
    expect(await nft(['list', 'ruleset'])).toBe(before);
  });

  it('a restart after a crash starts clean: one jump, an empty table', async () => {
    await nft(['-f', '-'], ADMIN_FIREWALL);
    const options = { forwardJump: { family: 'inet', table: 'filter', chain: 'forward' } } as const;
    const crashed = backendWith(options);
    await crashed.init();
    await crashed.apply({ remove: [], add: manyMappings(10) });

    const restarted = backendWith(options);
    await restarted.init();
    expect(await restarted.list()).toEqual([]);
    const admin = await nft(['list', 'table', 'inet', 'filter']);
    expect(admin.match(/jump upnpd-forward/g)).toHaveLength(1);
    expect(admin).not.toMatch(/elements/);
  });

  it('without forwardJump leaves other tables alone, including an iptables-nft ruleset', async () => {
    await nft(['-f', '-'], ADMIN_FIREWALL);
    await ns.exec('iptables-nft-restore', [], { input: ADMIN_IPTABLES });
    const before = await nft(['list', 'ruleset']);
    const adminTableBefore = await nft(['list', 'table', 'inet', 'filter']);
    const iptablesBefore = await ns.exec('iptables-nft-save', []);
    const backend = backendWith();
    await backend.init();
    await backend.apply({ remove: [], add: manyMappings(10) });
    expect(await nft(['list', 'table', 'inet', 'filter'])).toBe(adminTableBefore);
    expect(stripDates(await ns.exec('iptables-nft-save', []))).toBe(stripDates(iptablesBefore));
    await backend.shutdown();
    expect(await nft(['list', 'ruleset'])).toBe(before);
    expect(stripDates(await ns.exec('iptables-nft-save', []))).toBe(stripDates(iptablesBefore));
  });

  it('can jump from the FORWARD chain of iptables-nft, but iptables-save then skips that table', async () => {
    await ns.exec('iptables-nft-restore', [], { input: ADMIN_IPTABLES });
    const backend = backendWith({ forwardJump: { family: 'ip', table: 'filter', chain: 'FORWARD' } });
    await backend.init();
    expect(await ns.exec('iptables-nft-save', ['-t', 'filter'])).toMatch(/Table `filter' is incompatible/);
    await backend.shutdown();
    expect(await ns.exec('iptables-nft-save', ['-t', 'filter'])).toContain('-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT');
  });
});

function stripDates(save: string): string {
  return save.replace(/^#.*$/gm, '');
}
