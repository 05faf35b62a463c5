import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BackendError } from '../../core/errors.js';
import type { RuleSpec } from '../../core/mapping/types.js';
import { nftablesOptionsSchema } from '../../plugins/nftables/options.js';
import {
  InstalledMappings,
  buildChangeScript,
  buildInitScript,
  buildShutdownScript,
  parseAdminTable,
  parseInstalledRules,
  pinholePlace,
} from '../../plugins/nftables/rules.js';
import {
  GOLDEN_ADMIN_TABLE,
  GOLDEN_LISTING,
  GOLDEN_CHANGES,
  GOLDEN_PINHOLE_CHANGES,
  goldenSettings,
  mapping,
  pinhole,
} from '../../plugins/nftables/testing/golden-scripts.js';

describe('nftables change scripts (golden)', () => {
  for (const golden of GOLDEN_CHANGES) {
    it(golden.name, () => {
      expect(buildChangeScript(golden.changes, golden.settings, golden.installed)).toBe(golden.script);
    });
  }

  for (const golden of GOLDEN_PINHOLE_CHANGES) {
    it(golden.name, () => {
      expect(buildChangeScript(golden.changes, golden.settings)).toBe(golden.script);
    });
  }

  it('pinholes: refused without forwardJump into an inet table (the backend then declares no pinholes)', () => {
    const changes = { remove: [], add: [], pinholes: { remove: [], add: [pinhole('TCP', '2001:db8:1::10', 80)] } };
    expect(() => buildChangeScript(changes, goldenSettings())).toThrow(/forwardJump into an inet table/);
    expect(() => buildChangeScript(changes, goldenSettings({ forwardJump: { ...GOLDEN_ADMIN_TABLE, family: 'ip' } }))).toThrow(BackendError);
    expect(pinholePlace(goldenSettings({ forwardJump: { ...GOLDEN_ADMIN_TABLE, family: 'ip' } }))).toBeUndefined();
  });

  it('pinholes: values that could inject into the script are refused', () => {
    const withJump = goldenSettings({ forwardJump: GOLDEN_ADMIN_TABLE });
    for (const bad of [
      pinhole('TCP', '2001:db8::1 } ; flush ruleset', 80),
      pinhole('TCP', '192.168.1.10', 80),
      pinhole('TCP', 'fe80::1%eth0', 80),
      pinhole('TCP', '2001:db8::1', 0),
    ]) {
      expect(() => buildChangeScript({ remove: [], add: [], pinholes: { remove: [], add: [bad] } }, withJump)).toThrow(BackendError);
    }
  });

  const withJump = goldenSettings({ forwardJump: GOLDEN_ADMIN_TABLE });

  it('is empty for an empty change set', () => {
    expect(buildChangeScript({ remove: [], add: [] }, withJump)).toBe('');
  });

  it('without the installed rules, assumes only the removed rules use their targets', () => {
    const web = mapping('TCP', 8080, '192.168.1.10', 80);
    expect(buildChangeScript({ remove: [web], add: [] }, withJump)).toBe(
      'delete element inet upnpd dnat-any { tcp . 8080 }\ndelete element inet filter upnpd-accept { 192.168.1.10 . tcp . 80 }\n',
    );
  });

  it('adds the accept element once for two new mappings to one target', () => {
    const script = buildChangeScript({ remove: [], add: [mapping('UDP', 5000, '10.0.0.2', 5000), mapping('UDP', 5001, '10.0.0.2', 5000)] }, withJump);
    expect(script).toContain('add element inet filter upnpd-accept { 10.0.0.2 . udp . 5000 }\n');
  });

  it('puts thousands of elements in one statement per map', () => {
    const many = Array.from({ length: 3000 }, (_, i) => mapping(i % 2 ? 'UDP' : 'TCP', 10000 + i, '192.168.1.10', 10000 + i));
    const lines = buildChangeScript({ remove: [], add: many }, withJump).trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]!.match(/ : /g)).toHaveLength(3000);
  });

  it.each<[string, Partial<RuleSpec>]>([
    ['a script injected through the remote host', { remoteHost: '1.2.3.4 } ; flush ruleset ; add element inet upnpd dnat-any {' }],
    ['an internal client that is not IPv4', { internalClient: 'fe80::1' }],
    ['port 0', { externalPort: 0 }],
    ['a port above 65535', { internalPort: 70000 }],
    ['a fractional port', { externalPort: 80.5 }],
    ['another protocol', { protocol: 'SCTP' as never }],
  ])('refuses %s', (_, change) => {
    const rule = { ...mapping('TCP', 8080, '192.168.1.10', 80), ...change };
    expect(() => buildChangeScript({ remove: [], add: [rule] }, goldenSettings())).toThrow(BackendError);
    expect(() => buildChangeScript({ remove: [rule], add: [] }, goldenSettings())).toThrow(BackendError);
  });
});

