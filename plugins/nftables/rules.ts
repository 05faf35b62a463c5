import { z } from 'zod';
import { BackendError, type ChangeSet, type PinholeRule, type Protocol, type RuleSpec } from 'upnpd';
import { assertValidRules, isValidRule, keyString } from 'upnpd/backend';
import { INTERFACE_NAME, type ForwardJump, type NftablesOptions } from './options.js';
import { existingPinholeSets, pinholeChangeLines, pinholeInitLines, pinholeProblems, pinholeRemovalLines, type PinholePlace } from './pinholes.js';

export { nftablesOptionsSchema, type NftablesOptions } from './options.js';

/**
 * The nftables rules upnpd needs, as data: pure functions from (options, changes) to `nft -f`
 * scripts, and from `nft -j` listings back to mappings. The rule count is constant: mappings are
 * elements of two DNAT maps (remote-host restricted ones looked up first) and of one accept set.
 *
 *   table inet upnpd
 *     map dnat-remote   ip saddr . l4proto . dport : client . port   (mappings for one remote host)
 *     map dnat-any      l4proto . dport : client . port              (mappings for any remote host)
 *     chain prerouting  iifname <wan> dnat ip to ... map @dnat-remote, then ... map @dnat-any
 *   with `forwardJump`, in the admin's table (see options.ts for why there):
 *     set upnpd-accept     client . l4proto . port                    (one element per target)
 *     chain upnpd-forward  ct status dnat ip daddr . l4proto . dport @upnpd-accept accept
 *     chain <theirs>       jump upnpd-forward                         (inserted first)
 *   and, when that table is `inet`, the IPv6 pinhole sets and their accept rules (pinholes.ts).
 */

/** Options once the WAN interface is known: the init script needs it, change scripts do not. */
export type NftablesSettings = NftablesOptions & { readonly wanInterface: string };

export interface TableRef {
  readonly family: 'inet' | 'ip';
  readonly table: string;
}

/** A rule in the admin's table that jumps to upnpd's forward chain (found by listing, removed by handle). */
export interface AdminJump {
  readonly chain: string;
  readonly handle: number;
}

/** What an earlier run left in the admin's table (with `forwardJump`); removed before re-creating. */
export interface ForwardLeftovers {
  readonly jumps: readonly AdminJump[];
  readonly chain: boolean;
  readonly acceptSet: boolean;
  /** Pinhole sets found (by name). */
  readonly pinholeSets?: readonly string[];
}

export const NO_LEFTOVERS: ForwardLeftovers = Object.freeze({ jumps: [], chain: false, acceptSet: false, pinholeSets: [] });

const DNAT_ANY_MAP = 'dnat-any';
const DNAT_REMOTE_MAP = 'dnat-remote';
const PREROUTING_CHAIN = 'prerouting';
const DNAT_ANY_KEY = 'inet_proto . inet_service';
const DNAT_REMOTE_KEY = 'ipv4_addr . inet_proto . inet_service';
const DNAT_TARGET = 'ipv4_addr . inet_service';
const ACCEPT_KEY = 'ipv4_addr . inet_proto . inet_service';

/** upnpd's forward accept chain and set, in the admin's table. */
interface AdminForward extends TableRef {
  /** The admin's chain that jumps to ours. */
  readonly jumpFrom: string;
  readonly chain: string;
  readonly acceptSet: string;
  /** upnpd's own table name: the prefix of its names here. */
  readonly ownTable: string;
}

export function ownTable(options: NftablesOptions): TableRef {
  return { family: options.family, table: options.table };
}

function adminForward(options: NftablesOptions): AdminForward | undefined {
  return options.forwardJump && forwardIn(options.forwardJump, options.table);
}

/** Names derive from upnpd's table name, so two instances never collide in the admin's table. */
function forwardIn(jump: ForwardJump, ownTableName: string): AdminForward {
  return {
    family: jump.family,
    table: jump.table,
    jumpFrom: jump.chain,
    chain: `${ownTableName}-forward`,
    acceptSet: `${ownTableName}-accept`,
    ownTable: ownTableName,
  };
}

/**
 * Where IPv6 pinholes go: the admin's table of `forwardJump` when it is an `inet` one (an `ip`
 * table never sees IPv6); undefined otherwise, and the backend then declares no pinholes.
 */
