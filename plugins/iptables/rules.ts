import { z } from 'zod';
import type { ChangeSet, Protocol, RuleSpec } from 'upnpd';
import { assertValidRules, interfaceName } from 'upnpd/backend';

// Rules as data: pure functions from (change set, options) to an iptables-restore script or to the
// equivalent iptables commands, and from iptables-save output back to the mappings it holds.

export type IptablesTable = 'nat' | 'filter';
/** Tables in the order a script touches them: a DNAT without its ACCEPT only drops packets. */
const TABLES: readonly IptablesTable[] = ['nat', 'filter'];
/** The built-in chain each table's rules (or the jump to upnpd's own chain) live in. */
const BUILT_IN_CHAIN: Record<IptablesTable, string> = { nat: 'PREROUTING', filter: 'FORWARD' };
const ALL_BUILT_IN_CHAINS = ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'];

/** An iptables chain name option: `builtIn` itself, or a chain of upnpd's own. */
const chainName = z.string().regex(/^[A-Za-z0-9_][\w.-]{0,27}$/, 'must be an iptables chain name (letters, digits, "_", "." or "-"; at most 28 characters)');

function chainOption(builtIn: string, defaultName: string) {
  return chainName
    .refine((name) => name === builtIn || !ALL_BUILT_IN_CHAINS.includes(name), `must be ${builtIn} or a chain of upnpd's own`)
    .default(defaultName);
}

export const iptablesOptionsSchema = z
  .object({
    /** Also add an ACCEPT rule per mapping in the filter table (needed when FORWARD's policy is DROP). */
    insertForwardRules: z.boolean().default(true),
    /**
     * filter-table chain of the ACCEPT rules. 'FORWARD' puts them straight there (as the old upnpd
     * did); any other name is a chain of upnpd's own: created (and flushed) at start, jumped to once
     * from FORWARD, deleted at shutdown.
     */
    forwardChain: chainOption('FORWARD', 'UPNPD-FORWARD'),
    /** nat-table chain of the DNAT rules: 'PREROUTING', or a chain of upnpd's own (as forwardChain). */
    preroutingChain: chainOption('PREROUTING', 'UPNPD-PREROUTING'),
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
    /** Every rule upnpd adds carries a comment starting with this tag; it is how upnpd finds its rules. */
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

type Operation = 'append' | 'insert' | 'delete' | 'declareChain' | 'deleteChain';

interface Edit {
  readonly table: IptablesTable;
  readonly operation: Operation;
  readonly chain: string;
  /** The rule specification, one argument per element (unquoted). */
  readonly args: readonly string[];
}

const FLAG: Record<Operation, string> = { append: '-A', insert: '-I', delete: '-D', declareChain: '-N', deleteChain: '-X' };

/** The chain upnpd owns in `table`, or undefined when its rules go straight into the built-in chain. */
function ownChain(table: IptablesTable, options: IptablesRuleOptions): string | undefined {
  const name = table === 'nat' ? options.preroutingChain : options.forwardChain;
  return name === BUILT_IN_CHAIN[table] ? undefined : name;
}

function ruleChain(table: IptablesTable, options: IptablesRuleOptions): string {
  return ownChain(table, options) ?? BUILT_IN_CHAIN[table];
}

/** Whether upnpd has rules in `table` at all. */
function usesTable(table: IptablesTable, options: IptablesRuleOptions): boolean {
  return table === 'nat' || options.insertForwardRules;
}

// The comment encodes the whole RuleSpec, so that list() reads a mapping back from it.
const MAPPING_COMMENT = /^map (tcp|udp)\/(\d{1,5}) to (\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})(?: from (\d{1,3}(?:\.\d{1,3}){3}))?$/;

function mappingComment(spec: RuleSpec, tag: string): string {
  const from = spec.remoteHost ? ` from ${spec.remoteHost}` : '';
  return `${tag} map ${spec.protocol.toLowerCase()}/${spec.externalPort} to ${spec.internalClient}:${spec.internalPort}${from}`;
}

function jumpComment(tag: string): string {
  return `${tag} jump`;
}

/**
 * The rules of one mapping, arguments in the order iptables-save prints them: the DNAT in nat and,
 * with insertForwardRules, the ACCEPT in filter.
 */
function mappingRules(spec: RuleSpec, options: IptablesRuleOptions): Omit<Edit, 'operation'>[] {
  assertValidRules('iptables', [spec]);
  const protocol = spec.protocol.toLowerCase();
  const source = spec.remoteHost ? ['-s', `${spec.remoteHost}/32`] : [];
  const comment = ['-m', 'comment', '--comment', mappingComment(spec, options.comment)];
  const dnat = {
    table: 'nat' as const,
    chain: ruleChain('nat', options),
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
      ...comment,
      '-j',
      'DNAT',
      '--to-destination',
      `${spec.internalClient}:${spec.internalPort}`,
    ],
  };
  if (!options.insertForwardRules) return [dnat];
  const accept = {
    table: 'filter' as const,
    chain: ruleChain('filter', options),
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
      ...comment,
      '-j',
      'ACCEPT',
    ],
  };
  return [dnat, accept];
}