describe('nftables init and shutdown scripts', () => {
  const table = `table inet upnpd {
	map dnat-remote {
		type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service
	}
	map dnat-any {
		type inet_proto . inet_service : ipv4_addr . inet_service
	}
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "wan0" dnat ip to ip saddr . meta l4proto . th dport map @dnat-remote
		iifname "wan0" dnat ip to meta l4proto . th dport map @dnat-any
	}
`;

  /** The IPv6 pinhole sets and rules with forwardJump into an inet table (the same text `nft -c` checks in the netns test). */
  const PINHOLE_INIT = `add set inet filter upnpd-pinholes { type ipv6_addr . inet_proto . inet_service; counter; }
add set inet filter upnpd-pinholes-host { type ipv6_addr . ipv6_addr . inet_proto . inet_service; counter; }
add set inet filter upnpd-pinholes-port { type inet_service . ipv6_addr . inet_proto . inet_service; counter; }
add set inet filter upnpd-pinholes-host-port { type ipv6_addr . inet_service . ipv6_addr . inet_proto . inet_service; counter; }
add rule inet filter upnpd-forward iifname "wan0" ip6 daddr . meta l4proto . th dport @upnpd-pinholes accept
add rule inet filter upnpd-forward iifname "wan0" ip6 saddr . ip6 daddr . meta l4proto . th dport @upnpd-pinholes-host accept
add rule inet filter upnpd-forward iifname "wan0" th sport . ip6 daddr . meta l4proto . th dport @upnpd-pinholes-port accept
add rule inet filter upnpd-forward iifname "wan0" ip6 saddr . th sport . ip6 daddr . meta l4proto . th dport @upnpd-pinholes-host-port accept
`;

  it('recreates the table with its two maps and its prerouting chain, and nothing else without forwardJump', () => {
    expect(buildInitScript(goldenSettings())).toBe(`add table inet upnpd\ndelete table inet upnpd\n${table}}\n`);
  });

  it('with forwardJump into an inet table: adds a chain and set to the admin table, the IPv6 pinhole sets and their four rules, then one jump to it', () => {
    expect(buildInitScript(goldenSettings({ forwardJump: GOLDEN_ADMIN_TABLE }))).toBe(`add table inet upnpd
delete table inet upnpd
${table}}
add chain inet filter upnpd-forward
add set inet filter upnpd-accept { type ipv4_addr . inet_proto . inet_service; }
add rule inet filter upnpd-forward ct status dnat ip daddr . meta l4proto . th dport @upnpd-accept accept
${PINHOLE_INIT}insert rule inet filter forward jump upnpd-forward comment "upnpd: port mappings of table inet upnpd"
`);
  });

  it('with forwardJump: replaces leftovers in the admin table and inserts one tagged jump', () => {
    const leftovers = { jumps: [{ chain: 'forward', handle: 7 }], chain: true, acceptSet: true };
    expect(buildInitScript(goldenSettings({ forwardJump: GOLDEN_ADMIN_TABLE }), leftovers)).toBe(`add table inet upnpd
delete table inet upnpd
${table}}
delete rule inet filter forward handle 7
flush chain inet filter upnpd-forward
delete chain inet filter upnpd-forward
delete set inet filter upnpd-accept
add chain inet filter upnpd-forward
add set inet filter upnpd-accept { type ipv4_addr . inet_proto . inet_service; }
add rule inet filter upnpd-forward ct status dnat ip daddr . meta l4proto . th dport @upnpd-accept accept
${PINHOLE_INIT}insert rule inet filter forward jump upnpd-forward comment "upnpd: port mappings of table inet upnpd"
`);
  });

  it('refuses a WAN interface name that could inject into the script', () => {
    expect(() => buildInitScript({ ...goldenSettings(), wanInterface: 'eth0" accept #' })).toThrow(BackendError);
  });

  it('shutdown deletes the table whether or not it exists, and what upnpd put into the admin table', () => {
    expect(buildShutdownScript(goldenSettings())).toBe('add table inet upnpd\ndelete table inet upnpd\n');
    const leftovers = { jumps: [{ chain: 'forward', handle: 12 }], chain: true, acceptSet: false };
    expect(buildShutdownScript(goldenSettings({ forwardJump: GOLDEN_ADMIN_TABLE }), leftovers)).toBe(`add table inet upnpd
delete table inet upnpd
delete rule inet filter forward handle 12
flush chain inet filter upnpd-forward
delete chain inet filter upnpd-forward
`);
  });
});