export function pinholePlace(options: NftablesOptions, wanInterface = ''): PinholePlace | undefined {
  const forward = adminForward(options);
  if (!forward || forward.family !== 'inet') return undefined;
  return { table: ref(forward), chain: forward.chain, prefix: options.table, wanInterface };
}

function ref(t: TableRef): string {
  return `${t.family} ${t.table}`;
}

/** Comment on the jump rule, so that an admin reading their ruleset knows who added it. */
function jumpComment(options: NftablesOptions): string {
  return `upnpd: port mappings of table ${ref(ownTable(options))}`;
}

// ---------------------------------------------------------------------------------------------
// Scripts
// ---------------------------------------------------------------------------------------------

/**
 * Creates upnpd's table from scratch (a restart starts clean: the old table is deleted in the same
 * transaction) and, with `forwardJump`, replaces `leftovers` of an earlier run in the admin's table
 * with a fresh chain, set and jump.
 */
export function buildInitScript(settings: NftablesSettings, leftovers: ForwardLeftovers = NO_LEFTOVERS): string {
  if (!INTERFACE_NAME.test(settings.wanInterface)) {
    throw new BackendError(`nftables: "${settings.wanInterface}" is not a network interface name`);
  }
  const own = ownTable(settings);
  const wan = `iifname "${settings.wanInterface}"`;
  const lines = [
    ...deleteTable(own),
    `table ${ref(own)} {`,
    `\tmap ${DNAT_REMOTE_MAP} {`,
    `\t\ttype ${DNAT_REMOTE_KEY} : ${DNAT_TARGET}`,
    '\t}',
    `\tmap ${DNAT_ANY_MAP} {`,
    `\t\ttype ${DNAT_ANY_KEY} : ${DNAT_TARGET}`,
    '\t}',
    `\tchain ${PREROUTING_CHAIN} {`,
    '\t\ttype nat hook prerouting priority dstnat; policy accept;',
    `\t\t${wan} dnat ip to ip saddr . meta l4proto . th dport map @${DNAT_REMOTE_MAP}`,
    `\t\t${wan} dnat ip to meta l4proto . th dport map @${DNAT_ANY_MAP}`,
    '\t}',
    '}',
  ];
  const forward = adminForward(settings);
  const pinholes = pinholePlace(settings, settings.wanInterface);
  if (forward) {
    const table = ref(forward);
    lines.push(
      ...removeLeftovers(forward, leftovers),
      `add chain ${table} ${forward.chain}`,
      `add set ${table} ${forward.acceptSet} { type ${ACCEPT_KEY}; }`,
      `add rule ${table} ${forward.chain} ct status dnat ip daddr . meta l4proto . th dport @${forward.acceptSet} accept`,
      ...(pinholes ? pinholeInitLines(pinholes) : []),
      // At the top, so that a drop rule further down the admin's chain cannot shadow it.
      `insert rule ${table} ${forward.jumpFrom} jump ${forward.chain} comment "${jumpComment(settings)}"`,
    );
  }
  return script(lines);
}

/** Removes upnpd's table and, in the admin's table, the `leftovers` (jump, chain, set). Idempotent. */
export function buildShutdownScript(options: NftablesOptions, leftovers: ForwardLeftovers = NO_LEFTOVERS): string {
  const forward = adminForward(options);
  return script([...deleteTable(ownTable(options)), ...(forward ? removeLeftovers(forward, leftovers) : [])]);
}

/**
 * One transaction for a change set: element deletes, then adds, so a replace (same key, new
 * target) is atomic. The accept set has one element per target (client . protocol . port), shared
 * by every mapping to that target: `installed` — the rules in effect before this change — says
 * which targets stay in use. Without it, only the removed rules are assumed to use their targets.
 */
export function buildChangeScript(changes: ChangeSet, options: NftablesOptions, installed: InstalledMappings | Iterable<RuleSpec> = changes.remove): string {
  // Values go into the script verbatim: anything but a well-formed rule is refused (no injection).
  assertValidRules('nftables', [...changes.remove, ...changes.add]);
  const own = ownTable(options);
  const forward = adminForward(options);
  const inEffect = () => (installed instanceof InstalledMappings ? installed : new InstalledMappings(installed));
  const accept = forward ? acceptSetChanges(changes, inEffect()) : { remove: [], add: [] };
  const remote = (rules: readonly RuleSpec[]) => rules.filter((r) => r.remoteHost !== '');
  const anyHost = (rules: readonly RuleSpec[]) => rules.filter((r) => r.remoteHost === '');
  const mapped = (r: RuleSpec) => `${dnatKey(r)} : ${dnatTarget(r)}`;
  return script([
    ...elements('delete', own, DNAT_REMOTE_MAP, remote(changes.remove).map(dnatKey)),
    ...elements('delete', own, DNAT_ANY_MAP, anyHost(changes.remove).map(dnatKey)),
    ...(forward ? elements('delete', forward, forward.acceptSet, accept.remove) : []),
    ...elements('add', own, DNAT_REMOTE_MAP, remote(changes.add).map(mapped)),
    ...elements('add', own, DNAT_ANY_MAP, anyHost(changes.add).map(mapped)),
    ...(forward ? elements('add', forward, forward.acceptSet, accept.add) : []),
    ...pinholeScript(changes, options),
  ]);
}

