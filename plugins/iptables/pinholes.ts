import type { PinholeChanges, PinholeRule } from 'upnpd';
import { BackendError } from 'upnpd';
import { canonicalIPv6, isValidPinholeRule, pinholeRuleString } from 'upnpd/backend';

/**
 * IPv6 pinholes for ip6tables, as data: one ACCEPT rule per pinhole in a chain of upnpd's own in
 * the ip6 filter table, jumped to once from the top of FORWARD; every change is one
 * `ip6tables-restore --noflush` run. The comment names the whole pinhole, which is how upnpd
 * lists, counts (`ip6tables-save -c`) and removes its rules.
 */

export interface PinholeRuleOptions {
  readonly chain: string;
  readonly wanInterface: string;
  /** The comment tag of every rule (the iptables backend's `comment`). */
  readonly comment: string;
}

const FORWARD = 'FORWARD';
const PINHOLE_COMMENT = /^pinhole (tcp|udp) from (any|[0-9a-f:]+) port (\d{1,5}) to ([0-9a-f:]+) port (\d{1,5})$/;

function pinholeComment(r: PinholeRule, tag: string): string {
  const from = r.remoteHost === '' ? 'any' : canonicalIPv6(r.remoteHost);
  return `${tag} pinhole ${r.protocol.toLowerCase()} from ${from} port ${r.remotePort} to ${canonicalIPv6(r.internalClient)} port ${r.internalPort}`;
}

function jumpComment(tag: string): string {
  return `${tag} pinholes jump`;
}

/** The arguments of a pinhole's rule after `-A <chain>`, in the order ip6tables-save prints them. */
function ruleArgs(r: PinholeRule, options: PinholeRuleOptions): string[] {
  if (!isValidPinholeRule(r)) throw new BackendError(`ip6tables: not a valid IPv6 pinhole: ${JSON.stringify(r)}`);
  const protocol = r.protocol.toLowerCase();
  return [
    ...(r.remoteHost === '' ? [] : ['-s', `${canonicalIPv6(r.remoteHost)}/128`]),
    '-d',
    `${canonicalIPv6(r.internalClient)}/128`,
    '-i',
    options.wanInterface,
    '-p',
    protocol,
    '-m',
    protocol,
    ...(r.remotePort === 0 ? [] : ['--sport', String(r.remotePort)]),
    '--dport',
    String(r.internalPort),
    '-m',
    'comment',
    '--comment',
    pinholeComment(r, options.comment),
    '-j',
    'ACCEPT',
  ];
}

