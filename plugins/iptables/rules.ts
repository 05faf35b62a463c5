import { z } from 'zod';
import type { ChangeSet, Protocol, RuleSpec } from 'upnpd';
import { assertValidRules, interfaceName, isValidRule } from 'upnpd/backend';
import { NO_SHARDS, placementOf, shardChanges, shardOfChain, type Placement, type Shard, type TableShards } from './shards.js';

// Rules as data: pure functions from (change set, options) to an iptables-restore script or to the
// equivalent iptables commands, and from iptables-save output back to the mappings it holds.

export type IptablesTable = 'nat' | 'filter';
/** Tables in the order a script touches them: a DNAT without its ACCEPT only drops packets. */
const TABLES: readonly IptablesTable[] = ['nat', 'filter'];
/** The built-in chain each table's rules (or the jump to upnpd's own chain) live in. */
const BUILT_IN_CHAIN: Record<IptablesTable, string> = { nat: 'PREROUTING', filter: 'FORWARD' };
const ALL_BUILT_IN_CHAINS = ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'];

/** The longest chain name x_tables takes. */
const MAX_CHAIN_NAME = 28;
/** The longest name of upnpd's own nat or filter chain: its shard chains append ".t" and 3 hex digits. */
const SHARD_NAME_ROOM = MAX_CHAIN_NAME - 5;
/** Where the shard chains hang when the rules' chain is the built-in one (their names are derived from these). */
const DEFAULT_CHAIN: Record<IptablesTable, string> = { nat: 'UPNPD-PREROUTING', filter: 'UPNPD-FORWARD' };

/** An iptables chain name option: `builtIn` itself, or a chain of upnpd's own. */
const chainName = z.string().regex(/^[A-Za-z0-9_][\w.-]{0,27}$/, 'must be an iptables chain name (letters, digits, "_", "." or "-"; at most 28 characters)');

function chainOption(builtIn: string, defaultName: string) {
  return chainName
    .refine((name) => name === builtIn || !ALL_BUILT_IN_CHAINS.includes(name), `must be ${builtIn} or a chain of upnpd's own`)
    .refine(
      (name) => name === builtIn || name.length <= SHARD_NAME_ROOM,
      `a chain of upnpd's own has at most ${SHARD_NAME_ROOM} characters (its shard chains append up to ${MAX_CHAIN_NAME - SHARD_NAME_ROOM})`,
    )
    .default(defaultName);
}

export const iptablesOptionsSchema = z
  .object({
    /** Also add an ACCEPT rule per mapping in the filter table (needed when FORWARD's policy is DROP). */
    insertForwardRules: z.boolean().default(true),
    /**
     * filter-table chain that dispatches to the shard chains holding the ACCEPT rules (shards.ts).
     * 'FORWARD' puts the dispatch rules straight there (the old upnpd put its rules there; the shard
     * chains are then named after UPNPD-FORWARD); any other name is a chain of upnpd's own, at most
     * 23 characters: created (and flushed) at start, jumped to once from FORWARD, deleted at shutdown.
     */
    forwardChain: chainOption('FORWARD', DEFAULT_CHAIN.filter),
    /** nat-table chain that dispatches to the shards of the DNAT rules: 'PREROUTING', or a chain of upnpd's own (as forwardChain). */
    preroutingChain: chainOption('PREROUTING', DEFAULT_CHAIN.nat),
    /** 'iptables' is whatever `iptables` is (nf_tables on current distributions); 'iptables-legacy' the x_tables one. */
    flavour: z.enum(['iptables', 'iptables-legacy']).default('iptables'),
    /** Interface the DNAT and ACCEPT rules match; default: the daemon's `wan`. */
    wanInterface: interfaceName.optional(),
    /**
     * IPv6 pinholes (WANIPv6FirewallControl): ACCEPT rules in a chain of upnpd's own in ip6tables'
     * filter table, jumped to from its FORWARD. Off unless asked for: it is the admin's IPv6
     * forward path that upnpd then changes.
     */
    pinholes: z.boolean().default(false),
    /** ip6tables filter chain of the pinholes (always upnpd's own). */
    pinholeChain: chainName.refine((name) => !ALL_BUILT_IN_CHAINS.includes(name), "must be a chain of upnpd's own").default('UPNPD-PINHOLES'),
    /**
     * upnpd's jumps and dispatch rules carry a comment starting with this tag; it is how upnpd finds
     * them in the built-in chains. Mapping rules carry none: they live in upnpd's leaf chains.
     */
    comment: z
      .string()
      .regex(/^[A-Za-z0-9_.-]{1,32}$/, 'must be 1 to 32 letters, digits, "_", "." or "-"')
      .default('upnpd'),
  })
  .strict();