/** The pinhole part of a change set; refused when the options leave no place for pinholes (the core never sends them then). */
function pinholeScript(changes: ChangeSet, options: NftablesOptions): string[] {
  const pinholes = changes.pinholes;
  if (!pinholes || pinholes.remove.length + pinholes.add.length === 0) return [];
  const place = pinholePlace(options);
  if (!place) throw new BackendError('nftables: IPv6 pinholes need forwardJump into an inet table');
  return pinholeChangeLines(pinholes, place);
}

/** Deletes a table whether or not it exists (`add` first makes the `delete` always valid). */
function deleteTable(t: TableRef): string[] {
  return [`add table ${ref(t)}`, `delete table ${ref(t)}`];
}

function removeLeftovers(forward: AdminForward, leftovers: ForwardLeftovers): string[] {
  const admin = ref(forward);
  return [
    ...leftovers.jumps.map((j) => `delete rule ${admin} ${j.chain} handle ${j.handle}`),
    ...(leftovers.chain ? [`flush chain ${admin} ${forward.chain}`, `delete chain ${admin} ${forward.chain}`] : []),
    ...(leftovers.acceptSet ? [`delete set ${admin} ${forward.acceptSet}`] : []),
    ...pinholeRemovalLines({ table: admin, prefix: forward.ownTable }, leftovers.pinholeSets ?? []),
  ];
}

function elements(verb: 'add' | 'delete', t: TableRef, set: string, items: readonly string[]): string[] {
  return items.length === 0 ? [] : [`${verb} element ${ref(t)} ${set} { ${items.join(', ')} }`];
}

function script(lines: readonly string[]): string {
  return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
}

/**
 * The mappings in effect, by key, and how many of them use each accept-set element (mappings to one
 * target share it). Kept up to date change set by change set, so that a change costs the same with
 * 5 mappings installed as with 5000.
 */
export class InstalledMappings {
  /** Each mapping's key → its accept-set element (all that a removal needs to know of it). */
  private readonly byKey = new Map<string, string>();
  private readonly acceptUsers = new Map<string, number>();

  constructor(rules: Iterable<RuleSpec> = []) {
    this.reset(rules);
  }

  /** How many installed mappings accept traffic to `element` (client . protocol . port). */
  users(element: string): number {
    return this.acceptUsers.get(element) ?? 0;
  }

  /** Forgets everything and takes `rules` as what is in effect. */
  reset(rules: Iterable<RuleSpec>): void {
    this.byKey.clear();
    this.acceptUsers.clear();
    for (const rule of rules) this.put(rule);
  }

  /** Records a change set that took effect: its removals, then its additions. */
  record(changes: ChangeSet): void {
    for (const rule of changes.remove) this.drop(keyString(rule));
    for (const rule of changes.add) this.put(rule);
  }

  private put(rule: RuleSpec): void {
    const key = keyString(rule);
    this.drop(key);
    const element = acceptElement(rule);
    this.byKey.set(key, element);
    this.acceptUsers.set(element, this.users(element) + 1);
  }

  private drop(key: string): void {
    const element = this.byKey.get(key);
    if (element === undefined) return;
    this.byKey.delete(key);
    const left = this.users(element) - 1;
    if (left > 0) this.acceptUsers.set(element, left);
    else this.acceptUsers.delete(element);
  }
}

