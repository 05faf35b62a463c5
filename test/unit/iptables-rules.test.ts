import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { RuleSpec } from '../../core/mapping/types.js';
import {
  buildInitScript,
  buildRestoreScript,
  buildResyncScript,
  buildShutdownScript,
  installedMappings,
  integrityProblems,
  iptablesOptionsSchema,
  mappingOfDnatRule,
  parseSave,
  renderCommands,
  shardsOfRules,
  shardsOfSaved,
  tableAtLine,
  type IptablesRuleOptions,
} from '../../plugins/iptables/rules.js';
import type { ChangeSet } from '../../core/mapping/types.js';

function options(overrides: Partial<IptablesRuleOptions> = {}): IptablesRuleOptions {
  return { ...iptablesOptionsSchema.parse({}), wanInterface: 'wan0', ...overrides };
}

function rule(externalPort: number, overrides: Partial<RuleSpec> = {}): RuleSpec {
  return { remoteHost: '', externalPort, protocol: 'TCP', internalClient: '192.168.77.10', internalPort: externalPort, ...overrides };
}

const script = (...lines: string[]) => `${lines.join('\n')}\n`;

describe('iptables options', () => {
  it('defaults to upnpd chains, forward rules on, nf_tables iptables, the "upnpd" tag and IPv6 pinholes off', () => {
    expect(iptablesOptionsSchema.parse({})).toEqual({
      insertForwardRules: true,
      forwardChain: 'UPNPD-FORWARD',
      preroutingChain: 'UPNPD-PREROUTING',
      flavour: 'iptables',
      pinholes: false,
      pinholeChain: 'UPNPD-PINHOLES',
      comment: 'upnpd',
    });
  });

  it.each([
    [{ forwardChain: 'INPUT' }, /forwardChain.*must be FORWARD or a chain of upnpd's own/],
    [{ preroutingChain: 'FORWARD' }, /preroutingChain.*must be PREROUTING or a chain of upnpd's own/],
    [{ forwardChain: 'a'.repeat(29) }, /forwardChain.*at most 28 characters/],
    [{ forwardChain: '-j ACCEPT' }, /forwardChain.*chain name/],
    [{ pinholeChain: 'FORWARD' }, /pinholeChain.*must be a chain of upnpd's own/],
    [{ comment: 'up npd' }, /comment/],
    [{ wanInterface: 'eth0; reboot' }, /wanInterface.*interface name/],
    [{ flavour: 'nft' }, /flavour/],
    [{ insertForwardRule: false }, /insertForwardRule/],
  ])('refuses %j', (input, message) => {
    const result = iptablesOptionsSchema.safeParse(input);
    expect(result.success).toBe(false);
    const issues = result.error!.issues.map((i) => `${i.path.join('.')}: ${i.message} ${'keys' in i ? i.keys.join(',') : ''}`).join('\n');
    expect(issues).toMatch(message);
  });

  it('accepts the built-in chain names (the old upnpd put its rules there)', () => {
    expect(iptablesOptionsSchema.parse({ forwardChain: 'FORWARD', preroutingChain: 'PREROUTING' })).toMatchObject({
      forwardChain: 'FORWARD',
      preroutingChain: 'PREROUTING',
    });
  });
});

/** The same mapping for another LAN host: it keeps a shard chain in use while a test changes its neighbour. */
const neighbour = (spec: RuleSpec): RuleSpec => ({ ...spec, internalClient: '192.168.77.99' });

/** The script of `changes` when every shard chain they touch exists and keeps another mapping (no chain created or deleted). */
function inSettledShards(changes: ChangeSet, opts = options()): string {
  const installed = [...changes.remove, ...[...changes.remove, ...changes.add].map(neighbour)];
  return buildRestoreScript(changes, opts, shardsOfRules(installed, opts)).script;
}

describe('buildRestoreScript: the rules of a mapping', () => {
  it('adds a DNAT rule in the nat leaf of its external port and an ACCEPT rule in the filter leaf of its internal port', () => {
    expect(inSettledShards({ remove: [], add: [rule(8080, { internalPort: 80 })] })).toBe(
      script(
        '*nat',
        '-A UPNPD-PREROUTING.t07e -i wan0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 192.168.77.10:80',
        'COMMIT',
        '*filter',
        '-A UPNPD-FORWARD.t001 -d 192.168.77.10/32 -i wan0 -p tcp -m tcp --dport 80 -j ACCEPT',
        'COMMIT',
      ),
    );
  });

  it('deletes a mapping with -D of exactly the rules it added', () => {
    expect(inSettledShards({ remove: [rule(5000, { protocol: 'UDP' })], add: [] })).toBe(
      script(
        '*nat',
        '-D UPNPD-PREROUTING.u04e -i wan0 -p udp -m udp --dport 5000 -j DNAT --to-destination 192.168.77.10:5000',
        'COMMIT',
        '*filter',
        '-D UPNPD-FORWARD.u04e -d 192.168.77.10/32 -i wan0 -p udp -m udp --dport 5000 -j ACCEPT',
        'COMMIT',
      ),
    );
  });

  it('replaces a mapping: deletions before additions, per table', () => {
    const replacement = rule(6000, { internalClient: '192.168.77.11', internalPort: 6001 });
    expect(inSettledShards({ remove: [rule(6000)], add: [replacement] })).toBe(
      script(
        '*nat',
        '-D UPNPD-PREROUTING.t05d -i wan0 -p tcp -m tcp --dport 6000 -j DNAT --to-destination 192.168.77.10:6000',
        '-A UPNPD-PREROUTING.t05d -i wan0 -p tcp -m tcp --dport 6000 -j DNAT --to-destination 192.168.77.11:6001',
        'COMMIT',
        '*filter',
        '-D UPNPD-FORWARD.t05d -d 192.168.77.10/32 -i wan0 -p tcp -m tcp --dport 6000 -j ACCEPT',
        '-A UPNPD-FORWARD.t05d -d 192.168.77.11/32 -i wan0 -p tcp -m tcp --dport 6001 -j ACCEPT',
        'COMMIT',
      ),
    );
  });

  it('restricts a mapping to its remote host, inserted above the wildcard mappings of its leaf so that it matches first', () => {
    expect(inSettledShards({ remove: [], add: [rule(7000), rule(7000, { remoteHost: '203.0.113.3', internalClient: '192.168.77.11' })] })).toBe(
      script(
        '*nat',
        '-A UPNPD-PREROUTING.t06d -i wan0 -p tcp -m tcp --dport 7000 -j DNAT --to-destination 192.168.77.10:7000',
        '-I UPNPD-PREROUTING.t06d -s 203.0.113.3/32 -i wan0 -p tcp -m tcp --dport 7000 -j DNAT --to-destination 192.168.77.11:7000',
        'COMMIT',
        '*filter',
        '-A UPNPD-FORWARD.t06d -d 192.168.77.10/32 -i wan0 -p tcp -m tcp --dport 7000 -j ACCEPT',
        '-I UPNPD-FORWARD.t06d -s 203.0.113.3/32 -d 192.168.77.11/32 -i wan0 -p tcp -m tcp --dport 7000 -j ACCEPT',
        'COMMIT',
      ),
    );
  });

  it('touches only the nat table when insertForwardRules is off', () => {
    expect(inSettledShards({ remove: [], add: [rule(8000)] }, options({ insertForwardRules: false }))).toBe(
      script('*nat', '-A UPNPD-PREROUTING.t07d -i wan0 -p tcp -m tcp --dport 8000 -j DNAT --to-destination 192.168.77.10:8000', 'COMMIT'),
    );
  });

  it('builds one script for a mixed batch: all deletions of a table, then all its additions', () => {
    const out = inSettledShards(
      { remove: [rule(1001), rule(1002, { protocol: 'UDP' })], add: [rule(1003), rule(1001, { internalPort: 1011 })] },
      options({ insertForwardRules: false }),
    );
    const operations = out
      .split('\n')
      .map((line) => /^(\S+) \S+ .*--dport (\d+) /.exec(line)?.slice(1, 3).join(' '))
      .filter(Boolean);
    expect(operations).toEqual(['-D 1001', '-D 1002', '-A 1003', '-A 1001']);
  });

  it('is empty for an empty change set', () => {
    expect(buildRestoreScript({ remove: [], add: [] }, options()).script).toBe('');
  });

  it.each([
    ['a host name as internal client', rule(80, { internalClient: 'lan.example' })],
    ['an argument smuggled into the remote host', rule(80, { remoteHost: '1.2.3.4 -j ACCEPT' })],
    ['port 0', rule(0)],
    ['port 65536', rule(80, { internalPort: 65536 })],
    ['another protocol', rule(80, { protocol: 'SCTP' as 'TCP' })],
  ])('refuses %s', (_, spec) => {
    expect(() => buildRestoreScript({ remove: [], add: [spec] }, options())).toThrow(/not a valid IPv4 port mapping/);
  });
});

describe('buildRestoreScript: shard chains', () => {
  it('creates the block and leaf chains of the first mapping in a port range, each dispatched to by protocol and port range', () => {
    const { script: out, shards } = buildRestoreScript({ remove: [], add: [rule(8080, { internalPort: 80 })] }, options({ insertForwardRules: false }));
    expect(out).toBe(
      script(
        '*nat',
        '-N UPNPD-PREROUTING.t1',
        '-A UPNPD-PREROUTING -p tcp -m tcp --dport 4096:8191 -m comment --comment "upnpd shard" -j UPNPD-PREROUTING.t1',
        '-N UPNPD-PREROUTING.t07e',
        '-A UPNPD-PREROUTING.t1 -p tcp -m tcp --dport 8064:8127 -m comment --comment "upnpd shard" -j UPNPD-PREROUTING.t07e',
        '-A UPNPD-PREROUTING.t07e -i wan0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 192.168.77.10:80',
        'COMMIT',
      ),
    );
    expect(shards.nat).toEqual({ leaves: new Map([['UPNPD-PREROUTING.t07e', 1]]), blocks: new Set(['UPNPD-PREROUTING.t1']) });
  });

  it('adds a leaf to an existing block without creating the block again', () => {
    const opts = options({ insertForwardRules: false });
    const out = buildRestoreScript({ remove: [], add: [rule(8000)] }, opts, shardsOfRules([rule(8080)], opts)).script;
    expect(out).toContain('-N UPNPD-PREROUTING.t07d\n-A UPNPD-PREROUTING.t1 -p tcp -m tcp --dport 8000:8063');
    expect(out).not.toContain('-N UPNPD-PREROUTING.t1\n');
  });

  it('deletes a leaf with its last mapping, and its block with its last leaf, the dispatch rules first', () => {
    const opts = options({ insertForwardRules: false });
    const { script: out, shards } = buildRestoreScript(
      { remove: [rule(65535, { protocol: 'UDP' })], add: [] },
      opts,
      shardsOfRules([rule(65535, { protocol: 'UDP' })], opts),
    );
    expect(out).toBe(
      script(
        '*nat',
        '-D UPNPD-PREROUTING.u3ff -i wan0 -p udp -m udp --dport 65535 -j DNAT --to-destination 192.168.77.10:65535',
        '-D UPNPD-PREROUTING.uf -p udp -m udp --dport 65472:65535 -m comment --comment "upnpd shard" -j UPNPD-PREROUTING.u3ff',
        '-X UPNPD-PREROUTING.u3ff',
        '-D UPNPD-PREROUTING -p udp -m udp --dport 61440:65535 -m comment --comment "upnpd shard" -j UPNPD-PREROUTING.uf',
        '-X UPNPD-PREROUTING.uf',
        'COMMIT',
      ),
    );
    expect(shards.nat).toEqual({ leaves: new Map(), blocks: new Set() });
  });

  it('keeps a block that still has another leaf, and a leaf refilled in the same change', () => {
    const opts = options({ insertForwardRules: false });
    const before = shardsOfRules([rule(8080), rule(8000)], opts);
    const out = buildRestoreScript({ remove: [rule(8080), rule(8000)], add: [rule(8000, { internalPort: 1 })] }, opts, before).script;
    expect(out).toContain('-X UPNPD-PREROUTING.t07e');
    expect(out).not.toMatch(/-X UPNPD-PREROUTING\.t(1|07d)\n/);
    expect(out).not.toContain('-N ');
  });

  it('shards nat by the external port and filter by the internal port, the ones each rule matches', () => {
    const { shards } = buildRestoreScript({ remove: [], add: [rule(60000, { internalPort: 22 })] }, options());
    expect([...shards.nat.leaves.keys(), ...shards.filter.leaves.keys()]).toEqual(['UPNPD-PREROUTING.t3a9', 'UPNPD-FORWARD.t000']);
  });

  it('dispatches from the built-in chains when named (seed-compatible), with the configured tag, shard chains named after the default chains', () => {
    const seed = options({ forwardChain: 'FORWARD', preroutingChain: 'PREROUTING', wanInterface: 'ppp0', comment: 'igd' });
    const out = buildRestoreScript({ remove: [], add: [rule(9000)] }, seed).script;
    expect(out).toContain('-A PREROUTING -p tcp -m tcp --dport 8192:12287 -m comment --comment "igd shard" -j UPNPD-PREROUTING.t2');
    expect(out).toContain('-A UPNPD-PREROUTING.t08c -i ppp0 -p tcp -m tcp --dport 9000 -j DNAT --to-destination 192.168.77.10:9000');
    expect(out).toContain('-A FORWARD -p tcp -m tcp --dport 8192:12287 -m comment --comment "igd shard" -j UPNPD-FORWARD.t2');
  });

  it('keeps every shard chain name within the 28 characters x_tables allows, and refuses an own chain name too long for them', () => {
    const longest = 'P'.repeat(23);
    const { shards } = buildRestoreScript({ remove: [], add: [rule(65535)] }, options({ preroutingChain: longest }));
    for (const chain of [...shards.nat.leaves.keys(), ...shards.nat.blocks]) expect(chain.length).toBeLessThanOrEqual(28);
    expect(iptablesOptionsSchema.safeParse({ preroutingChain: 'P'.repeat(24) }).error?.issues[0]?.message).toMatch(/at most 23 characters/);
  });

  it('reads the same shards back from what iptables-save prints as the builder computed', () => {
    const opts = options();
    const specs = [rule(1), rule(80, { protocol: 'UDP' }), rule(4096), rule(65535, { remoteHost: '198.51.100.7' })];
    const asSaved = buildResyncScript(parseSave(''), specs, opts).replace(/^-I /gm, '-A ');
    expect(shardsOfSaved(parseSave(asSaved), opts)).toEqual(shardsOfRules(specs, opts));
  });
});

describe('renderCommands', () => {
  it('gives the iptables commands equivalent to the script, shell-quoted, in the same order', () => {
    expect(renderCommands({ remove: [rule(80)], add: [rule(80, { remoteHost: '203.0.113.3' })] }, options(), shardsOfRules([rule(80)], options()))).toEqual([
      'iptables -t nat -D UPNPD-PREROUTING.t001 -i wan0 -p tcp -m tcp --dport 80 -j DNAT --to-destination 192.168.77.10:80',
      'iptables -t nat -I UPNPD-PREROUTING.t001 -s 203.0.113.3/32 -i wan0 -p tcp -m tcp --dport 80 -j DNAT --to-destination 192.168.77.10:80',
      'iptables -t filter -D UPNPD-FORWARD.t001 -d 192.168.77.10/32 -i wan0 -p tcp -m tcp --dport 80 -j ACCEPT',
      'iptables -t filter -I UPNPD-FORWARD.t001 -s 203.0.113.3/32 -d 192.168.77.10/32 -i wan0 -p tcp -m tcp --dport 80 -j ACCEPT',
    ]);
  });

  it('names the legacy program for the legacy flavour, and creates shard chains with -N', () => {
    const commands = renderCommands({ remove: [], add: [rule(80)] }, options({ flavour: 'iptables-legacy', insertForwardRules: false }));
    expect(commands).toHaveLength(5);
    expect(commands[0]).toBe('iptables-legacy -t nat -N UPNPD-PREROUTING.t0');
    expect(commands[4]).toMatch(/^iptables-legacy -t nat -A UPNPD-PREROUTING.t001 /);
  });
});

describe('tableAtLine', () => {
  it('tells which table section a line of a script belongs to', () => {
    const s = inSettledShards({ remove: [], add: [rule(80)] });
    // 1 *nat, 2 -A, 3 COMMIT, 4 *filter, 5 -A, 6 COMMIT
    expect([1, 2, 3, 4, 5, 6].map((line) => tableAtLine(s, line))).toEqual(['nat', 'nat', 'nat', 'filter', 'filter', 'filter']);
  });
});

// What iptables-save (1.8.9, nf_tables) printed in a test namespace with upnpd's chains and three
// mappings (tcp/9000 lost its ACCEPT rule), next to rules of the admin and of another program
// (quotes and escapes in their comments), when upnpd still wrote a comment into each mapping rule.
const SAVED_WITH_MAPPING_COMMENTS = `# Generated by iptables-save v1.8.9 (nf_tables) on Sun Dec  6 10:00:58 2026
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
:UPNPD-PREROUTING - [0:0]
:UPNPD-PREROUTING.t07e - [0:0]
:UPNPD-PREROUTING.t08c - [0:0]
:UPNPD-PREROUTING.t1 - [0:0]
:UPNPD-PREROUTING.t2 - [0:0]
:UPNPD-PREROUTING.u0 - [0:0]
:UPNPD-PREROUTING.u000 - [0:0]
-A PREROUTING -m comment --comment "upnpd jump" -j UPNPD-PREROUTING
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 192.168.77.0/24 -o wan0 -j MASQUERADE
-A UPNPD-PREROUTING -p udp -m udp --dport 0:4095 -m comment --comment "upnpd shard" -j UPNPD-PREROUTING.u0
-A UPNPD-PREROUTING -p tcp -m tcp --dport 4096:8191 -m comment --comment "upnpd shard" -j UPNPD-PREROUTING.t1
-A UPNPD-PREROUTING -p tcp -m tcp --dport 8192:12287 -m comment --comment "upnpd shard" -j UPNPD-PREROUTING.t2
-A UPNPD-PREROUTING.t07e -i wan0 -p tcp -m tcp --dport 8080 -m comment --comment "upnpd map tcp/8080 to 192.168.77.10:80" -j DNAT --to-destination 192.168.77.10:80
-A UPNPD-PREROUTING.t08c -i wan0 -p tcp -m tcp --dport 9000 -m comment --comment "upnpd map tcp/9000 to 192.168.77.10:9000" -j DNAT --to-destination 192.168.77.10:9000
-A UPNPD-PREROUTING.t1 -p tcp -m tcp --dport 8064:8127 -m comment --comment "upnpd shard" -j UPNPD-PREROUTING.t07e
-A UPNPD-PREROUTING.t2 -p tcp -m tcp --dport 8960:9023 -m comment --comment "upnpd shard" -j UPNPD-PREROUTING.t08c
-A UPNPD-PREROUTING.u0 -p udp -m udp --dport 0:63 -m comment --comment "upnpd shard" -j UPNPD-PREROUTING.u000
-A UPNPD-PREROUTING.u000 -s 203.0.113.3/32 -i wan0 -p udp -m udp --dport 53 -m comment --comment "upnpd map udp/53 to 192.168.77.11:5353 from 203.0.113.3" -j DNAT --to-destination 192.168.77.11:5353
COMMIT
# Completed on Sun Dec  6 10:00:58 2026
# Generated by iptables-save v1.8.9 (nf_tables) on Sun Dec  6 10:00:58 2026
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:UPNPD-FORWARD - [0:0]
:UPNPD-FORWARD.t0 - [0:0]
:UPNPD-FORWARD.t001 - [0:0]
:UPNPD-FORWARD.t08c - [0:0]
:UPNPD-FORWARD.t2 - [0:0]
:UPNPD-FORWARD.u053 - [0:0]
:UPNPD-FORWARD.u1 - [0:0]
-A FORWARD -m comment --comment "upnpd jump" -j UPNPD-FORWARD
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "admin: \\"replies\\" upnpd map tcp/1 to 1.1.1.1:1" -j ACCEPT
-A FORWARD -i br-lan -o wan0 -j ACCEPT
-A UPNPD-FORWARD -p udp -m udp --dport 4096:8191 -m comment --comment "upnpd shard" -j UPNPD-FORWARD.u1
-A UPNPD-FORWARD -p tcp -m tcp --dport 0:4095 -m comment --comment "upnpd shard" -j UPNPD-FORWARD.t0
-A UPNPD-FORWARD -p tcp -m tcp --dport 8192:12287 -m comment --comment "upnpd shard" -j UPNPD-FORWARD.t2
-A UPNPD-FORWARD.t0 -p tcp -m tcp --dport 64:127 -m comment --comment "upnpd shard" -j UPNPD-FORWARD.t001
-A UPNPD-FORWARD.t001 -d 192.168.77.10/32 -i wan0 -p tcp -m tcp --dport 80 -m comment --comment "upnpd map tcp/8080 to 192.168.77.10:80" -j ACCEPT
-A UPNPD-FORWARD.t2 -p tcp -m tcp --dport 8960:9023 -m comment --comment "upnpd shard" -j UPNPD-FORWARD.t08c
-A UPNPD-FORWARD.u053 -s 203.0.113.3/32 -d 192.168.77.11/32 -i wan0 -p udp -m udp --dport 5353 -m comment --comment "upnpd map udp/53 to 192.168.77.11:5353 from 203.0.113.3" -j ACCEPT
-A UPNPD-FORWARD.u1 -p udp -m udp --dport 5312:5375 -m comment --comment "upnpd shard" -j UPNPD-FORWARD.u053
COMMIT
# Completed on Sun Dec  6 10:00:58 2026
`;

/** The same as upnpd writes the mapping rules now, without a comment. */
const SAVED = SAVED_WITH_MAPPING_COMMENTS.replace(/ -m comment --comment "upnpd map [^"]*"/g, '');

// What iptables-save (1.8.9, nf_tables) printed with the single-chain layout of upnpd before its
// shard chains (every mapping's rule straight in UPNPD-PREROUTING and UPNPD-FORWARD).
const SINGLE_CHAIN_LAYOUT = `# Generated by iptables-save v1.8.9 (nf_tables) on Tue Nov 24 10:00:58 2026
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
:UPNPD-PREROUTING - [0:0]
-A PREROUTING -m comment --comment "upnpd jump" -j UPNPD-PREROUTING
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 192.168.77.0/24 -o wan0 -j MASQUERADE
-A UPNPD-PREROUTING -s 203.0.113.3/32 -i wan0 -p udp -m udp --dport 53 -m comment --comment "upnpd map udp/53 to 192.168.77.11:5353 from 203.0.113.3" -j DNAT --to-destination 192.168.77.11:5353
-A UPNPD-PREROUTING -i wan0 -p tcp -m tcp --dport 8080 -m comment --comment "upnpd map tcp/8080 to 192.168.77.10:80" -j DNAT --to-destination 192.168.77.10:80
-A UPNPD-PREROUTING -i wan0 -p tcp -m tcp --dport 9000 -m comment --comment "upnpd map tcp/9000 to 192.168.77.10:9000" -j DNAT --to-destination 192.168.77.10:9000
COMMIT
# Completed on Tue Nov 24 10:00:58 2026
# Generated by iptables-save v1.8.9 (nf_tables) on Tue Nov 24 10:00:58 2026
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [12:720]
:OUTPUT ACCEPT [0:0]
:UPNPD-FORWARD - [0:0]
-A FORWARD -m comment --comment "upnpd jump" -j UPNPD-FORWARD
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "admin: \\"replies\\" upnpd map tcp/1 to 1.1.1.1:1" -j ACCEPT
-A FORWARD -i br-lan -o wan0 -j ACCEPT
-A UPNPD-FORWARD -s 203.0.113.3/32 -d 192.168.77.11/32 -i wan0 -p udp -m udp --dport 5353 -m comment --comment "upnpd map udp/53 to 192.168.77.11:5353 from 203.0.113.3" -j ACCEPT
-A UPNPD-FORWARD -d 192.168.77.10/32 -i wan0 -p tcp -m tcp --dport 80 -m comment --comment "upnpd map tcp/8080 to 192.168.77.10:80" -j ACCEPT
COMMIT
# Completed on Tue Nov 24 10:00:58 2026
`;

describe('parseSave and installedMappings', () => {
  it('reads chains and rules of nat and filter, with quoted and escaped arguments', () => {
    const saved = parseSave(SAVED);
    expect([...saved.chains.get('nat')!].slice(0, 6)).toEqual(['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING', 'DOCKER', 'UPNPD-PREROUTING']);
    expect(saved.chains.get('filter')!.has('UPNPD-FORWARD')).toBe(true);
    const admin = saved.rules.find((r) => r.table === 'filter' && r.args.includes('conntrack'))!;
    expect(admin.comment).toBe('admin: "replies" upnpd map tcp/1 to 1.1.1.1:1');
    expect(admin.args).toEqual(['-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-m', 'comment', '--comment', admin.comment, '-j', 'ACCEPT']);
  });

  it('lists the mappings whose DNAT and ACCEPT rules are both installed, in the order iptables-save prints them', () => {
    expect(installedMappings(parseSave(SAVED), options())).toEqual([
      { protocol: 'TCP', externalPort: 8080, internalClient: '192.168.77.10', internalPort: 80, remoteHost: '' },
      { protocol: 'UDP', externalPort: 53, internalClient: '192.168.77.11', internalPort: 5353, remoteHost: '203.0.113.3' },
      // tcp/9000 has no ACCEPT rule: not listed, so that reconciliation installs it again.
    ]);
  });

  it('lists every DNAT rule when insertForwardRules is off, and nothing under another tag or chain', () => {
    expect(installedMappings(parseSave(SAVED), options({ insertForwardRules: false })).map((r) => r.externalPort)).toEqual([8080, 9000, 53]);
    expect(installedMappings(parseSave(SAVED), options({ comment: 'other' }))).toEqual([]);
    expect(installedMappings(parseSave(SAVED), options({ preroutingChain: 'PREROUTING', forwardChain: 'FORWARD' }))).toEqual([]);
  });

  it('does not list a mapping whose leaf or block chain is no longer dispatched to (a packet never reaches its rule)', () => {
    const leafCut = SAVED.replace(/^-A UPNPD-PREROUTING\.t1 .*\n/m, '');
    expect(installedMappings(parseSave(leafCut), options({ insertForwardRules: false })).map((r) => r.externalPort)).toEqual([9000, 53]);
    const blockCut = SAVED.replace(/^-A UPNPD-FORWARD -p udp .*\n/m, '');
    expect(installedMappings(parseSave(blockCut), options()).map((r) => r.externalPort)).toEqual([8080]);
  });

  it('does not take the rules of the single-chain layout for installed mappings', () => {
    expect(installedMappings(parseSave(SINGLE_CHAIN_LAYOUT), options())).toEqual([]);
  });

  it('shows a leaked duplicate twice', () => {
    const duplicated = SAVED.replace(/^(-A UPNPD-PREROUTING\.t07e .*|-A UPNPD-FORWARD\.t001 .*)$/gm, '$1\n$1');
    expect(installedMappings(parseSave(duplicated), options()).map((r) => r.externalPort)).toEqual([8080, 8080, 53]);
  });

  it('reads back every mapping the script builder writes (round trip)', () => {
    const specs = [rule(1), rule(65535, { protocol: 'UDP', internalPort: 1 }), rule(80, { remoteHost: '198.51.100.7', internalClient: '10.0.0.2' })];
    const built = buildRestoreScript({ remove: [], add: specs }, options()).script;
    // iptables-save prints every rule as -A, also the inserted ones.
    const asSaved = built.replace(/^-I /gm, '-A ');
    expect(installedMappings(parseSave(asSaved), options())).toEqual(specs);
  });

  it('pairs two mappings to the same internal client and port with one ACCEPT rule each', () => {
    const specs = [rule(8080, { internalPort: 80 }), rule(8081, { internalPort: 80 })];
    const asSaved = buildRestoreScript({ remove: [], add: specs }, options()).script;
    expect(asSaved.match(/-j ACCEPT$/gm)).toHaveLength(2);
    expect(installedMappings(parseSave(asSaved), options())).toEqual(specs);
    const oneAccept = asSaved.replace(/^-A UPNPD-FORWARD\.t001 .*-j ACCEPT\n/m, '');
    expect(installedMappings(parseSave(oneAccept), options())).toEqual([specs[0]]);
  });

  it('takes the mapping rules of the previous version, which carried a comment each, for none (a resync writes them anew)', () => {
    expect(installedMappings(parseSave(SAVED_WITH_MAPPING_COMMENTS), options())).toEqual([]);
    expect(installedMappings(parseSave(SAVED_WITH_MAPPING_COMMENTS), options({ insertForwardRules: false }))).toEqual([]);
  });

  const leafRule = (line: string) => parseSave(`*nat\n${line}\nCOMMIT\n`).rules[0]!;
  it('reads a mapping from exactly the DNAT rule upnpd writes, in the leaf of its port', () => {
    expect(
      mappingOfDnatRule(leafRule('-A UPNPD-PREROUTING.t001 -i wan0 -p tcp -m tcp --dport 80 -j DNAT --to-destination 192.168.77.10:8080'), options()),
    ).toEqual({
      protocol: 'TCP',
      externalPort: 80,
      internalClient: '192.168.77.10',
      internalPort: 8080,
      remoteHost: '',
    });
  });

  it.each([
    ['in another leaf', '-A UPNPD-PREROUTING.t002 -i wan0 -p tcp -m tcp --dport 80 -j DNAT --to-destination 192.168.77.10:80'],
    ['on another interface', '-A UPNPD-PREROUTING.t001 -i wan1 -p tcp -m tcp --dport 80 -j DNAT --to-destination 192.168.77.10:80'],
    ['with a comment', '-A UPNPD-PREROUTING.t001 -i wan0 -p tcp -m tcp --dport 80 -m comment --comment x -j DNAT --to-destination 192.168.77.10:80'],
    ['with another match', '-A UPNPD-PREROUTING.t001 -i wan0 -p tcp -m tcp --dport 80 -m limit --limit 1/sec -j DNAT --to-destination 192.168.77.10:80'],
    ['from a network', '-A UPNPD-PREROUTING.t001 -s 203.0.113.0/24 -i wan0 -p tcp -m tcp --dport 80 -j DNAT --to-destination 192.168.77.10:80'],
    ['to a port range', '-A UPNPD-PREROUTING.t001 -i wan0 -p tcp -m tcp --dport 80 -j DNAT --to-destination 192.168.77.10:80-90'],
    ['to an address and no port', '-A UPNPD-PREROUTING.t001 -i wan0 -p tcp -m tcp --dport 80 -j DNAT --to-destination 192.168.77.10'],
    ['for a port range', '-A UPNPD-PREROUTING.t001 -i wan0 -p tcp -m tcp --dport 80:81 -j DNAT --to-destination 192.168.77.10:80'],
    ['for port 0', '-A UPNPD-PREROUTING.t000 -i wan0 -p tcp -m tcp --dport 0 -j DNAT --to-destination 192.168.77.10:80'],
    ['not a DNAT', '-A UPNPD-PREROUTING.t001 -i wan0 -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 80'],
  ])('takes no DNAT rule %s for a mapping', (_, line) => {
    expect(mappingOfDnatRule(leafRule(line), options())).toBeUndefined();
  });
});

describe('init and shutdown scripts', () => {
  const EMPTY = parseSave('*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n*filter\n:FORWARD DROP [0:0]\nCOMMIT\n');

  it('init creates upnpd chains and jumps to each once from the top of its built-in chain', () => {
    expect(buildInitScript(EMPTY, options())).toBe(
      script(
        '*nat',
        ':UPNPD-PREROUTING - [0:0]',
        '-I PREROUTING -m comment --comment "upnpd jump" -j UPNPD-PREROUTING',
        'COMMIT',
        '*filter',
        ':UPNPD-FORWARD - [0:0]',
        '-I FORWARD -m comment --comment "upnpd jump" -j UPNPD-FORWARD',
        'COMMIT',
      ),
    );
  });

  it('init over the single-chain layout of earlier versions flushes upnpd chains and replaces the jumps, leaving exactly one each', () => {
    expect(buildInitScript(parseSave(SINGLE_CHAIN_LAYOUT), options())).toBe(
      script(
        '*nat',
        '-D PREROUTING -m comment --comment "upnpd jump" -j UPNPD-PREROUTING',
        ':UPNPD-PREROUTING - [0:0]',
        '-I PREROUTING -m comment --comment "upnpd jump" -j UPNPD-PREROUTING',
        'COMMIT',
        '*filter',
        '-D FORWARD -m comment --comment "upnpd jump" -j UPNPD-FORWARD',
        ':UPNPD-FORWARD - [0:0]',
        '-I FORWARD -m comment --comment "upnpd jump" -j UPNPD-FORWARD',
        'COMMIT',
      ),
    );
  });

  it('init over a previous run also flushes and deletes every shard chain it left, after flushing the chains that dispatch to them', () => {
    const init = buildInitScript(parseSave(SAVED), options());
    const nat = ['t07e', 't08c', 't1', 't2', 'u0', 'u000'].map((id) => `UPNPD-PREROUTING.${id}`);
    expect(init).toContain(
      [
        '*nat',
        '-D PREROUTING -m comment --comment "upnpd jump" -j UPNPD-PREROUTING',
        ':UPNPD-PREROUTING - [0:0]',
        ...nat.map((c) => `:${c} - [0:0]`),
        ...nat.map((c) => `-X ${c}`),
        '-I PREROUTING -m comment --comment "upnpd jump" -j UPNPD-PREROUTING',
        'COMMIT',
      ].join('\n'),
    );
    expect(init.match(/^-X UPNPD-FORWARD\.\w+$/gm)).toHaveLength(6);
  });

  it('init with forward rules turned off removes the jump to, and the chain of, a previous run', () => {
    expect(buildInitScript(parseSave(SINGLE_CHAIN_LAYOUT), options({ insertForwardRules: false }))).toContain(
      ['*filter', '-D FORWARD -m comment --comment "upnpd jump" -j UPNPD-FORWARD', ':UPNPD-FORWARD - [0:0]', '-X UPNPD-FORWARD', 'COMMIT'].join('\n'),
    );
  });

  it('init with built-in chains removes only the tagged rules a previous run left there, and its shard chains', () => {
    const seed = options({ forwardChain: 'FORWARD', preroutingChain: 'PREROUTING', insertForwardRules: false });
    const previous = parseSave(buildResyncScript(EMPTY, [rule(80)], seed).replace('COMMIT', '-A PREROUTING -i br-lan -j ACCEPT\nCOMMIT'));
    expect(buildInitScript(previous, seed)).toBe(
      script(
        '*nat',
        '-D PREROUTING -p tcp -m tcp --dport 0:4095 -m comment --comment "upnpd shard" -j UPNPD-PREROUTING.t0',
        ':UPNPD-PREROUTING.t0 - [0:0]',
        ':UPNPD-PREROUTING.t001 - [0:0]',
        '-X UPNPD-PREROUTING.t0',
        '-X UPNPD-PREROUTING.t001',
        'COMMIT',
      ),
    );
    expect(buildInitScript(EMPTY, seed)).toBe('');
  });

  /** What shutdown does to upnpd's own chains and jumps (the same over either layout). */
  const OWN_CHAINS_REMOVED = script(
    '*nat',
    '-D PREROUTING -m comment --comment "upnpd jump" -j UPNPD-PREROUTING',
    ':UPNPD-PREROUTING - [0:0]',
    '-X UPNPD-PREROUTING',
    'COMMIT',
    '*filter',
    '-D FORWARD -m comment --comment "upnpd jump" -j UPNPD-FORWARD',
    ':UPNPD-FORWARD - [0:0]',
    '-X UPNPD-FORWARD',
    'COMMIT',
  );

  it('shutdown removes the jumps, then flushes and deletes upnpd chains and shard chains, and nothing else', () => {
    const shutdown = buildShutdownScript(parseSave(SAVED), options());
    expect(shutdown.match(/^:UPNPD-(PREROUTING|FORWARD)\.\w+ - \[0:0\]$/gm)).toHaveLength(12);
    expect(shutdown.match(/^-X UPNPD-(PREROUTING|FORWARD)\.\w+$/gm)).toHaveLength(12);
    expect(shutdown.split('\n').filter((line) => !/UPNPD-(PREROUTING|FORWARD)\./.test(line))).toEqual(OWN_CHAINS_REMOVED.split('\n'));
  });

  it('shutdown over the single-chain layout of earlier versions removes its jumps and chains', () => {
    expect(buildShutdownScript(parseSave(SINGLE_CHAIN_LAYOUT), options())).toBe(OWN_CHAINS_REMOVED);
  });

  it('shutdown has nothing to do when nothing of upnpd is left (idempotent)', () => {
    expect(buildShutdownScript(EMPTY, options())).toBe('');
    expect(buildShutdownScript(parseSave(SAVED), options({ comment: 'other', forwardChain: 'OTHER-FORWARD', preroutingChain: 'OTHER-PREROUTING' }))).toBe('');
  });
});

describe('integrityProblems and buildResyncScript (reconciliation)', () => {
  const web = { remoteHost: '', externalPort: 8080, protocol: 'TCP', internalClient: '192.168.77.10', internalPort: 80 } as const;
  const dns = { remoteHost: '203.0.113.3', externalPort: 53, protocol: 'UDP', internalClient: '192.168.77.11', internalPort: 5353 } as const;
  const half = { remoteHost: '', externalPort: 9000, protocol: 'TCP', internalClient: '192.168.77.10', internalPort: 9000 } as const;

  it('finds nothing missing when chains, jumps and every expected mapping are complete', () => {
    expect(integrityProblems(parseSave(SAVED), options(), [web, dns])).toEqual([]);
  });

  it('counts a mapping with only one of its two rules as missing', () => {
    expect(integrityProblems(parseSave(SAVED), options(), [web, dns, half])).toEqual(['the rules of 1 of 3 mapping(s)']);
  });

  it('counts the rules of a mapping the table no longer holds (a reload of an old save), and the rules of one mapping twice', () => {
    expect(integrityProblems(parseSave(SAVED), options(), [dns])).toEqual(['1 rule pair(s) installed that the table does not hold']);
    const twice = SAVED.replace(/^(-A UPNPD-PREROUTING\.t07e .*|-A UPNPD-FORWARD\.t001 .*)$/gm, '$1\n$1');
    expect(twice.split('\n').length).toBe(SAVED.split('\n').length + 2);
    expect(integrityProblems(parseSave(twice), options(), [web, dns])).toEqual(['1 rule pair(s) installed that the table does not hold']);
  });

  it('counts the mappings behind a lost dispatch rule as missing', () => {
    const cut = parseSave(SAVED.replace(/^-A UPNPD-PREROUTING -p tcp -m tcp --dport 4096:8191 .*\n/m, ''));
    expect(integrityProblems(cut, options(), [web, dns])).toEqual(['the rules of 1 of 2 mapping(s)']);
  });

  it('names the jumps a flush of FORWARD and nat PREROUTING removed', () => {
    const withoutJumps = parseSave(SAVED.replace(/^-A (PREROUTING|FORWARD) -m comment --comment "upnpd jump".*\n/gm, ''));
    expect(integrityProblems(withoutJumps, options(), [web, dns])).toEqual([
      'the jump from PREROUTING to UPNPD-PREROUTING (nat)',
      'the jump from FORWARD to UPNPD-FORWARD (filter)',
    ]);
  });

  it('names chains, jumps and mappings after a full restore of the admin rules', () => {
    const reloaded = parseSave('*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n*filter\n:FORWARD DROP [0:0]\n-A FORWARD -i br-lan -j ACCEPT\nCOMMIT\n');
    expect(integrityProblems(reloaded, options(), [web])).toEqual([
      'chain UPNPD-PREROUTING (nat)',
      'the jump from PREROUTING to UPNPD-PREROUTING (nat)',
      'chain UPNPD-FORWARD (filter)',
      'the jump from FORWARD to UPNPD-FORWARD (filter)',
      'the rules of 1 of 1 mapping(s)',
    ]);
    expect(integrityProblems(reloaded, options({ forwardChain: 'FORWARD', preroutingChain: 'PREROUTING' }), [])).toEqual([]);
  });

  it('resyncs in one script per table: old jumps out, own and shard chains flushed, unused shards deleted, one jump, every mapping dispatched to', () => {
    expect(buildResyncScript(parseSave(SAVED), [web], options())).toBe(
      script(
        '*nat',
        '-D PREROUTING -m comment --comment "upnpd jump" -j UPNPD-PREROUTING',
        ':UPNPD-PREROUTING - [0:0]',
        ...['t07e', 't08c', 't1', 't2', 'u0', 'u000'].map((id) => `:UPNPD-PREROUTING.${id} - [0:0]`),
        ...['t08c', 't2', 'u0', 'u000'].map((id) => `-X UPNPD-PREROUTING.${id}`),
        '-I PREROUTING -m comment --comment "upnpd jump" -j UPNPD-PREROUTING',
        '-A UPNPD-PREROUTING -p tcp -m tcp --dport 4096:8191 -m comment --comment "upnpd shard" -j UPNPD-PREROUTING.t1',
        '-A UPNPD-PREROUTING.t1 -p tcp -m tcp --dport 8064:8127 -m comment --comment "upnpd shard" -j UPNPD-PREROUTING.t07e',
        '-A UPNPD-PREROUTING.t07e -i wan0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 192.168.77.10:80',
        'COMMIT',
        '*filter',
        '-D FORWARD -m comment --comment "upnpd jump" -j UPNPD-FORWARD',
        ':UPNPD-FORWARD - [0:0]',
        ...['t0', 't001', 't08c', 't2', 'u053', 'u1'].map((id) => `:UPNPD-FORWARD.${id} - [0:0]`),
        ...['t08c', 't2', 'u053', 'u1'].map((id) => `-X UPNPD-FORWARD.${id}`),
        '-I FORWARD -m comment --comment "upnpd jump" -j UPNPD-FORWARD',
        '-A UPNPD-FORWARD -p tcp -m tcp --dport 0:4095 -m comment --comment "upnpd shard" -j UPNPD-FORWARD.t0',
        '-A UPNPD-FORWARD.t0 -p tcp -m tcp --dport 64:127 -m comment --comment "upnpd shard" -j UPNPD-FORWARD.t001',
        '-A UPNPD-FORWARD.t001 -d 192.168.77.10/32 -i wan0 -p tcp -m tcp --dport 80 -j ACCEPT',
        'COMMIT',
      ),
    );
  });

  it('resyncs over the single-chain layout of earlier versions: its rules flushed with the chain, every mapping in shards', () => {
    const resync = buildResyncScript(parseSave(SINGLE_CHAIN_LAYOUT), [web, dns], options());
    expect(installedMappings(parseSave(resync.replace(/^-I /gm, '-A ')), options())).toEqual([web, dns]);
    expect(resync).not.toMatch(/^-A UPNPD-(PREROUTING|FORWARD) -i wan0/m);
  });
});

describe('shard chains over any sequence of changes (model)', () => {
  const port = fc.oneof(fc.integer({ min: 1, max: 200 }), fc.integer({ min: 65300, max: 65535 }), fc.integer({ min: 1, max: 65535 }));
  const mappingArb = fc
    .record({ externalPort: port, internalPort: port, udp: fc.boolean() })
    .map(({ externalPort, internalPort, udp }) => rule(externalPort, { internalPort, protocol: udp ? 'UDP' : 'TCP' }));

  it('counts the shard chains of a rule set as installing it in one change set would leave them, with and without forward rules', () => {
    fc.assert(
      fc.property(fc.uniqueArray(mappingArb, { selector: (r) => `${r.protocol}/${r.externalPort}`, maxLength: 40 }), fc.boolean(), (rules, forward) => {
        const opts = options({ insertForwardRules: forward });
        expect(shardsOfRules(rules, opts)).toEqual(buildRestoreScript({ remove: [], add: rules }, opts).shards);
      }),
    );
  });

  it('changing one change set at a time leaves the shard chains of installing the result from scratch: none empty, none missing', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.array(mappingArb, { maxLength: 4 }), fc.nat()), { maxLength: 25 }), (steps) => {
        const opts = options();
        let installed: RuleSpec[] = [];
        let shards = shardsOfRules([], opts);
        for (const [candidates, seed] of steps) {
          const key = (r: RuleSpec) => `${r.protocol}/${r.externalPort}`;
          const add = candidates.filter((c, i) => !installed.some((r) => key(r) === key(c)) && candidates.findIndex((o) => key(o) === key(c)) === i);
          const remove = installed.filter((_, i) => (seed >> (i % 30)) % 3 === 0);
          shards = buildRestoreScript({ remove, add }, opts, shards).shards;
          installed = [...installed.filter((r) => !remove.includes(r)), ...add];
        }
        expect(shards).toEqual(shardsOfRules(installed, opts));
        for (const table of [shards.nat, shards.filter]) for (const count of table.leaves.values()) expect(count).toBeGreaterThan(0);
      }),
    );
  });
});