export type IptablesOptions = z.output<typeof iptablesOptionsSchema>;

/** What the rule builders need: the options with the WAN interface settled. */
export type IptablesRuleOptions = Omit<IptablesOptions, 'wanInterface'> & { readonly wanInterface: string };

export interface IptablesPrograms {
  readonly iptables: string;
  readonly restore: string;
  readonly save: string;
}

export function programsOf(flavour: IptablesOptions['flavour']): IptablesPrograms {
  return { iptables: flavour, restore: `${flavour}-restore`, save: `${flavour}-save` };
}

/** The IPv6 programs of the same flavour (ip6tables, ip6tables-legacy). */
export function ip6ProgramsOf(flavour: IptablesOptions['flavour']): IptablesPrograms {
  return programsOf(flavour.replace('iptables', 'ip6tables') as IptablesOptions['flavour']);
}

// ---------------------------------------------------------------------------------------------
// Edits: one line of a restore script, or one iptables command
// ---------------------------------------------------------------------------------------------

/** `declareChain` creates or flushes (`:CHAIN` under --noflush); `createChain` fails when it exists (`-N`). */
type Operation = 'append' | 'insert' | 'delete' | 'declareChain' | 'createChain' | 'deleteChain';

interface Edit {
  readonly table: IptablesTable;
  readonly operation: Operation;
  readonly chain: string;
  /** The rule specification, one argument per element (unquoted). */
  readonly args: readonly string[];
}

const FLAG: Record<Operation, string> = { append: '-A', insert: '-I', delete: '-D', declareChain: '-N', createChain: '-N', deleteChain: '-X' };

/** The chain upnpd owns in `table`, or undefined when its rules go straight into the built-in chain. */
function ownChain(table: IptablesTable, options: IptablesRuleOptions): string | undefined {
  const name = table === 'nat' ? options.preroutingChain : options.forwardChain;
  return name === BUILT_IN_CHAIN[table] ? undefined : name;
}

/** The chain that dispatches to the shard chains: upnpd's own, or the built-in one. */
function rootChain(table: IptablesTable, options: IptablesRuleOptions): string {
  return ownChain(table, options) ?? BUILT_IN_CHAIN[table];
}

/** The name the shard chains of `table` are derived from. */
function shardBase(table: IptablesTable, options: IptablesRuleOptions): string {
  return ownChain(table, options) ?? DEFAULT_CHAIN[table];
}

/** Where the rule of `spec` goes in `table`: nat by the external port, filter by the internal one (what each rule matches). */
function placementIn(table: IptablesTable, spec: RuleSpec, options: IptablesRuleOptions): Placement {
  return placementOf(shardBase(table, options), spec.protocol, table === 'nat' ? spec.externalPort : spec.internalPort);
}

/** Whether upnpd has rules in `table` at all. */
function usesTable(table: IptablesTable, options: IptablesRuleOptions): boolean {
  return table === 'nat' || options.insertForwardRules;
}

function jumpComment(tag: string): string {
  return `${tag} jump`;
}

function dispatchComment(tag: string): string {
  return `${tag} shard`;
}

/** The rule in `from` that sends the packets of `to`'s protocol and ports to `to`. */
function dispatchRule(table: IptablesTable, from: string, to: Shard, options: IptablesRuleOptions): Omit<Edit, 'operation'> {
  const p = to.protocol;
  return {
    table,
    chain: from,
    args: ['-p', p, '-m', p, '--dport', `${to.from}:${to.to}`, '-m', 'comment', '--comment', dispatchComment(options.comment), '-j', to.chain],
  };
}