describe('nftables options', () => {
  it('defaults to table inet upnpd, without a forward jump', () => {
    expect(nftablesOptionsSchema.parse({})).toEqual({ table: 'upnpd', family: 'inet' });
  });

  it.each([
    [{ table: 'up npd' }, 'table'],
    [{ family: 'ip6' }, 'family'],
    [{ forwardJump: { family: 'inet', table: 'filter' } }, 'forwardJump.chain'],
    [{ forwardJump: { ...GOLDEN_ADMIN_TABLE, chain: 'x;y' } }, 'forwardJump.chain'],
    [{ wanInterface: 'a-name-that-is-too-long' }, 'wanInterface'],
    [{ chains: 'x' }, ''],
  ])('rejects %j (at %s)', (options, path) => {
    const result = nftablesOptionsSchema.safeParse(options);
    expect(result.success).toBe(false);
    expect(result.error!.issues.map((i) => i.path.join('.'))).toContain(path);
  });
});

const LISTING = GOLDEN_LISTING;

describe('nftables listings', () => {
  it('reads the mappings back from both DNAT maps', () => {
    expect(parseInstalledRules(LISTING, goldenSettings())).toEqual([
      mapping('TCP', 8080, '192.168.1.12', 80, '1.2.3.4'),
      mapping('UDP', 9000, '192.168.1.11', 9000),
      mapping('TCP', 8080, '192.168.1.10', 80),
    ]);
  });

  it('reads an empty table (maps without elem) as no mappings', () => {
    const empty = JSON.parse(LISTING) as { nftables: Array<Record<string, { elem?: unknown }>> };
    for (const o of empty.nftables) delete o.map?.elem;
    expect(parseInstalledRules(JSON.stringify(empty), goldenSettings())).toEqual([]);
  });

  it('accepts element keys wrapped with options, and numeric protocols', () => {
    const listing = {
      nftables: [
        {
          map: {
            family: 'inet',
            table: 'upnpd',
            name: 'dnat-any',
            elem: [[{ elem: { val: { concat: [17, 53] }, timeout: 60 } }, { concat: ['10.0.0.5', 5353] }]],
          },
        },
      ],
    };
    expect(parseInstalledRules(JSON.stringify(listing), goldenSettings())).toEqual([mapping('UDP', 53, '10.0.0.5', 5353)]);
  });

  it('ignores maps of another table with the same names', () => {
    expect(parseInstalledRules(LISTING, goldenSettings({ table: 'other' }))).toEqual([]);
  });

  it.each([
    ['not JSON', 'nft: error'],
    ['no nftables array', '{"foo": 1}'],
    ['an element of the wrong shape', JSON.stringify({ nftables: [{ map: { family: 'inet', table: 'upnpd', name: 'dnat-any', elem: [['tcp', 1]] } }] })],
    [
      'an unknown protocol',
      JSON.stringify({
        nftables: [{ map: { family: 'inet', table: 'upnpd', name: 'dnat-any', elem: [[{ concat: ['sctp', 1] }, { concat: ['10.0.0.1', 1] }]] } }],
      }),
    ],
  ])('throws a BackendError for %s', (_, json) => {
    expect(() => parseInstalledRules(json, goldenSettings())).toThrow(BackendError);
  });

  it('finds the jump chain and what an earlier run left in the admin table', () => {
    const adminListing = JSON.stringify({
      nftables: [
        { table: { family: 'inet', name: 'filter', handle: 4 } },
        { set: { family: 'inet', name: 'upnpd-accept', table: 'filter', type: ['ipv4_addr', 'inet_proto', 'inet_service'], handle: 8 } },
        { chain: { family: 'inet', table: 'filter', name: 'forward', handle: 1, type: 'filter', hook: 'forward', prio: 0, policy: 'drop' } },
        { chain: { family: 'inet', table: 'filter', name: 'upnpd-forward', handle: 7 } },
        { rule: { family: 'inet', table: 'filter', chain: 'forward', handle: 10, comment: 'upnpd', expr: [{ jump: { target: 'upnpd-forward' } }] } },
        {
          rule: {
            family: 'inet',
            table: 'filter',
            chain: 'forward',
            handle: 2,
            expr: [{ match: { op: 'in', left: { ct: { key: 'state' } }, right: ['established', 'related'] } }, { accept: null }],
          },
        },
        { rule: { family: 'inet', table: 'filter', chain: 'upnpd-forward', handle: 9, expr: [{ accept: null }] } },
        { rule: { family: 'inet', table: 'filter', chain: 'input', handle: 11, expr: [{ goto: { target: 'upnpd-forward' } }] } },
      ],
    });
    expect(parseAdminTable(adminListing, { table: 'upnpd', forwardJump: GOLDEN_ADMIN_TABLE })).toEqual({
      jumpChainExists: true,
      leftovers: {
        jumps: [
          { chain: 'forward', handle: 10 },
          { chain: 'input', handle: 11 },
        ],
        chain: true,
        acceptSet: true,
      },
    });
    expect(parseAdminTable(adminListing, { table: 'upnpd', forwardJump: { ...GOLDEN_ADMIN_TABLE, chain: 'FORWARD' } }).jumpChainExists).toBe(false);
  });
});