/** Accept-set elements whose number of users goes from some to none (remove) or none to some (add). */
function acceptSetChanges(changes: ChangeSet, installed: InstalledMappings): { remove: string[]; add: string[] } {
  const removed = countBy(changes.remove, acceptElement);
  const added = countBy(changes.add, acceptElement);
  const result = { remove: [] as string[], add: [] as string[] };
  for (const element of new Set([...removed.keys(), ...added.keys()])) {
    const before = Math.max(installed.users(element), removed.get(element) ?? 0);
    const after = before - (removed.get(element) ?? 0) + (added.get(element) ?? 0);
    if (before > 0 && after === 0) result.remove.push(element);
    if (before === 0 && after > 0) result.add.push(element);
  }
  return result;
}

function countBy<T>(items: readonly T[], key: (item: T) => string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const item of items) counts.set(key(item), (counts.get(key(item)) ?? 0) + 1);
  return counts;
}

function nftProtocol(protocol: Protocol): string {
  return protocol === 'TCP' ? 'tcp' : 'udp';
}

function dnatKey(r: RuleSpec): string {
  const key = `${nftProtocol(r.protocol)} . ${r.externalPort}`;
  return r.remoteHost === '' ? key : `${r.remoteHost} . ${key}`;
}

function dnatTarget(r: RuleSpec): string {
  return `${r.internalClient} . ${r.internalPort}`;
}

/**
 * Joined rather than written as a template: V8 builds a template of 13 characters or more as a tree
 * of string pieces, which InstalledMappings kept per mapping (about 150 bytes, against 40 for the
 * flat string that join builds).
 */
function acceptElement(r: RuleSpec): string {
  return [r.internalClient, nftProtocol(r.protocol), r.internalPort].join(' . ');
}

// ---------------------------------------------------------------------------------------------
// Listings (`nft -j list table ...`)
// ---------------------------------------------------------------------------------------------

const listingSchema = z.object({ nftables: z.array(z.record(z.string(), z.unknown())) });
const scalar = z.union([z.string(), z.number()]);
const concat = z.object({ concat: z.array(scalar) });
/** An element key is a bare concatenation, or wrapped in `elem` when it carries options (timeout, counter). */
const elementKey = z.union([concat, z.object({ elem: z.object({ val: concat }) }).transform((e) => e.elem.val)]);
const mapSchema = z.object({
  family: z.string(),
  table: z.string(),
  name: z.string(),
  elem: z.array(z.tuple([elementKey, concat])).optional(),
});
const namedObject = z.object({ family: z.string(), table: z.string(), name: z.string() });
const ruleSchema = z.object({
  family: z.string(),
  table: z.string(),
  chain: z.string(),
  handle: z.number().int(),
  expr: z.array(z.record(z.string(), z.unknown())).default([]),
});

function listingObjects(json: string, what: string): Array<Record<string, unknown>> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (err) {
    throw new BackendError(`nftables: cannot read the JSON listing of ${what}`, { cause: err });
  }
  const listing = listingSchema.safeParse(parsed);
  if (!listing.success) throw new BackendError(`nftables: unexpected JSON listing of ${what}: ${listing.error.message}`);
  return listing.data.nftables;
}

function objectsOf<T>(objects: Array<Record<string, unknown>>, kind: string, schema: z.ZodType<T>, what: string): T[] {
  return objects
    .filter((o) => kind in o)
    .map((o) => {
      const parsed = schema.safeParse(o[kind]);
      if (!parsed.success) throw new BackendError(`nftables: unexpected ${kind} in the listing of ${what}: ${parsed.error.message}`);
      return parsed.data;
    });
}

function inTable(t: TableRef): (o: { family: string; table: string }) => boolean {
  return (o) => o.family === t.family && o.table === t.table;
}

/** The mappings installed in upnpd's table, from `nft -j list table <family> <table>`. */
export function parseInstalledRules(json: string, options: NftablesOptions): RuleSpec[] {
  const own = ownTable(options);
  const what = `table ${ref(own)}`;
  const maps = objectsOf(listingObjects(json, what), 'map', mapSchema, what).filter(inTable(own));
  const entries = (name: string) => maps.find((m) => m.name === name)?.elem ?? [];
  const rules: RuleSpec[] = [];
  for (const [key, target] of entries(DNAT_REMOTE_MAP)) {
    const [remoteHost, protocol, externalPort] = key.concat;
    rules.push(ruleFrom(String(remoteHost), protocol, externalPort, target.concat, what));
  }
  for (const [key, target] of entries(DNAT_ANY_MAP)) {
    const [protocol, externalPort] = key.concat;
    rules.push(ruleFrom('', protocol, externalPort, target.concat, what));
  }
  return rules;
}