/** The dispatch rule to a shard chain: from the root chain to a block, from its block to a leaf. */
function dispatchTo(table: IptablesTable, to: Shard, options: IptablesRuleOptions): Omit<Edit, 'operation'> {
  const { kind, placement } = shardOfChain(shardBase(table, options), to.chain)!;
  return dispatchRule(table, kind === 'block' ? rootChain(table, options) : placement.block.chain, to, options);
}

/**
 * The rules of one mapping, arguments in the order iptables-save prints them: the DNAT in nat and,
 * with insertForwardRules, the ACCEPT in filter. They carry no comment: a leaf chain holds
 * upnpd's mapping rules only, and the DNAT rule says the whole mapping. Under x_tables a comment
 * match is 256 bytes more in every rule, which every commit copies: with 5000 mappings it made
 * each commit 1.8 times as slow.
 */
function mappingRules(spec: RuleSpec, options: IptablesRuleOptions): Omit<Edit, 'operation'>[] {
  assertValidRules('iptables', [spec]);
  const protocol = spec.protocol.toLowerCase();
  const source = spec.remoteHost ? ['-s', `${spec.remoteHost}/32`] : [];
  const dnat = {
    table: 'nat' as const,
    chain: placementIn('nat', spec, options).leaf.chain,
    args: [
      ...source,
      '-i',
      options.wanInterface,
      '-p',
      protocol,
      '-m',
      protocol,
      '--dport',
      String(spec.externalPort),
      '-j',
      'DNAT',
      '--to-destination',
      `${spec.internalClient}:${spec.internalPort}`,
    ],
  };
  if (!options.insertForwardRules) return [dnat];
  const accept = {
    table: 'filter' as const,
    chain: placementIn('filter', spec, options).leaf.chain,
    args: [
      ...source,
      '-d',
      `${spec.internalClient}/32`,
      '-i',
      options.wanInterface,
      '-p',
      protocol,
      '-m',
      protocol,
      '--dport',
      String(spec.internalPort),
      '-j',
      'ACCEPT',
    ],
  };
  return [dnat, accept];
}

/** The shard chains of both tables that exist (see shards.ts). */
export interface Shards {
  readonly nat: TableShards;
  readonly filter: TableShards;
}

export const EMPTY_SHARDS: Shards = { nat: NO_SHARDS, filter: NO_SHARDS };

/** A change set as edits, and the shard chains that exist once it is applied. */
interface ChangePlan {
  readonly edits: Edit[];
  readonly shards: Shards;
}

function mappingAdditions(specs: readonly RuleSpec[], table: IptablesTable, options: IptablesRuleOptions): Edit[] {
  // A mapping restricted to a remote host is inserted at the top of its leaf and a wildcard one
  // appended, so that for the same port the specific DNAT matches before the wildcard.
  return specs.flatMap((spec) =>
    mappingRules(spec, options)
      .filter((r) => r.table === table)
      .map((r) => ({ ...r, operation: spec.remoteHost ? ('insert' as const) : ('append' as const) })),
  );
}

/**
 * One table's part of a change set, given the shard chains that exist: the mappings' rules
 * deleted, shard chains left empty deleted (with the rules dispatching to them), new shard chains
 * created and dispatched to, the mappings' rules added.
 */
function tableChangeEdits(table: IptablesTable, changes: ChangeSet, shards: TableShards, options: IptablesRuleOptions): { edits: Edit[]; after: TableShards } {
  const deletions = changes.remove.flatMap((spec) =>
    mappingRules(spec, options)
      .filter((r) => r.table === table)
      .map((r) => ({ ...r, operation: 'delete' as const })),
  );
  const placed = (specs: readonly RuleSpec[]) => specs.map((spec) => placementIn(table, spec, options));
  const { after, created, emptied } = shardChanges(shards, placed(changes.remove), placed(changes.add));
  const edits: Edit[] = [
    ...deletions,
    ...emptied.flatMap((shard): Edit[] => [
      { ...dispatchTo(table, shard, options), operation: 'delete' },
      { table, operation: 'deleteChain', chain: shard.chain, args: [] },
    ]),
    ...created.flatMap((shard): Edit[] => [
      { table, operation: 'createChain', chain: shard.chain, args: [] },
      { ...dispatchTo(table, shard, options), operation: 'append' },
    ]),
    ...mappingAdditions(changes.add, table, options),
  ];
  return { edits, after };
}

