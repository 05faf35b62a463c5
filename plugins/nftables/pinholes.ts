import { z } from 'zod';
import { BackendError, type PinholeChanges, type PinholeRule } from 'upnpd';
import { canonicalIPv6, isValidPinholeRule, pinholeRuleString } from 'upnpd/backend';

/**
 * IPv6 pinholes as data. They need no translation, only an accept where the admin's forward
 * policy is decided, so they live next to the IPv4 accept set in the admin's table (`forwardJump`,
 * an `inet` table: an `ip` table never sees IPv6). One set per kind of wildcard keeps the rule
 * count constant (four rules however many pinholes), and each element carries its own counter,
 * which GetPinholePackets reads:
 *
 *   set <table>-pinholes            ip6 daddr . l4proto . dport                  (any remote host and port)
 *   set <table>-pinholes-host       ip6 saddr . ip6 daddr . l4proto . dport      (one remote host)
 *   set <table>-pinholes-port       sport . ip6 daddr . l4proto . dport          (one remote port)
 *   set <table>-pinholes-host-port  ip6 saddr . sport . ip6 daddr . l4proto . dport
 *   chain <table>-forward           iifname <wan> <key> @<set> accept            (one rule per set)
 */

interface PinholeSetKind {
  readonly suffix: string;
  readonly type: string;
  readonly match: string;
  readonly applies: (r: PinholeRule) => boolean;
  readonly element: (r: PinholeRule) => string;
}

const proto = (r: PinholeRule) => (r.protocol === 'TCP' ? 'tcp' : 'udp');
const target = (r: PinholeRule) => `${canonicalIPv6(r.internalClient)} . ${proto(r)} . ${r.internalPort}`;

export const PINHOLE_SETS: readonly PinholeSetKind[] = [
  {
    suffix: 'pinholes',
    type: 'ipv6_addr . inet_proto . inet_service',
    match: 'ip6 daddr . meta l4proto . th dport',
    applies: (r) => r.remoteHost === '' && r.remotePort === 0,
    element: target,
  },
  {
    suffix: 'pinholes-host',
    type: 'ipv6_addr . ipv6_addr . inet_proto . inet_service',
    match: 'ip6 saddr . ip6 daddr . meta l4proto . th dport',
    applies: (r) => r.remoteHost !== '' && r.remotePort === 0,
    element: (r) => `${canonicalIPv6(r.remoteHost)} . ${target(r)}`,
  },
  {
    suffix: 'pinholes-port',
    type: 'inet_service . ipv6_addr . inet_proto . inet_service',
    match: 'th sport . ip6 daddr . meta l4proto . th dport',
    applies: (r) => r.remoteHost === '' && r.remotePort !== 0,
    element: (r) => `${r.remotePort} . ${target(r)}`,
  },
  {
    suffix: 'pinholes-host-port',
    type: 'ipv6_addr . inet_service . ipv6_addr . inet_proto . inet_service',
    match: 'ip6 saddr . th sport . ip6 daddr . meta l4proto . th dport',
    applies: (r) => r.remoteHost !== '' && r.remotePort !== 0,
    element: (r) => `${canonicalIPv6(r.remoteHost)} . ${r.remotePort} . ${target(r)}`,
  },
];

/** Where the pinhole sets live: the admin's table (`forwardJump`), named after upnpd's own table. */
export interface PinholePlace {
  /** `inet filter` */
  readonly table: string;
  /** upnpd's chain in the admin's table (`upnpd-forward`). */
  readonly chain: string;
  /** upnpd's own table name, the prefix of the set names. */
  readonly prefix: string;
  readonly wanInterface: string;
}

export function pinholeSetName(place: Pick<PinholePlace, 'prefix'>, kind: PinholeSetKind): string {
  return `${place.prefix}-${kind.suffix}`;
}

/** The sets and rules, added to the init script after upnpd's forward chain exists. */
export function pinholeInitLines(place: PinholePlace): string[] {
  return [
    ...PINHOLE_SETS.map((k) => `add set ${place.table} ${pinholeSetName(place, k)} { type ${k.type}; counter; }`),
    ...PINHOLE_SETS.map((k) => `add rule ${place.table} ${place.chain} iifname "${place.wanInterface}" ${k.match} @${pinholeSetName(place, k)} accept`),
  ];
}

/** Deletes the sets (after their chain was flushed and deleted). */
export function pinholeRemovalLines(place: Pick<PinholePlace, 'table' | 'prefix'>, existing: readonly string[]): string[] {
  return PINHOLE_SETS.map((k) => pinholeSetName(place, k))
    .filter((name) => existing.includes(name))
    .map((name) => `delete set ${place.table} ${name}`);
}