function ruleFrom(remoteHost: string, protocol: unknown, externalPort: unknown, target: ReadonlyArray<unknown>, what: string): RuleSpec {
  const [internalClient, internalPort] = target;
  const nftProtocol = protocolOf(protocol);
  const rule: RuleSpec | undefined = nftProtocol && {
    remoteHost,
    externalPort: Number(externalPort),
    protocol: nftProtocol,
    internalClient: String(internalClient),
    internalPort: Number(internalPort),
  };
  if (!rule || !isValidRule(rule)) {
    throw new BackendError(`nftables: unexpected element in ${what}: ${JSON.stringify([remoteHost, protocol, externalPort, target])}`);
  }
  return rule;
}

/** An element of the accept set as `nft -j` lists it (`{ concat: [address, protocol, port] }`), written as acceptElement writes it. */
function acceptElementOfListing(element: unknown): string {
  const parts: unknown[] = element && typeof element === 'object' && 'concat' in element && Array.isArray(element.concat) ? element.concat : [element];
  const [address, protocol, port] = parts;
  const known = protocolOf(protocol);
  return `${String(address)} . ${known ? nftProtocol(known) : String(protocol)} . ${String(port)}`;
}

/** nft prints protocols by name; a number is accepted too (IANA: 6 TCP, 17 UDP). */
function protocolOf(value: unknown): Protocol | undefined {
  if (value === 'tcp' || value === 6) return 'TCP';
  if (value === 'udp' || value === 17) return 'UDP';
  return undefined;
}

/** The pinhole sets an earlier run left (only named when there are some). */
function pinholeSetsIn(objects: ReadonlyArray<Record<string, unknown>>, forward: AdminForward): { pinholeSets?: string[] } {
  const pinholeSets = existingPinholeSets(objects, { table: ref(forward), prefix: forward.ownTable });
  return pinholeSets.length > 0 ? { pinholeSets } : {};
}

/** What the admin's table named by `forwardJump` holds that matters to upnpd. */
export interface AdminTableState {
  /** Whether the chain named by `forwardJump` exists (init needs it). */
  readonly jumpChainExists: boolean;
  readonly leftovers: ForwardLeftovers;
}