/** Removals first, then additions, per table, in the shard chains that `shards` says exist. */
function planChange(changes: ChangeSet, shards: Shards, options: IptablesRuleOptions): ChangePlan {
  assertValidRules('iptables', [...changes.remove, ...changes.add]);
  const nat = tableChangeEdits('nat', changes, shards.nat, options);
  if (!usesTable('filter', options)) return { edits: nat.edits, shards: { nat: nat.after, filter: shards.filter } };
  const filter = tableChangeEdits('filter', changes, shards.filter, options);
  return { edits: [...nat.edits, ...filter.edits], shards: { nat: nat.after, filter: filter.after } };
}

/** The change set that undoes `changes`. */
export function inverseOf(changes: ChangeSet): ChangeSet {
  return { remove: changes.add, add: changes.remove };
}

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------

function restoreQuote(arg: string): string {
  return /^[^\s"'\\]+$/.test(arg) ? arg : `"${arg.replace(/["\\]/g, '\\$&')}"`;
}

function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

function restoreLine(edit: Edit): string {
  if (edit.operation === 'declareChain') return `:${edit.chain} - [0:0]`;
  if (edit.operation === 'createChain') return `-N ${edit.chain}`;
  return [FLAG[edit.operation], edit.chain, ...edit.args].map(restoreQuote).join(' ');
}

/** An iptables-restore script: one `*table ... COMMIT` section per table touched; '' when there is nothing to do. */
function restoreScript(edits: readonly Edit[]): string {
  const lines: string[] = [];
  for (const table of TABLES) {
    const inTable = edits.filter((e) => e.table === table);
    if (inTable.length === 0) continue;
    lines.push(`*${table}`, ...inTable.map(restoreLine), 'COMMIT');
  }
  return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
}

/**
 * The input for `iptables-restore --noflush` that applies `changes` (removals before additions)
 * when the shard chains `shards` exist, and the shard chains that exist afterwards.
 */
export function buildRestoreScript(changes: ChangeSet, options: IptablesRuleOptions, shards: Shards = EMPTY_SHARDS): { script: string; shards: Shards } {
  const plan = planChange(changes, shards, options);
  return { script: restoreScript(plan.edits), shards: plan.shards };
}

/** The iptables commands equivalent to buildRestoreScript's script, one shell command line each (for dry runs and logs). */
export function renderCommands(changes: ChangeSet, options: IptablesRuleOptions, shards: Shards = EMPTY_SHARDS): string[] {
  const program = programsOf(options.flavour).iptables;
  const { edits } = planChange(changes, shards, options);
  return TABLES.flatMap((table) =>
    edits.filter((e) => e.table === table).map((e) => [program, '-t', table, FLAG[e.operation], e.chain, ...e.args].map(shellQuote).join(' ')),
  );
}

/** Which table's section of `script` holds 1-based line `line` (iptables-restore names the line that failed). */
export function tableAtLine(script: string, line: number): IptablesTable | undefined {
  let table: IptablesTable | undefined;
  for (const [index, text] of script.split('\n').entries()) {
    if (index + 1 > line) break;
    const header = /^\*(\w+)$/.exec(text);
    if (header) table = TABLES.find((t) => t === header[1]);
  }
  return table;
}

// ---------------------------------------------------------------------------------------------
// Reading iptables-save output
// ---------------------------------------------------------------------------------------------

export interface SavedRule {
  readonly table: IptablesTable;
  readonly chain: string;
  /** The rule specification after `-A CHAIN`, one argument per element (unquoted). */
  readonly args: readonly string[];
  readonly comment: string | undefined;
}

export interface SavedRuleset {
  /** Chains that exist, per table. */
  readonly chains: ReadonlyMap<IptablesTable, ReadonlySet<string>>;
  readonly rules: readonly SavedRule[];
}

/**
 * Splits a line as iptables-restore does: whitespace-separated, double quotes group, backslash
 * escapes inside quotes. Runs of plain characters are sliced, not added a character at a time
 * (the periodic check parses every rule: with 5000 mappings that built millions of strings).
 */
function splitArgs(line: string): string[] {
  const args: string[] = [];
  let i = 0;
  while (i < line.length) {
    while (i < line.length && isSpace(line.charCodeAt(i))) i++;
    if (i >= line.length) break;
    let current = '';
    while (i < line.length && !isSpace(line.charCodeAt(i))) {
      if (line[i] !== '"') {
        const start = i;
        while (i < line.length && line[i] !== '"' && !isSpace(line.charCodeAt(i))) i++;
        current += line.slice(start, i);
        continue;
      }
      // Quoted: up to the closing quote (or the end of the line), a backslash escaping the next character.
      i++;
      let start = i;
      while (i < line.length && line[i] !== '"') {
        if (line[i] === '\\' && i + 1 < line.length) {
          current += line.slice(start, i) + line[i + 1];
          i += 2;
          start = i;
        } else i++;
      }
      current += line.slice(start, i);
      if (i < line.length) i++;
    }
    args.push(current);
  }
  return args;
}

/** Whether a character is whitespace as /\s/ says (space, tab, CR, LF and the rest), without a regular expression for ASCII. */
function isSpace(code: number): boolean {
  return code === 32 || (code >= 9 && code <= 13) || (code > 127 && /\s/.test(String.fromCharCode(code)));
}

/**
 * iptables-save's output without what changes while the rules stay the same: its comment lines
 * (`# Generated by iptables-save ... on <time>`) and the chains' packet and byte counters.
 */
export function stableSaveText(output: string): string {
  // Line by line: one regular expression over the whole listing, tried at every line start, took
  // 30 to 50 ms with 5000 mappings at each periodic check; this takes about 1 ms. A comment line
  // goes with its line end.
  let stable = '';
  for (let start = 0; start < output.length;) {
    const newline = output.indexOf('\n', start);
    const end = newline < 0 ? output.length : newline + 1;
    const line = output.slice(start, end);
    if (!line.startsWith('#')) stable += line.startsWith(':') ? line.replace(CHAIN_COUNTERS, '') : line;
    start = end;
  }
  return stable;
}

/** A chain line's packet and byte counters (`:FORWARD DROP [12:3456]`). */
const CHAIN_COUNTERS = /(?<=^:\S+ \S+) \[\d+:\d+\](?=\n?$)/;

/** Parses iptables-save output (any number of tables; only nat and filter are kept). */
export function parseSave(output: string): SavedRuleset {
  const chains = new Map<IptablesTable, Set<string>>();
  const rules: SavedRule[] = [];
  let table: IptablesTable | undefined;
  for (const line of output.split('\n')) {
    if (line.startsWith('*')) {
      table = TABLES.find((t) => t === line.slice(1).trim());
      if (table && !chains.has(table)) chains.set(table, new Set());
    } else if (!table) {
      continue;
    } else if (line.startsWith(':')) {
      chains.get(table)!.add(line.slice(1).split(' ')[0]!);
    } else if (line.startsWith('-A ')) {
      const [, chain, ...args] = splitArgs(line);
      const commentAt = args.indexOf('--comment');
      rules.push({ table, chain: chain!, args, comment: commentAt >= 0 ? args[commentAt + 1] : undefined });
    }
  }
  return { chains, rules };
}

function isTagged(rule: SavedRule, tag: string): boolean {
  return rule.comment?.startsWith(`${tag} `) ?? false;
}

/** The value after `flag` in a rule's arguments, if the flag is there. */
function valueAfter(args: readonly string[], flag: string): string | undefined {
  const at = args.indexOf(flag);
  return at >= 0 ? args[at + 1] : undefined;
}

/**
 * The mapping a saved nat rule installs, if it is exactly the DNAT rule upnpd writes for one (in
 * the leaf chain of its port): read from its arguments, then rendered again and compared, so that
 * a rule with anything more or less (another match, a port range, an old version's comment) is
 * none of them.
 */
export function mappingOfDnatRule(rule: SavedRule, options: IptablesRuleOptions): RuleSpec | undefined {
  return dnatRuleMapping(rule, options)?.spec;
}

/** mappingOfDnatRule's mapping with the rules upnpd writes for it (mappingRules), rendered once. */
function dnatRuleMapping(rule: SavedRule, options: IptablesRuleOptions): { spec: RuleSpec; rules: Omit<Edit, 'operation'>[] } | undefined {
  if (rule.table !== 'nat' || valueAfter(rule.args, '-j') !== 'DNAT') return undefined;
  const [internalClient = '', internalPort] = valueAfter(rule.args, '--to-destination')?.split(':') ?? [];
  const source = valueAfter(rule.args, '-s');
  const spec: RuleSpec = {
    protocol: valueAfter(rule.args, '-p')?.toUpperCase() as Protocol,
    externalPort: Number(valueAfter(rule.args, '--dport')),
    internalClient,
    internalPort: Number(internalPort),
    remoteHost: source?.endsWith('/32') ? source.slice(0, -3) : (source ?? ''),
  };
  if (!isValidRule(spec)) return undefined;
  const rules = mappingRules(spec, options);
  const dnat = rules[0]!;
  return rule.chain === dnat.chain && sameArgs(rule.args, dnat.args) ? { spec, rules } : undefined;
}

function sameArgs(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((arg, i) => arg === b[i]);
}

/** What tells the ACCEPT rule of a mapping from others: its chain and arguments. */
function acceptKey(chain: string, args: readonly string[]): string {
  return `${chain} ${args.join(' ')}`;
}

/** The target of a rule (`-j CHAIN`), if it has one. */
function targetOf(rule: SavedRule): string | undefined {
  const at = rule.args.indexOf('-j');
  return at >= 0 ? rule.args[at + 1] : undefined;
}

/**
 * The leaf chains of `table` a packet can reach: dispatched to from a block chain that is
 * dispatched to from the root chain (a firewall reload that dropped a dispatch rule cuts its
 * mappings off, and they count as missing).
 */
function reachableLeaves(saved: SavedRuleset, table: IptablesTable, options: IptablesRuleOptions): Set<string> {
  const base = shardBase(table, options);
  const dispatchedFrom = new Map<string, string[]>();
  for (const r of saved.rules) {
    if (r.table !== table || r.comment !== dispatchComment(options.comment)) continue;
    const target = targetOf(r);
    if (target) dispatchedFrom.set(r.chain, [...(dispatchedFrom.get(r.chain) ?? []), target]);
  }
  const targets = (chain: string, kind: 'block' | 'leaf') => (dispatchedFrom.get(chain) ?? []).filter((t) => shardOfChain(base, t)?.kind === kind);
  return new Set(targets(rootChain(table, options), 'block').flatMap((block) => targets(block, 'leaf')));
}

/**
 * The mappings fully installed in `saved`: one entry per DNAT rule upnpd writes (mappingOfDnatRule)
 * in a reachable nat leaf that has its ACCEPT rule in a reachable filter leaf too (when
 * insertForwardRules is on), in nat order, so a leaked duplicate shows up twice. A mapping missing
 * a rule is not listed, so that reconciliation counts it as missing and resyncs (which drops its
 * remaining half).
 */
export function installedMappings(saved: SavedRuleset, options: IptablesRuleOptions): RuleSpec[] {
  const rulesIn = (table: IptablesTable) => {
    const leaves = reachableLeaves(saved, table, options);
    return saved.rules.filter((r) => r.table === table && leaves.has(r.chain));
  };
  // How many ACCEPT rules are left to pair, by chain and arguments (a search of the list for each
  // DNAT rule is quadratic when the orders differ). Two mappings to the same internal client and
  // port have the same ACCEPT rule, once each.
  const accepts = new Map<string, number>();
  if (options.insertForwardRules) {
    for (const r of rulesIn('filter')) accepts.set(acceptKey(r.chain, r.args), (accepts.get(acceptKey(r.chain, r.args)) ?? 0) + 1);
  }
  const complete: RuleSpec[] = [];
  for (const dnat of rulesIn('nat')) {
    const found = dnatRuleMapping(dnat, options);
    if (!found) continue;
    if (options.insertForwardRules) {
      const accept = found.rules[1]!;
      const key = acceptKey(accept.chain, accept.args);
      const unpaired = accepts.get(key) ?? 0;
      if (unpaired === 0) continue;
      accepts.set(key, unpaired - 1);
    }
    complete.push(found.spec);
  }
  return complete;
}

/** upnpd's shard chains in `table` of `saved`, in the order listed. */
function savedShardChains(saved: SavedRuleset, table: IptablesTable, options: IptablesRuleOptions): string[] {
  const base = shardBase(table, options);
  return [...(saved.chains.get(table) ?? [])].filter((chain) => shardOfChain(base, chain));
}

/** The shard chains that exist in `saved`, each leaf with the number of mapping rules it holds (to plan changes after a failure). */
export function shardsOfSaved(saved: SavedRuleset, options: IptablesRuleOptions): Shards {
  const of = (table: IptablesTable): TableShards => {
    const base = shardBase(table, options);
    const leaves = new Map<string, number>();
    const blocks = new Set<string>();
    for (const chain of savedShardChains(saved, table, options)) {
      if (shardOfChain(base, chain)!.kind === 'block') blocks.add(chain);
      else leaves.set(chain, 0);
    }
    for (const r of saved.rules) {
      const count = r.table === table ? leaves.get(r.chain) : undefined;
      if (count !== undefined) leaves.set(r.chain, count + 1);
    }
    return { leaves, blocks };
  };
  return { nat: of('nat'), filter: usesTable('filter', options) ? of('filter') : NO_SHARDS };
}

/**
 * The shard chains that exist once `rules` are installed from scratch: the shards planChange
 * would leave, counted without building the edits (a dry-run renders each change against every
 * rule installed).
 */
export function shardsOfRules(rules: readonly RuleSpec[], options: IptablesRuleOptions): Shards {
  assertValidRules('iptables', rules);
  const of = (table: IptablesTable) =>
    shardChanges(
      NO_SHARDS,
      [],
      rules.map((spec) => placementIn(table, spec, options)),
    ).after;
  return { nat: of('nat'), filter: usesTable('filter', options) ? of('filter') : NO_SHARDS };
}

// ---------------------------------------------------------------------------------------------
// Start, stop and resync
// ---------------------------------------------------------------------------------------------

/** Deletes upnpd's tagged rules outside its own chains (a previous run's, the jumps, dispatch rules in a built-in chain). */
function strayRuleDeletions(saved: SavedRuleset, table: IptablesTable, options: IptablesRuleOptions): Edit[] {
  const own = ownChain(table, options);
  const base = shardBase(table, options);
  return saved.rules
    .filter((r) => r.table === table && r.chain !== own && !shardOfChain(base, r.chain) && isTagged(r, options.comment))
    .map((r) => ({ table, operation: 'delete', chain: r.chain, args: r.args }));
}

/** The one jump from the top of the built-in chain to upnpd's own chain. */
function jumpTo(table: IptablesTable, own: string, options: IptablesRuleOptions): Edit {
  return { table, operation: 'insert', chain: BUILT_IN_CHAIN[table], args: ['-m', 'comment', '--comment', jumpComment(options.comment), '-j', own] };
}

function chainExists(saved: SavedRuleset, table: IptablesTable, chain: string): boolean {
  return saved.chains.get(table)?.has(chain) ?? false;
}

/**
 * One table's part of a script that starts clean from whatever `saved` holds: upnpd's rules
 * outside its chains removed (previous runs, old jumps), its own and shard chains flushed; with
 * `rules` (and the table in use) its own chain jumped to once from the top of the built-in chain and
 * the shards of `rules` dispatched to and filled, the other shard chains deleted; without, every
 * chain of upnpd's deleted.
 */
function rebuildEdits(saved: SavedRuleset, table: IptablesTable, rules: readonly RuleSpec[] | undefined, options: IptablesRuleOptions): Edit[] {
  const edits = strayRuleDeletions(saved, table, options);
  const own = ownChain(table, options);
  const keep = rules !== undefined && usesTable(table, options);
  const existing = savedShardChains(saved, table, options);
  const ownChains = own && (keep || chainExists(saved, table, own)) ? [own] : [];
  // Declaring an existing chain under --noflush flushes it; a new one is created.
  const declare = (chain: string): Edit => ({ table, operation: 'declareChain', chain, args: [] });
  const remove = (chain: string): Edit => ({ table, operation: 'deleteChain', chain, args: [] });
  if (!keep) return [...edits, ...[...ownChains, ...existing].map(declare), ...[...ownChains, ...existing].map(remove)];

  const { shards } = buildRestoreScript({ remove: [], add: rules }, options);
  const needed = [...shards[table].blocks, ...shards[table].leaves.keys()];
  edits.push(...[...ownChains, ...existing, ...needed.filter((c) => !existing.includes(c))].map(declare));
  edits.push(...existing.filter((c) => !needed.includes(c)).map(remove));
  if (own) edits.push(jumpTo(table, own, options));
  const base = shardBase(table, options);
  for (const chain of needed) {
    const { kind, placement } = shardOfChain(base, chain)!;
    edits.push({ ...dispatchTo(table, kind === 'block' ? placement.block : placement.leaf, options), operation: 'append' });
  }
  return [...edits, ...mappingAdditions(rules, table, options)];
}

/**
 * The script that starts clean from whatever `saved` holds: removes upnpd's rules left anywhere
 * (previous runs, old jumps, the single-chain layout of earlier versions), creates or flushes
 * upnpd's own chains, deletes its shard chains, and jumps to each own chain exactly once from the
 * top of its built-in chain. An own chain no longer needed (insertForwardRules turned off) is
 * deleted.
 */
export function buildInitScript(saved: SavedRuleset, options: IptablesRuleOptions): string {
  return restoreScript(TABLES.flatMap((table) => rebuildEdits(saved, table, [], options)));
}

/** The script that removes every rule, jump and chain of upnpd's and nothing else; '' when none is left. */
export function buildShutdownScript(saved: SavedRuleset, options: IptablesRuleOptions): string {
  return restoreScript(TABLES.flatMap((table) => rebuildEdits(saved, table, undefined, options)));
}

/**
 * One `iptables-restore --noflush` script that starts clean from whatever `saved` holds (as
 * buildInitScript) and installs every mapping of `rules` in its shard chains. Each table's section
 * commits on its own.
 */
export function buildResyncScript(saved: SavedRuleset, rules: readonly RuleSpec[], options: IptablesRuleOptions): string {
  return restoreScript(TABLES.flatMap((table) => rebuildEdits(saved, table, rules, options)));
}

function hasJump(saved: SavedRuleset, table: IptablesTable, target: string, options: IptablesRuleOptions): boolean {
  return saved.rules.some(
    (r) => r.table === table && r.chain === BUILT_IN_CHAIN[table] && r.comment === jumpComment(options.comment) && targetOf(r) === target,
  );
}

// ---------------------------------------------------------------------------------------------
// Integrity (reconciliation)
// ---------------------------------------------------------------------------------------------

/**
 * What is missing of upnpd's rules in `saved` for the mappings `expected`: its own chains, the
 * jumps to them from the built-in chains, and mappings whose rules are not both installed in
 * shard chains a packet reaches; and what is there too many: rules of mappings `expected` does
 * not hold, or a mapping's rules twice.
 */
export function integrityProblems(saved: SavedRuleset, options: IptablesRuleOptions, expected: readonly RuleSpec[]): string[] {
  const problems: string[] = [];
  for (const table of TABLES) {
    const own = ownChain(table, options);
    if (!own || !usesTable(table, options)) continue;
    if (!chainExists(saved, table, own)) problems.push(`chain ${own} (${table})`);
    if (!hasJump(saved, table, own, options)) problems.push(`the jump from ${BUILT_IN_CHAIN[table]} to ${own} (${table})`);
  }
  const identity = (r: RuleSpec) => `${r.protocol}/${r.externalPort} ${r.internalClient}:${r.internalPort} ${r.remoteHost}`;
  const installedList = installedMappings(saved, options).map(identity);
  const installed = new Set(installedList);
  const missing = expected.filter((r) => !installed.has(identity(r))).length;
  if (missing > 0) problems.push(`the rules of ${missing} of ${expected.length} mapping(s)`);
  // Rules the table does not hold (a reload of a save taken while an old mapping was held), or a mapping's rules twice: they forward too.
  const wanted = new Set(expected.map(identity));
  const surplus = installedList.length - [...installed].filter((id) => wanted.has(id)).length;
  if (surplus > 0) problems.push(`${surplus} rule pair(s) installed that the table does not hold`);
  return problems;
}