describe('the accept-set use counts kept change set by change set (model)', () => {
  const withJump = goldenSettings({ forwardJump: GOLDEN_ADMIN_TABLE });
  // Few clients and ports, so that mappings share targets (one accept element, several users) and replace each other.
  const mappingArb = fc
    .record({
      externalPort: fc.integer({ min: 1, max: 6 }),
      client: fc.integer({ min: 2, max: 3 }),
      internalPort: fc.integer({ min: 1, max: 3 }),
      udp: fc.boolean(),
    })
    .map(({ externalPort, client, internalPort, udp }) => mapping(udp ? 'UDP' : 'TCP', externalPort, `10.0.0.${client}`, internalPort));

  it('give every change set the script that the rules in effect, counted from scratch, give', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.array(mappingArb, { maxLength: 4 }), fc.nat()), { maxLength: 30 }), (steps) => {
        const kept = new InstalledMappings();
        let inEffect: RuleSpec[] = [];
        for (const [candidates, seed] of steps) {
          const key = (r: RuleSpec) => `${r.protocol}/${r.externalPort}`;
          const remove = inEffect.filter((_, i) => (seed >> (i % 30)) % 3 === 0);
          const left = inEffect.filter((r) => !remove.includes(r));
          // A replace (same key, new target) comes as its removal and its addition, as the core sends it.
          const add = candidates.filter((c, i) => candidates.findIndex((o) => key(o) === key(c)) === i);
          const replaced = left.filter((r) => add.some((a) => key(a) === key(r)));
          const changes = { remove: [...remove, ...replaced], add };
          expect(buildChangeScript(changes, withJump, kept)).toBe(buildChangeScript(changes, withJump, [...inEffect]));
          kept.record(changes);
          inEffect = [...left.filter((r) => !replaced.includes(r)), ...add];
        }
        expect(kept).toEqual(new InstalledMappings(inEffect));
      }),
    );
  });
});