/**
 * Removals first, then additions. A mapping restricted to a remote host is inserted at the top and
 * a wildcard one appended, so that for the same port the specific DNAT matches before the wildcard.
 */
function changeEdits(changes: ChangeSet, options: IptablesRuleOptions): Edit[] {
  const removals = changes.remove.flatMap((spec) => mappingRules(spec, options).map((r) => ({ ...r, operation: 'delete' as const })));
  const additions = changes.add.flatMap((spec) =>
    mappingRules(spec, options).map((r) => ({ ...r, operation: spec.remoteHost ? ('insert' as const) : ('append' as const) })),
  );
  return [...removals, ...additions];
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

/** The input for `iptables-restore --noflush` that applies `changes` (removals before additions). */
export function buildRestoreScript(changes: ChangeSet, options: IptablesRuleOptions): string {
  return restoreScript(changeEdits(changes, options));
}

/** The iptables commands equivalent to buildRestoreScript's script, one shell command line each (for dry runs and logs). */
export function renderCommands(changes: ChangeSet, options: IptablesRuleOptions): string[] {
  const program = programsOf(options.flavour).iptables;
  const edits = changeEdits(changes, options);
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

/** The mapping a rule comment describes, if it is one of ours. */
export function mappingOfComment(comment: string, tag: string): RuleSpec | undefined {
  if (!comment.startsWith(`${tag} `)) return undefined;
  const m = MAPPING_COMMENT.exec(comment.slice(tag.length + 1));
  if (!m) return undefined;
  return {
    protocol: m[1]!.toUpperCase() as Protocol,
    externalPort: Number(m[2]),
    internalClient: m[3]!,
    internalPort: Number(m[4]),
    remoteHost: m[5] ?? '',
  };
}

/**
 * The mappings fully installed in `saved`: one entry per DNAT rule in upnpd's nat chain that has
 * its ACCEPT rule too (when insertForwardRules is on), paired by their comment, in nat order, so a
 * leaked duplicate shows up twice. A mapping missing a rule is not listed, so that reconciliation
 * counts it as missing and resyncs (which drops its remaining half).
 */
export function installedMappings(saved: SavedRuleset, options: IptablesRuleOptions): RuleSpec[] {
  const mappingRulesIn = (table: IptablesTable) =>
    saved.rules.filter((r) => r.table === table && r.chain === ruleChain(table, options) && r.comment && mappingOfComment(r.comment, options.comment));
  // How many ACCEPT rules are left to pair, by comment (a search of the list for each DNAT rule is quadratic when the orders differ).
  const accepts = new Map<string, number>();
  if (options.insertForwardRules) for (const r of mappingRulesIn('filter')) accepts.set(r.comment!, (accepts.get(r.comment!) ?? 0) + 1);
  const complete: RuleSpec[] = [];
  for (const dnat of mappingRulesIn('nat')) {
    const unpaired = accepts.get(dnat.comment!) ?? 0;
    if (options.insertForwardRules && unpaired === 0) continue;
    if (unpaired > 0) accepts.set(dnat.comment!, unpaired - 1);
    complete.push(mappingOfComment(dnat.comment!, options.comment)!);
  }
  return complete;
}

// ---------------------------------------------------------------------------------------------
// Start and stop
// ---------------------------------------------------------------------------------------------

/** Deletes upnpd's tagged rules outside its own chains (a previous run's, or the jumps). */
function strayRuleDeletions(saved: SavedRuleset, table: IptablesTable, options: IptablesRuleOptions): Edit[] {
  const own = ownChain(table, options);
  return saved.rules
    .filter((r) => r.table === table && r.chain !== own && isTagged(r, options.comment))
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
 * The script that starts clean from whatever `saved` holds: removes upnpd's rules left anywhere
 * (previous runs, old jumps), creates or flushes upnpd's own chains, and jumps to each exactly once
 * from the top of its built-in chain. An own chain no longer needed (insertForwardRules turned off)
 * is deleted.
 */
export function buildInitScript(saved: SavedRuleset, options: IptablesRuleOptions): string {
  return restoreScript(
    TABLES.flatMap((table): Edit[] => {
      const edits = strayRuleDeletions(saved, table, options);
      const own = ownChain(table, options);
      if (!own) return edits;
      const needed = usesTable(table, options);
      const exists = chainExists(saved, table, own);
      if (!needed && !exists) return edits;
      edits.push({ table, operation: 'declareChain', chain: own, args: [] });
      if (needed) {
        edits.push(jumpTo(table, own, options));
      } else {
        edits.push({ table, operation: 'deleteChain', chain: own, args: [] });
      }
      return edits;
    }),
  );
}

/** The script that removes every rule, jump and chain of upnpd's and nothing else; '' when none is left. */
export function buildShutdownScript(saved: SavedRuleset, options: IptablesRuleOptions): string {
  return restoreScript(
    TABLES.flatMap((table): Edit[] => {
      const edits = strayRuleDeletions(saved, table, options);
      const own = ownChain(table, options);
      if (own && chainExists(saved, table, own)) {
        // Declaring an existing chain under --noflush flushes it; then it can be deleted.
        edits.push({ table, operation: 'declareChain', chain: own, args: [] }, { table, operation: 'deleteChain', chain: own, args: [] });
      }
      return edits;
    }),
  );
}

function hasJump(saved: SavedRuleset, table: IptablesTable, target: string, options: IptablesRuleOptions): boolean {
  return saved.rules.some(
    (r) => r.table === table && r.chain === BUILT_IN_CHAIN[table] && r.comment === jumpComment(options.comment) && r.args[r.args.indexOf('-j') + 1] === target,
  );
}

// ---------------------------------------------------------------------------------------------
// Integrity (reconciliation)
// ---------------------------------------------------------------------------------------------

/**
 * What is missing of upnpd's rules in `saved` for the mappings `expected`: its own chains, the
 * jumps to them from the built-in chains, and mappings whose rules are not both installed.
 */
export function integrityProblems(saved: SavedRuleset, options: IptablesRuleOptions, expected: readonly RuleSpec[]): string[] {
  const problems: string[] = [];
  for (const table of TABLES) {
    const own = ownChain(table, options);
    if (!own || !usesTable(table, options)) continue;
    if (!chainExists(saved, table, own)) problems.push(`chain ${own} (${table})`);
    if (!hasJump(saved, table, own, options)) problems.push(`the jump from ${BUILT_IN_CHAIN[table]} to ${own} (${table})`);
  }
  const identity = (r: RuleSpec) => mappingComment(r, options.comment);
  const installed = new Set(installedMappings(saved, options).map(identity));
  const missing = expected.filter((r) => !installed.has(identity(r))).length;
  if (missing > 0) problems.push(`the rules of ${missing} of ${expected.length} mapping(s)`);
  return problems;
}

/**
 * One `iptables-restore --noflush` script that starts clean from whatever `saved` holds (as
 * buildInitScript: upnpd's rules anywhere removed, its chains created or flushed, one jump each)
 * and installs every mapping of `rules`. Each table's section commits on its own.
 */
export function buildResyncScript(saved: SavedRuleset, rules: readonly RuleSpec[], options: IptablesRuleOptions): string {
  const init = TABLES.flatMap((table): Edit[] => {
    const edits = strayRuleDeletions(saved, table, options);
    const own = ownChain(table, options);
    if (own && usesTable(table, options)) edits.push({ table, operation: 'declareChain', chain: own, args: [] }, jumpTo(table, own, options));
    return edits;
  });
  return restoreScript([...init, ...changeEdits({ remove: [], add: rules }, options)]);
}
