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
  mappingOfComment,
  parseSave,
  renderCommands,
  tableAtLine,
  type IptablesRuleOptions,
} from '../../plugins/iptables/rules.js';

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

describe('buildRestoreScript', () => {
  it('adds a DNAT rule in nat and an ACCEPT rule in filter, in upnpd chains', () => {
    expect(buildRestoreScript({ remove: [], add: [rule(8080, { internalPort: 80 })] }, options())).toBe(
      script(
        '*nat',
        '-A UPNPD-PREROUTING -i wan0 -p tcp -m tcp --dport 8080 -m comment --comment "upnpd map tcp/8080 to 192.168.77.10:80" -j DNAT --to-destination 192.168.77.10:80',
        'COMMIT',
        '*filter',
        '-A UPNPD-FORWARD -d 192.168.77.10/32 -i wan0 -p tcp -m tcp --dport 80 -m comment --comment "upnpd map tcp/8080 to 192.168.77.10:80" -j ACCEPT',
        'COMMIT',
      ),
    );
  });

  it('deletes a mapping with -D of exactly the rules it added', () => {
    expect(buildRestoreScript({ remove: [rule(5000, { protocol: 'UDP' })], add: [] }, options())).toBe(
      script(
        '*nat',
        '-D UPNPD-PREROUTING -i wan0 -p udp -m udp --dport 5000 -m comment --comment "upnpd map udp/5000 to 192.168.77.10:5000" -j DNAT --to-destination 192.168.77.10:5000',
        'COMMIT',
        '*filter',
        '-D UPNPD-FORWARD -d 192.168.77.10/32 -i wan0 -p udp -m udp --dport 5000 -m comment --comment "upnpd map udp/5000 to 192.168.77.10:5000" -j ACCEPT',
        'COMMIT',
      ),
    );
  });

  it('replaces a mapping: deletions before additions, per table', () => {
    const replacement = rule(6000, { internalClient: '192.168.77.11', internalPort: 6001 });
    expect(buildRestoreScript({ remove: [rule(6000)], add: [replacement] }, options())).toBe(
      script(
        '*nat',
        '-D UPNPD-PREROUTING -i wan0 -p tcp -m tcp --dport 6000 -m comment --comment "upnpd map tcp/6000 to 192.168.77.10:6000" -j DNAT --to-destination 192.168.77.10:6000',
        '-A UPNPD-PREROUTING -i wan0 -p tcp -m tcp --dport 6000 -m comment --comment "upnpd map tcp/6000 to 192.168.77.11:6001" -j DNAT --to-destination 192.168.77.11:6001',
        'COMMIT',
        '*filter',
        '-D UPNPD-FORWARD -d 192.168.77.10/32 -i wan0 -p tcp -m tcp --dport 6000 -m comment --comment "upnpd map tcp/6000 to 192.168.77.10:6000" -j ACCEPT',
        '-A UPNPD-FORWARD -d 192.168.77.11/32 -i wan0 -p tcp -m tcp --dport 6001 -m comment --comment "upnpd map tcp/6000 to 192.168.77.11:6001" -j ACCEPT',
        'COMMIT',
      ),
    );
  });

  it('restricts a mapping to its remote host, inserted above the wildcard mappings so that it matches first', () => {
    expect(buildRestoreScript({ remove: [], add: [rule(7000), rule(7000, { remoteHost: '203.0.113.3', internalClient: '192.168.77.11' })] }, options())).toBe(
      script(
        '*nat',
        '-A UPNPD-PREROUTING -i wan0 -p tcp -m tcp --dport 7000 -m comment --comment "upnpd map tcp/7000 to 192.168.77.10:7000" -j DNAT --to-destination 192.168.77.10:7000',
        '-I UPNPD-PREROUTING -s 203.0.113.3/32 -i wan0 -p tcp -m tcp --dport 7000 -m comment --comment "upnpd map tcp/7000 to 192.168.77.11:7000 from 203.0.113.3" -j DNAT --to-destination 192.168.77.11:7000',
        'COMMIT',
        '*filter',
        '-A UPNPD-FORWARD -d 192.168.77.10/32 -i wan0 -p tcp -m tcp --dport 7000 -m comment --comment "upnpd map tcp/7000 to 192.168.77.10:7000" -j ACCEPT',
        '-I UPNPD-FORWARD -s 203.0.113.3/32 -d 192.168.77.11/32 -i wan0 -p tcp -m tcp --dport 7000 -m comment --comment "upnpd map tcp/7000 to 192.168.77.11:7000 from 203.0.113.3" -j ACCEPT',
        'COMMIT',
      ),
    );
  });

  it('touches only the nat table when insertForwardRules is off', () => {
    expect(buildRestoreScript({ remove: [], add: [rule(8000)] }, options({ insertForwardRules: false }))).toBe(
      script(
        '*nat',
        '-A UPNPD-PREROUTING -i wan0 -p tcp -m tcp --dport 8000 -m comment --comment "upnpd map tcp/8000 to 192.168.77.10:8000" -j DNAT --to-destination 192.168.77.10:8000',
        'COMMIT',
      ),
    );
  });

  it('puts the rules straight into the built-in chains when named (seed-compatible), with the configured tag', () => {
    const seed = options({ forwardChain: 'FORWARD', preroutingChain: 'PREROUTING', wanInterface: 'ppp0', comment: 'igd' });
    expect(buildRestoreScript({ remove: [], add: [rule(9000)] }, seed)).toBe(
      script(
        '*nat',
        '-A PREROUTING -i ppp0 -p tcp -m tcp --dport 9000 -m comment --comment "igd map tcp/9000 to 192.168.77.10:9000" -j DNAT --to-destination 192.168.77.10:9000',
        'COMMIT',
        '*filter',
        '-A FORWARD -d 192.168.77.10/32 -i ppp0 -p tcp -m tcp --dport 9000 -m comment --comment "igd map tcp/9000 to 192.168.77.10:9000" -j ACCEPT',
        'COMMIT',
      ),
    );
  });

  it('builds one script for a mixed batch: all deletions of a table, then all its additions', () => {
    const out = buildRestoreScript(
      { remove: [rule(1001), rule(1002, { protocol: 'UDP' })], add: [rule(1003), rule(1001, { internalPort: 1011 })] },
      options({ insertForwardRules: false }),
    );
    const operations = out
      .split('\n')
      .map((line) => /^(\S+) \S+ .*--dport (\d+)/.exec(line)?.slice(1, 3).join(' '))
      .filter(Boolean);
    expect(operations).toEqual(['-D 1001', '-D 1002', '-A 1003', '-A 1001']);
  });

  it('is empty for an empty change set', () => {
    expect(buildRestoreScript({ remove: [], add: [] }, options())).toBe('');
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

describe('renderCommands', () => {
  it('gives the iptables commands equivalent to the script, shell-quoted, in the same order', () => {
    expect(renderCommands({ remove: [rule(80)], add: [rule(80, { remoteHost: '203.0.113.3' })] }, options())).toEqual([
      "iptables -t nat -D UPNPD-PREROUTING -i wan0 -p tcp -m tcp --dport 80 -m comment --comment 'upnpd map tcp/80 to 192.168.77.10:80' -j DNAT --to-destination 192.168.77.10:80",
      "iptables -t nat -I UPNPD-PREROUTING -s 203.0.113.3/32 -i wan0 -p tcp -m tcp --dport 80 -m comment --comment 'upnpd map tcp/80 to 192.168.77.10:80 from 203.0.113.3' -j DNAT --to-destination 192.168.77.10:80",
      "iptables -t filter -D UPNPD-FORWARD -d 192.168.77.10/32 -i wan0 -p tcp -m tcp --dport 80 -m comment --comment 'upnpd map tcp/80 to 192.168.77.10:80' -j ACCEPT",
      "iptables -t filter -I UPNPD-FORWARD -s 203.0.113.3/32 -d 192.168.77.10/32 -i wan0 -p tcp -m tcp --dport 80 -m comment --comment 'upnpd map tcp/80 to 192.168.77.10:80 from 203.0.113.3' -j ACCEPT",
    ]);
  });

  it('names the legacy program for the legacy flavour', () => {
    const commands = renderCommands({ remove: [], add: [rule(80)] }, options({ flavour: 'iptables-legacy', insertForwardRules: false }));
    expect(commands).toHaveLength(1);
    expect(commands[0]).toMatch(/^iptables-legacy -t nat -A UPNPD-PREROUTING /);
  });
});

describe('tableAtLine', () => {
  it('tells which table section a line of a script belongs to', () => {
    const s = buildRestoreScript({ remove: [], add: [rule(80)] }, options());
    // 1 *nat, 2 -A, 3 COMMIT, 4 *filter, 5 -A, 6 COMMIT
    expect([1, 2, 3, 4, 5, 6].map((line) => tableAtLine(s, line))).toEqual(['nat', 'nat', 'nat', 'filter', 'filter', 'filter']);
  });
});

// What iptables-save (1.8.9, nf_tables) printed in the testbed's gateway with upnpd running,
// next to rules of the admin and of another program (quotes and escapes in their comments).
const SAVED = `# Generated by iptables-save v1.8.9 (nf_tables) on Tue Nov 24 10:00:58 2026
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
    expect([...saved.chains.get('nat')!]).toEqual(['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING', 'DOCKER', 'UPNPD-PREROUTING']);
    expect(saved.chains.get('filter')!.has('UPNPD-FORWARD')).toBe(true);
    const admin = saved.rules.find((r) => r.table === 'filter' && r.args.includes('conntrack'))!;
    expect(admin.comment).toBe('admin: "replies" upnpd map tcp/1 to 1.1.1.1:1');
    expect(admin.args).toEqual(['-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-m', 'comment', '--comment', admin.comment, '-j', 'ACCEPT']);
  });

  it('lists the mappings whose DNAT and ACCEPT rules are both installed', () => {
    expect(installedMappings(parseSave(SAVED), options())).toEqual([
      { protocol: 'UDP', externalPort: 53, internalClient: '192.168.77.11', internalPort: 5353, remoteHost: '203.0.113.3' },
      { protocol: 'TCP', externalPort: 8080, internalClient: '192.168.77.10', internalPort: 80, remoteHost: '' },
      // tcp/9000 has no ACCEPT rule: not listed, so that reconciliation installs it again.
    ]);
  });

  it('lists every DNAT rule when insertForwardRules is off, and nothing under another tag or chain', () => {
    expect(installedMappings(parseSave(SAVED), options({ insertForwardRules: false })).map((r) => r.externalPort)).toEqual([53, 8080, 9000]);
    expect(installedMappings(parseSave(SAVED), options({ comment: 'other' }))).toEqual([]);
    expect(installedMappings(parseSave(SAVED), options({ preroutingChain: 'PREROUTING', forwardChain: 'FORWARD' }))).toEqual([]);
  });

  it('shows a leaked duplicate twice', () => {
    const duplicated = SAVED.replace(/^(-A UPNPD-(PREROUTING|FORWARD) .*tcp\/8080.*)$/gm, '$1\n$1');
    expect(installedMappings(parseSave(duplicated), options()).map((r) => r.externalPort)).toEqual([53, 8080, 8080]);
  });

  it('reads back every mapping the script builder writes (round trip)', () => {
    const specs = [rule(1), rule(65535, { protocol: 'UDP', internalPort: 1 }), rule(80, { remoteHost: '198.51.100.7', internalClient: '10.0.0.2' })];
    const built = buildRestoreScript({ remove: [], add: specs }, options());
    // iptables-save prints every rule as -A, also the inserted ones.
    const asSaved = built.replace(/^-I /gm, '-A ');
    expect(installedMappings(parseSave(asSaved), options())).toEqual(specs);
  });

  it.each([
    ['upnpd jump'],
    ['upnpd map tcp/80 to 192.168.77.10'],
    ['upnpd map tcp/80 to 192.168.77.10:80 from'],
    ['upnpdx map tcp/80 to 192.168.77.10:80'],
    ['other map tcp/80 to 192.168.77.10:80'],
  ])('does not take the comment %j for a mapping', (comment) => {
    expect(mappingOfComment(comment, 'upnpd')).toBeUndefined();
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

  it('init over a previous run flushes upnpd chains and replaces the jumps, leaving exactly one each', () => {
    expect(buildInitScript(parseSave(SAVED), options())).toBe(
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

  it('init with forward rules turned off removes the jump to, and the chain of, a previous run', () => {
    expect(buildInitScript(parseSave(SAVED), options({ insertForwardRules: false }))).toContain(
      ['*filter', '-D FORWARD -m comment --comment "upnpd jump" -j UPNPD-FORWARD', ':UPNPD-FORWARD - [0:0]', '-X UPNPD-FORWARD', 'COMMIT'].join('\n'),
    );
  });

  it('init with built-in chains removes only the tagged rules a previous run left there', () => {
    const seed = options({ forwardChain: 'FORWARD', preroutingChain: 'PREROUTING' });
    const previous = parseSave(buildRestoreScript({ remove: [], add: [rule(80)] }, seed).replace('*filter', '*filter\n-A FORWARD -i br-lan -j ACCEPT'));
    expect(buildInitScript(previous, seed)).toBe(
      script(
        '*nat',
        '-D PREROUTING -i wan0 -p tcp -m tcp --dport 80 -m comment --comment "upnpd map tcp/80 to 192.168.77.10:80" -j DNAT --to-destination 192.168.77.10:80',
        'COMMIT',
        '*filter',
        '-D FORWARD -d 192.168.77.10/32 -i wan0 -p tcp -m tcp --dport 80 -m comment --comment "upnpd map tcp/80 to 192.168.77.10:80" -j ACCEPT',
        'COMMIT',
      ),
    );
    expect(buildInitScript(EMPTY, seed)).toBe('');
  });

  it('shutdown removes the jumps, then flushes and deletes upnpd chains, and nothing else', () => {
    expect(buildShutdownScript(parseSave(SAVED), options())).toBe(
      script(
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
      ),
    );
  });

  it('shutdown has nothing to do when nothing of upnpd is left (idempotent)', () => {
    expect(buildShutdownScript(EMPTY, options())).toBe('');
    expect(buildShutdownScript(parseSave(SAVED), options({ comment: 'other', forwardChain: 'FORWARD', preroutingChain: 'PREROUTING' }))).toBe('');
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

  it('resyncs in one script per table: old jumps out, own chain declared (flushed), one jump, every mapping', () => {
    expect(buildResyncScript(parseSave(SAVED), [web], options())).toBe(
      script(
        '*nat',
        '-D PREROUTING -m comment --comment "upnpd jump" -j UPNPD-PREROUTING',
        ':UPNPD-PREROUTING - [0:0]',
        '-I PREROUTING -m comment --comment "upnpd jump" -j UPNPD-PREROUTING',
        '-A UPNPD-PREROUTING -i wan0 -p tcp -m tcp --dport 8080 -m comment --comment "upnpd map tcp/8080 to 192.168.77.10:80" -j DNAT --to-destination 192.168.77.10:80',
        'COMMIT',
        '*filter',
        '-D FORWARD -m comment --comment "upnpd jump" -j UPNPD-FORWARD',
        ':UPNPD-FORWARD - [0:0]',
        '-I FORWARD -m comment --comment "upnpd jump" -j UPNPD-FORWARD',
        '-A UPNPD-FORWARD -d 192.168.77.10/32 -i wan0 -p tcp -m tcp --dport 80 -m comment --comment "upnpd map tcp/8080 to 192.168.77.10:80" -j ACCEPT',
        'COMMIT',
      ),
    );
  });
});