/** Reads `nft -j list table <forwardJump.family> <forwardJump.table>`. */
export function parseAdminTable(json: string, options: { readonly table: string; readonly forwardJump: ForwardJump }): AdminTableState {
  const forward = forwardIn(options.forwardJump, options.table);
  const what = `table ${ref(forward)}`;
  const objects = listingObjects(json, what);
  const here = inTable(forward);
  const chains = objectsOf(objects, 'chain', namedObject, what).filter(here);
  const sets = objectsOf(objects, 'set', namedObject, what).filter(here);
  const jumpsToOurChain = (expr: ReadonlyArray<Record<string, unknown>>) =>
    expr.some((e) => [e.jump, e.goto].some((v) => (v as { target?: unknown } | undefined)?.target === forward.chain));
  const jumps = objectsOf(objects, 'rule', ruleSchema, what)
    .filter(here)
    .filter((r) => jumpsToOurChain(r.expr))
    .map((r) => ({ chain: r.chain, handle: r.handle }));
  return {
    jumpChainExists: chains.some((c) => c.name === forward.jumpFrom),
    leftovers: {
      jumps,
      chain: chains.some((c) => c.name === forward.chain),
      acceptSet: sets.some((s) => s.name === forward.acceptSet),
      ...pinholeSetsIn(objects, forward),
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Integrity (reconciliation)
// ---------------------------------------------------------------------------------------------

/**
 * One transaction that recreates everything from scratch: upnpd's table with every mapping of
 * `rules` and, with `forwardJump`, the chain, set (with its elements) and jump in the admin's table
 * (replacing `leftovers`). What a reload left of the old state does not matter.
 */
export function buildResyncScript(
  settings: NftablesSettings,
  rules: readonly RuleSpec[],
  leftovers: ForwardLeftovers = NO_LEFTOVERS,
  pinholes: readonly PinholeRule[] = [],
): string {
  const changes: ChangeSet = pinholes.length > 0 ? { remove: [], add: rules, pinholes: { remove: [], add: pinholes } } : { remove: [], add: rules };
  return buildInitScript(settings, leftovers) + buildChangeScript(changes, settings, []);
}

const elementsSchema = namedObject.extend({ elem: z.array(z.unknown()).optional() });

/**
 * The number of mappings in `expected` that the installed ones lack, and of installed ones that
 * `expected` does not hold (they forward too), by identity (key and target).
 */
function mismatchCounts(installed: readonly RuleSpec[], expected: readonly RuleSpec[]): { missing: number; surplus: number } {
  const identity = (r: RuleSpec) => `${dnatKey(r)}>${dnatTarget(r)}`;
  const have = new Set(installed.map(identity));
  const wanted = new Set(expected.map(identity));
  return {
    missing: expected.filter((r) => !have.has(identity(r))).length,
    surplus: installed.filter((r) => !wanted.has(identity(r))).length,
  };
}

/** What is missing from upnpd's own table, or there that the table does not hold, from `nft -j list table <family> <table>`. */
export function ownTableProblems(json: string, options: NftablesOptions, expected: readonly RuleSpec[]): string[] {
  const own = ownTable(options);
  const what = `table ${ref(own)}`;
  const objects = listingObjects(json, what);
  const here = inTable(own);
  const problems: string[] = [];
  const chains = objectsOf(objects, 'chain', namedObject, what).filter(here);
  const maps = objectsOf(objects, 'map', namedObject, what).filter(here);
  if (!chains.some((c) => c.name === PREROUTING_CHAIN)) problems.push(`chain ${PREROUTING_CHAIN} of ${what}`);
  for (const name of [DNAT_REMOTE_MAP, DNAT_ANY_MAP]) if (!maps.some((m) => m.name === name)) problems.push(`map ${name} of ${what}`);
  const dnatRules = objectsOf(objects, 'rule', ruleSchema, what)
    .filter(here)
    .filter((r) => r.chain === PREROUTING_CHAIN);
  if (dnatRules.length < 2) problems.push(`${2 - dnatRules.length} of the 2 DNAT rules of chain ${PREROUTING_CHAIN} of ${what}`);
  const { missing, surplus } = mismatchCounts(parseInstalledRules(json, options), expected);
  if (missing > 0) problems.push(`${missing} of ${expected.length} mapping(s) in the maps of ${what}`);
  // A reload of a ruleset saved while an old mapping was held brings its element back.
  if (surplus > 0) problems.push(`${surplus} element(s) in the maps of ${what} that the table does not hold`);
  return problems;
}

/**
 * What is missing of upnpd's forward accept in the admin's table (`forwardJump`), from
 * `nft -j list table` of that table: the jump, upnpd's chain and its rule, the set and its
 * elements. Nothing when the admin's chain itself is gone (there is nothing to jump from yet).
 */
export function forwardProblems(
  json: string,
  options: NftablesOptions & { readonly forwardJump: ForwardJump },
  expected: readonly RuleSpec[],
  pinholes: readonly PinholeRule[] = [],
): string[] {
  const forward = forwardIn(options.forwardJump, options.table);
  const what = `table ${ref(forward)}`;
  const state = parseAdminTable(json, options);
  if (!state.jumpChainExists) return [];
  const problems: string[] = [];
  if (state.leftovers.jumps.length === 0) problems.push(`the jump from chain ${forward.jumpFrom} of ${what} to ${forward.chain}`);
  const objects = listingObjects(json, what);
  const here = inTable(forward);
  if (!state.leftovers.chain) problems.push(`chain ${forward.chain} of ${what}`);
  else if (!objectsOf(objects, 'rule', ruleSchema, what).some((r) => here(r) && r.chain === forward.chain)) {
    problems.push(`the accept rule of chain ${forward.chain} of ${what}`);
  }
  const set = objectsOf(objects, 'set', elementsSchema, what).find((s) => here(s) && s.name === forward.acceptSet);
  if (!set) {
    problems.push(`set ${forward.acceptSet} of ${what}`);
  } else {
    // By content, not by count: a reload of a save of the admin's table brings back the elements it held then.
    const wanted = new Set(expected.map(acceptElement));
    const found = new Set((set.elem ?? []).map(acceptElementOfListing));
    const lacking = [...wanted].filter((element) => !found.has(element)).length;
    const surplus = [...found].filter((element) => !wanted.has(element)).length;
    if (lacking > 0) problems.push(`${lacking} of ${wanted.size} element(s) of set ${forward.acceptSet} of ${what}`);
    if (surplus > 0) problems.push(`${surplus} element(s) of set ${forward.acceptSet} of ${what} that the table does not hold`);
  }
  const place = pinholePlace(options);
  if (place) problems.push(...pinholeProblems(objects, place, pinholes));
  return problems;
}