function quote(arg: string): string {
  return /^[^\s"'\\]+$/.test(arg) ? arg : `"${arg.replace(/["\\]/g, '\\$&')}"`;
}

function line(flag: string, chain: string, args: readonly string[]): string {
  return [flag, chain, ...args].map(quote).join(' ');
}

function filterSection(lines: readonly string[]): string {
  return lines.length === 0 ? '' : ['*filter', ...lines, 'COMMIT', ''].join('\n');
}

/** The `ip6tables-restore --noflush` input for a change: deletions, then additions. */
export function buildPinholeScript(changes: PinholeChanges, options: PinholeRuleOptions): string {
  return filterSection([
    ...changes.remove.map((r) => line('-D', options.chain, ruleArgs(r, options))),
    ...changes.add.map((r) => line('-A', options.chain, ruleArgs(r, options))),
  ]);
}

// ---------------------------------------------------------------------------------------------
// ip6tables-save -c -t filter
// ---------------------------------------------------------------------------------------------

export interface SavedPinholeRules {
  readonly chainExists: boolean;
  /** Our tagged rules outside our chain (jumps, a previous run's leftovers), as `-A` arguments with their chain. */
  readonly stray: ReadonlyArray<{ readonly chain: string; readonly args: readonly string[] }>;
  readonly jumped: boolean;
  readonly installed: ReadonlyArray<{ readonly rule: PinholeRule; readonly packets: number }>;
}

/** Splits a saved rule line into arguments (double quotes group, backslash escapes inside them). */
function splitArgs(text: string): string[] {
  return [...text.matchAll(/"((?:[^"\\]|\\.)*)"|(\S+)/g)].map((m) => (m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]!));
}

export function parsePinholeSave(output: string, options: PinholeRuleOptions): SavedPinholeRules {
  let inFilter = false;
  let chainExists = false;
  let jumped = false;
  const stray: Array<{ chain: string; args: string[] }> = [];
  const installed: Array<{ rule: PinholeRule; packets: number }> = [];
  for (const text of output.split('\n')) {
    if (text.startsWith('*')) inFilter = text.trim() === '*filter';
    if (!inFilter) continue;
    if (text.startsWith(`:${options.chain} `)) chainExists = true;
    const m = /^(?:\[(\d+):\d+\] )?-A (\S+) (.*)$/.exec(text);
    if (!m) continue;
    const [, packets, chain, rest] = m;
    const args = splitArgs(rest!);
    const comment = args[args.indexOf('--comment') + 1];
    if (!comment?.startsWith(`${options.comment} `)) continue;
    if (chain !== options.chain) {
      if (chain === FORWARD && comment === jumpComment(options.comment) && args.at(-1) === options.chain && !jumped) jumped = true;
      else stray.push({ chain: chain!, args });
      continue;
    }
    const rule = pinholeOfComment(comment.slice(options.comment.length + 1));
    if (rule) installed.push({ rule, packets: Number(packets ?? 0) });
  }
  return { chainExists, jumped, stray, installed };
}

function pinholeOfComment(text: string): PinholeRule | undefined {
  const m = PINHOLE_COMMENT.exec(text);
  if (!m) return undefined;
  const rule: PinholeRule = {
    protocol: m[1] === 'tcp' ? 'TCP' : 'UDP',
    remoteHost: m[2] === 'any' ? '' : m[2]!,
    remotePort: Number(m[3]),
    internalClient: m[4]!,
    internalPort: Number(m[5]),
  };
  return isValidPinholeRule(rule) ? rule : undefined;
}

/**
 * Starts clean from what `saved` holds and installs `pinholes`: our stray rules (old jumps)
 * deleted, our chain declared (created, or flushed under --noflush), one jump at the top of
 * FORWARD. Init is this with no pinholes; resync with the table's.
 */
export function buildPinholeResyncScript(saved: SavedPinholeRules, pinholes: readonly PinholeRule[], options: PinholeRuleOptions): string {
  return filterSection([
    ...saved.stray.map((r) => line('-D', r.chain, r.args)),
    ...(saved.jumped ? [line('-D', FORWARD, ['-m', 'comment', '--comment', jumpComment(options.comment), '-j', options.chain])] : []),
    `:${options.chain} - [0:0]`,
    line('-I', FORWARD, ['-m', 'comment', '--comment', jumpComment(options.comment), '-j', options.chain]),
    ...pinholes.map((r) => line('-A', options.chain, ruleArgs(r, options))),
  ]);
}

/** Removes the jump, the chain and every rule in it; '' when none of it is there. */
export function buildPinholeShutdownScript(saved: SavedPinholeRules, options: PinholeRuleOptions): string {
  return filterSection([
    ...saved.stray.map((r) => line('-D', r.chain, r.args)),
    ...(saved.jumped ? [line('-D', FORWARD, ['-m', 'comment', '--comment', jumpComment(options.comment), '-j', options.chain])] : []),
    ...(saved.chainExists ? [`:${options.chain} - [0:0]`, `-X ${options.chain}`] : []),
  ]);
}

/** What is missing for `expected`: the chain, the jump, pinhole rules. */
export function pinholeProblems(saved: SavedPinholeRules, options: PinholeRuleOptions, expected: readonly PinholeRule[]): string[] {
  const problems: string[] = [];
  if (!saved.chainExists) problems.push(`chain ${options.chain} (ip6 filter)`);
  if (!saved.jumped) problems.push(`the jump from FORWARD to ${options.chain} (ip6 filter)`);
  const installed = new Set(saved.installed.map((p) => pinholeRuleString(p.rule)));
  const missing = expected.filter((r) => !installed.has(pinholeRuleString(r))).length;
  if (missing > 0) problems.push(`the rules of ${missing} of ${expected.length} pinhole(s)`);
  // A reload of an old save brings back pinholes closed since: they would let the WAN in for good.
  const wanted = new Set(expected.map(pinholeRuleString));
  const surplus = [...installed].filter((rule) => !wanted.has(rule)).length;
  if (surplus > 0) problems.push(`the rules of ${surplus} pinhole(s) that the table does not hold`);
  return problems;
}