/** Element deletes, then adds: the pinhole part of a change set's transaction. */
export function pinholeChangeLines(changes: PinholeChanges, place: Pick<PinholePlace, 'table' | 'prefix'>): string[] {
  const all = [...changes.remove, ...changes.add];
  const bad = all.find((r) => !isValidPinholeRule(r));
  if (bad) throw new BackendError(`nftables: not a valid IPv6 pinhole: ${JSON.stringify(bad)}`);
  const lines = (verb: 'add' | 'delete', rules: readonly PinholeRule[]) =>
    PINHOLE_SETS.flatMap((k) => {
      const items = rules.filter(k.applies).map(k.element);
      return items.length === 0 ? [] : [`${verb} element ${place.table} ${pinholeSetName(place, k)} { ${items.join(', ')} }`];
    });
  return [...lines('delete', changes.remove), ...lines('add', changes.add)];
}

// ---------------------------------------------------------------------------------------------
// Listing: `nft -j list table <admin table>` → the pinholes and their counters
// ---------------------------------------------------------------------------------------------

const scalar = z.union([z.string(), z.number()]);
const element = z.union([
  z.object({ concat: z.array(scalar) }).transform((e) => ({ key: e.concat, packets: 0 })),
  z
    .object({ elem: z.object({ val: z.object({ concat: z.array(scalar) }), counter: z.object({ packets: z.number() }).optional() }) })
    .transform((e) => ({ key: e.elem.val.concat, packets: e.elem.counter?.packets ?? 0 })),
]);
const setSchema = z.object({ family: z.string(), table: z.string(), name: z.string(), elem: z.array(element).optional() });

export interface InstalledPinhole {
  readonly rule: PinholeRule;
  readonly packets: number;
}

/** The pinholes in the admin's table listing, with their packet counters. */
export function parseInstalledPinholes(objects: ReadonlyArray<Record<string, unknown>>, place: Pick<PinholePlace, 'table' | 'prefix'>): InstalledPinhole[] {
  const [family, table] = place.table.split(' ');
  const found: InstalledPinhole[] = [];
  for (const object of objects) {
    if (!('set' in object)) continue;
    const set = setSchema.safeParse(object.set);
    if (!set.success || set.data.family !== family || set.data.table !== table) continue;
    const kind = PINHOLE_SETS.find((k) => pinholeSetName(place, k) === set.data.name);
    if (!kind) continue;
    for (const { key, packets } of set.data.elem ?? []) found.push({ rule: ruleFromKey(kind, key, set.data.name), packets });
  }
  return found;
}

/** The sets of the pinhole kinds that exist in the listing (for leftovers and checks). */
export function existingPinholeSets(objects: ReadonlyArray<Record<string, unknown>>, place: Pick<PinholePlace, 'table' | 'prefix'>): string[] {
  const [family, table] = place.table.split(' ');
  const names = new Set(PINHOLE_SETS.map((k) => pinholeSetName(place, k)));
  return objects
    .map((o) => o.set as { family?: unknown; table?: unknown; name?: unknown } | undefined)
    .filter((s) => s && s.family === family && s.table === table && typeof s.name === 'string' && names.has(s.name))
    .map((s) => s!.name as string);
}

function ruleFromKey(kind: PinholeSetKind, key: ReadonlyArray<string | number>, set: string): PinholeRule {
  const values = [...key];
  const remoteHost = kind.suffix.includes('host') ? String(values.shift()) : '';
  const remotePort = kind.suffix.includes('port') ? Number(values.shift()) : 0;
  const [internalClient, protocol, internalPort] = values;
  const rule: PinholeRule = {
    remoteHost,
    remotePort,
    internalClient: String(internalClient),
    internalPort: Number(internalPort),
    protocol: protocol === 'tcp' || protocol === 6 ? 'TCP' : 'UDP',
  };
  if (!isValidPinholeRule(rule) || !(protocol === 'tcp' || protocol === 'udp' || protocol === 6 || protocol === 17)) {
    throw new BackendError(`nftables: unexpected element in set ${set}: ${JSON.stringify(key)}`);
  }
  return rule;
}

/** What is missing of the pinholes: sets, their rules, elements. */
export function pinholeProblems(
  objects: ReadonlyArray<Record<string, unknown>>,
  place: Pick<PinholePlace, 'table' | 'prefix' | 'chain'>,
  expected: readonly PinholeRule[],
): string[] {
  const problems: string[] = [];
  const sets = existingPinholeSets(objects, place);
  for (const k of PINHOLE_SETS) if (!sets.includes(pinholeSetName(place, k))) problems.push(`set ${pinholeSetName(place, k)} of table ${place.table}`);
  if (problems.length > 0) return problems;
  const installed = new Set(parseInstalledPinholes(objects, place).map((p) => pinholeRuleString(p.rule)));
  const missing = expected.filter((r) => !installed.has(pinholeRuleString(r))).length;
  if (missing > 0) problems.push(`${missing} of ${expected.length} pinhole(s) in the sets of table ${place.table}`);
  // A reload of an old save brings back pinholes closed since: they would let the WAN in for good.
  const wanted = new Set(expected.map(pinholeRuleString));
  const surplus = [...installed].filter((rule) => !wanted.has(rule)).length;
  if (surplus > 0) problems.push(`${surplus} pinhole(s) in the sets of table ${place.table} that the table does not hold`);
  return problems;
}
