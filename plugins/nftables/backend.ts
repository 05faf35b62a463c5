import {
  BackendError,
  messageOf,
  type BackendCapabilities,
  type ChangeSet,
  type Finding,
  type FirewallBackend,
  type IntegrityReport,
  type Logger,
  type PinholeBackend,
  type PinholeRule,
  type ResolvedConfig,
  type RuleSpec,
} from 'upnpd';
import { listingDigest, pinholeRuleString, ruleOf, sameRecords, type CommandRunner } from 'upnpd/backend';
import { parseInstalledPinholes } from './pinholes.js';
import type { ForwardJump, NftablesOptions } from './options.js';
import {
  InstalledMappings,
  NO_LEFTOVERS,
  buildChangeScript,
  buildInitScript,
  buildResyncScript,
  buildShutdownScript,
  forwardProblems,
  ownTableProblems,
  ownTable,
  parseAdminTable,
  parseInstalledRules,
  pinholePlace,
  type AdminTableState,
  type NftablesSettings,
} from './rules.js';
import { watchRuleset } from './monitor.js';
import { NFT_SESSION_ENV, NftSession } from './session.js';
import { forwardPathFindings } from './diagnose.js';

/** `dnat ip to <concatenation> map @m` (NAT with concatenated maps) arrived in nftables 0.9.4. */
const MIN_VERSION = [0, 9, 4] as const;
/** Thousands of elements in one transaction take well under a second; this only bounds a hang. */
const NFT_TIMEOUT_MS = 60_000;
/** Lines of nft's error output quoted in a BackendError (it echoes the offending script lines). */
const ERROR_LINES = 12;

/** A long-lived ruleset monitor (watchRuleset) and the one listener it reports to, if any. */
interface RulesetMonitor {
  readonly stop: () => void;
  listener: (() => void) | undefined;
}

/**
 * Port mappings in an nftables table of upnpd's own, as elements of maps and a set: the rule count
 * stays constant however many mappings exist, and every change set is one nft transaction, run
 * by a long-lived `nft -i` (NftSession). Set-up, listing and removal run `nft` once each.
 */
export class NftablesBackend implements FirewallBackend {
  /** The rules in effect, as last applied (the accept set's elements are shared per target). */
  private readonly installed = new InstalledMappings();
  private readonly wanInterface: string | undefined;
  /** Runs change sets; undefined where nft has no interactive mode, and each change set runs its own `nft -f -`. */
  private session: NftSession | undefined;
  /** The running ruleset monitor (see watch) and who hears of what it reports. */
  private monitor: RulesetMonitor | undefined;
  /** The last check's listings (as digests), what it was given and its answer (check reuses it while all of them are the same). */
  private lastCheck:
    | {
        key: string;
        own: string;
        admin: string | undefined;
        expected: readonly RuleSpec[];
        pinholes: readonly PinholeRule[];
        missing: readonly string[];
      }
    | undefined;

  constructor(
    private readonly options: NftablesOptions,
    private readonly runner: CommandRunner,
    private readonly logger: Logger,
    config: Pick<ResolvedConfig, 'wan'> | undefined,
  ) {
    this.wanInterface = options.wanInterface ?? config?.wan;
    this.session = new NftSession(() => runner.start('nft', ['-i'], { env: NFT_SESSION_ENV }));
    this.pinholes = pinholePlace(options) ? { list: () => this.listPinholes(), packets: (rule) => this.pinholePackets(rule) } : undefined;
  }

  /** IPv6 pinholes: only with forwardJump into an inet table (where the admin's IPv6 forward policy is decided). */
  readonly pinholes: PinholeBackend | undefined;

  async probe(): Promise<BackendCapabilities> {
    const version = await this.nftVersion();
    // A check-only run of upnpd's table definition proves permissions and kernel support (nat,
    // concatenated maps). The admin-table part is left out: init checks it with a clearer message.
    const check = await this.nft(['-c', '-f', '-'], buildInitScript({ ...this.settings(), forwardJump: undefined }));
    if (check.exitCode !== 0) {
      throw new BackendError(
        `nftables: nft cannot create table ${this.tableName()} (needs root or CAP_NET_ADMIN and the nf_tables, nft_nat, nft_ct kernel modules): ${errorText(check.stderr)}`,
      );
    }
    const jump = this.options.forwardJump;
    const forward = jump ? `accepted through a jump from ${describeJump(jump)}` : 'left to the admin (no forwardJump)';
    const transactions = (await this.sessionWorks()) ? 'one long-lived nft -i' : 'one nft -f - per change set (this nft has no interactive mode)';
    const pinholes = this.pinholes ? `sets in ${describeJump(jump!)}` : 'none (they need forwardJump into an inet table)';
    return {
      dialect: 'nftables',
      remoteHost: true,
      pinholes: this.pinholes !== undefined,
      details: { program: 'nft', version, table: this.tableName(), wanInterface: this.settings().wanInterface, forward, transactions, pinholes },
    };
  }

  async init(): Promise<void> {
    const admin = await this.adminTable('init');
    await this.runScript(buildInitScript(this.settings(), admin?.leftovers), `create table ${this.tableName()}`);
    this.installed.reset([]);
    this.logger.info({ table: this.tableName(), forwardJump: this.options.forwardJump }, `nftables: table ${this.tableName()} created`);
    this.startMonitor();
  }

  /**
   * Where xtables-monitor is missing, nft monitor watches, and its cache holds what exists when it
   * starts, elements included (NFT_MONITOR): started here, while upnpd's table is still empty,
   * rather than once the persisted mappings are back.
   */
  private startMonitor(): RulesetMonitor {
    if (!this.monitor) {
      const hearing: Pick<RulesetMonitor, 'listener'> = { listener: undefined };
      this.monitor = Object.assign(hearing, { stop: watchRuleset(this.runner, this.logger, () => hearing.listener?.()) });
    }
    return this.monitor;
  }

  /** The nft transaction apply would run, given the rules in effect before it. */
  render(changes: ChangeSet, installed: readonly RuleSpec[]): string {
    return buildChangeScript(changes, this.options, installed);
  }

  async apply(changes: ChangeSet): Promise<void> {
    const script = buildChangeScript(changes, this.options, this.installed);
    if (script === '') return;
    const pinholes = changes.pinholes ? ` (pinholes: ${changes.pinholes.remove.length} closed, ${changes.pinholes.add.length} opened)` : '';
    const what = `apply ${changes.remove.length} removal(s) and ${changes.add.length} addition(s)${pinholes}`;
    if (this.session) {
      this.logger.debug({ script }, `nftables: ${what}`);
      let result;
      try {
        result = await this.session.run(script);
      } catch (err) {
        // nft timed out or died: whether the transaction committed is unknown, so what is
        // installed is read back (the accept set's use counts depend on it).
        await this.rereadInstalled();
        throw err;
      }
      if (!result.ok) throw new BackendError(`nftables: could not ${what}: ${errorText(result.output)}`);
    } else {
      await this.runScript(script, what);
    }
    this.installed.record(changes);
  }

  /**
   * Whether a forward chain of the admin's drops what upnpd maps (read only). Chains and rules
   * are all it needs: `-t` leaves out the sets' elements, and nft then fetches none (beside an
   * admin's 50,000-address blocklist: 268 bytes of JSON in 0.00 s and 4 MB, against 750 KB in
   * 0.45 s and 36 MB without).
   */
  async diagnose(): Promise<readonly Finding[]> {
    const result = await this.nft(['-t', '-j', 'list', 'ruleset']);
    if (result.exitCode !== 0) return [{ check: 'forward-path', severity: 'warning', message: `nft -t -j list ruleset failed: ${errorText(result.stderr)}` }];
    return forwardPathFindings(result.stdout, this.options);
  }

  async list(): Promise<RuleSpec[]> {
    const { family, table } = ownTable(this.options);
    const result = await this.nft(['-j', 'list', 'table', family, table]);
    if (result.exitCode !== 0) throw new BackendError(`nftables: cannot list table ${this.tableName()}: ${errorText(result.stderr)}`);
    return parseInstalledRules(result.stdout, this.options);
  }

  /**
   * Reads upnpd's table and, with `forwardJump`, the admin's table (two `nft -j list table`):
   * tables, chains, maps, the DNAT rules, the jump, the accept rule and set, element counts.
   */
  async check(expected: readonly RuleSpec[], pinholes: readonly PinholeRule[] = []): Promise<IntegrityReport> {
    const { family, table } = ownTable(this.options);
    const jump = this.options.forwardJump;
    const [own, admin] = await Promise.all([
      this.nft(['-j', 'list', 'table', family, table]),
      jump ? this.nft(['-j', 'list', 'table', jump.family, jump.table]) : undefined,
    ]);
    // The same listings and the same rules and pinholes expected as at the last check: the same
    // answer, without parsing the listings again (with 5000 mappings the parse left about 10 MB of
    // garbage every 2 s, which kept the heap from settling). The answer depends on nothing else.
    const key = `${own.exitCode}:${admin?.exitCode}`;
    const ownDigest = listingDigest(own.stdout);
    const adminDigest = admin && listingDigest(admin.stdout);
    const last = this.lastCheck;
    if (
      last &&
      last.key === key &&
      last.own === ownDigest &&
      last.admin === adminDigest &&
      sameRecords(last.expected, expected) &&
      sameRecords(last.pinholes, pinholes)
    )
      return { missing: [...last.missing] };
    const missing = own.exitCode === 0 ? ownTableProblems(own.stdout, this.options, expected) : [`table ${this.tableName()}`];
    // The admin's table gone: nothing to jump from (it is checked again once it is back).
    if (jump && admin?.exitCode === 0) missing.push(...forwardProblems(admin.stdout, { ...this.options, forwardJump: jump }, expected, pinholes));
    this.lastCheck = { key, own: ownDigest, admin: adminDigest, expected, pinholes, missing: [...missing] };
    return { missing };
  }

  /** One nft transaction: the table recreated with every element, the admin's chain, set and jump replaced. */
  async resync(rules: readonly RuleSpec[], pinholes: readonly PinholeRule[] = []): Promise<void> {
    let settings = this.settings();
    let leftovers;
    const jump = this.options.forwardJump;
    if (jump) {
      const result = await this.nft(['-j', 'list', 'table', jump.family, jump.table]);
      const state = result.exitCode === 0 ? parseAdminTable(result.stdout, { table: this.options.table, forwardJump: jump }) : undefined;
      if (state?.jumpChainExists) {
        leftovers = state.leftovers;
      } else {
        this.logger.warn(`nftables: ${describeJump(jump)} does not exist (yet): mappings are restored without the forward accept, pinholes later`);
        settings = { ...settings, forwardJump: undefined };
      }
    }
    const restoredPinholes = settings.forwardJump ? pinholes : [];
    await this.runScript(
      buildResyncScript(settings, rules, leftovers, restoredPinholes),
      `recreate table ${this.tableName()} with ${rules.length} mapping(s) and ${restoredPinholes.length} pinhole(s)`,
    );
    this.installed.reset(rules.map(ruleOf));
  }

  /**
   * Reports deleted tables (`xtables-monitor --event`, else `nft monitor`), so that a flushed ruleset or a
   * reloaded admin table is repaired at once: through the monitor init started, which ends when
   * watching ends (the daemon stops; also when it keeps its rules at shutdown) or at shutdown.
   */
  watch(onChange: () => void): () => void {
    const monitor = this.startMonitor();
    monitor.listener = onChange;
    return () => {
      if (this.monitor !== monitor) return;
      monitor.stop();
      this.monitor = undefined;
    };
  }

  async shutdown(): Promise<void> {
    // Before upnpd's own table goes: its deletion is no loss to report.
    this.monitor?.stop();
    this.monitor = undefined;
    const admin = await this.adminTable('shutdown');
    await this.session?.close();
    await this.runScript(buildShutdownScript(this.options, admin?.leftovers ?? NO_LEFTOVERS), `remove table ${this.tableName()}`);
    this.installed.reset([]);
  }

  /** The pinholes in the admin's table, with their kernel counters (one `nft -j list table`). */
  private async installedPinholes() {
    const jump = this.options.forwardJump!;
    const result = await this.nft(['-j', 'list', 'table', jump.family, jump.table]);
    if (result.exitCode !== 0) throw new BackendError(`nftables: cannot list ${describeJump(jump)}: ${errorText(result.stderr)}`);
    const listing = JSON.parse(result.stdout) as { nftables?: Array<Record<string, unknown>> };
    return parseInstalledPinholes(listing.nftables ?? [], pinholePlace(this.options)!);
  }

  private async listPinholes(): Promise<PinholeRule[]> {
    return (await this.installedPinholes()).map((p) => p.rule);
  }

  private async pinholePackets(rule: PinholeRule): Promise<number> {
    const wanted = pinholeRuleString(rule);
    return (await this.installedPinholes()).find((p) => pinholeRuleString(p.rule) === wanted)?.packets ?? 0;
  }

  private async rereadInstalled(): Promise<void> {
    try {
      const rules = await this.list();
      this.installed.reset(rules);
    } catch (err) {
      this.logger.warn({ err }, `nftables: could not read back the installed mappings: ${messageOf(err)}`);
    }
  }

  /** The pid of the `nft -i` that runs change sets, while one runs. */
  get sessionPid(): number | undefined {
    return this.session?.pid;
  }

  /** Whether `nft -i` runs here (a build without its CLI refuses); without it, each change set runs `nft -f -`. */
  private async sessionWorks(): Promise<boolean> {
    if (!this.session) return false;
    let failure: string | undefined;
    try {
      const sync = await this.session.run('');
      if (!sync.ok) failure = errorText(sync.output);
    } catch (err) {
      failure = messageOf(err);
    }
    if (failure === undefined) return true;
    this.logger.warn({ reason: failure }, 'nftables: nft -i does not work here; each change set runs its own nft process');
    this.session = undefined;
    return false;
  }

  private settings(): NftablesSettings {
    if (!this.wanInterface) {
      throw new BackendError('nftables: no WAN interface: set `wan` in the config, or nftables({ wanInterface })');
    }
    return { ...this.options, wanInterface: this.wanInterface };
  }

  private tableName(): string {
    return `${this.options.family} ${this.options.table}`;
  }

  /**
   * With `forwardJump`, reads the admin's table: init needs the jump chain to exist; both
   * init and shutdown remove what an earlier run left there. At shutdown a missing table is fine.
   */
  private async adminTable(purpose: 'init' | 'shutdown'): Promise<AdminTableState | undefined> {
    const jump = this.options.forwardJump;
    if (!jump) return undefined;
    const result = await this.nft(['-j', 'list', 'table', jump.family, jump.table]);
    if (result.exitCode !== 0) {
      if (purpose === 'shutdown') return undefined;
      throw new BackendError(`nftables: forwardJump names ${describeJump(jump)}, but its table cannot be listed: ${errorText(result.stderr)}`);
    }
    const state = parseAdminTable(result.stdout, { table: this.options.table, forwardJump: jump });
    if (purpose === 'init' && !state.jumpChainExists) {
      throw new BackendError(`nftables: forwardJump names ${describeJump(jump)}, but that chain does not exist`);
    }
    return state;
  }

  private async nftVersion(): Promise<string> {
    let result;
    try {
      result = await this.nft(['--version']);
    } catch (err) {
      throw new BackendError(`nftables: cannot run nft (install the "nftables" package): ${messageOf(err)}`, { cause: err });
    }
    const version = /v(\d+)\.(\d+)(?:\.(\d+))?/.exec(result.stdout);
    if (result.exitCode !== 0 || !version) {
      throw new BackendError(`nftables: "nft --version" failed (install the "nftables" package): ${errorText(result.stderr || result.stdout)}`);
    }
    const found = [Number(version[1]), Number(version[2]), Number(version[3] ?? 0)] as const;
    if (versionRank(found) < versionRank(MIN_VERSION)) {
      throw new BackendError(`nftables: nft ${found.join('.')} is too old; upnpd needs ${MIN_VERSION.join('.')} or newer`);
    }
    return found.join('.');
  }

  private async runScript(script: string, what: string): Promise<void> {
    this.logger.debug({ script }, `nftables: ${what}`);
    const result = await this.nft(['-f', '-'], script);
    if (result.exitCode !== 0) throw new BackendError(`nftables: could not ${what}: ${errorText(result.stderr)}`);
  }

  private nft(args: readonly string[], input?: string) {
    return this.runner.run('nft', args, { input, timeoutMs: NFT_TIMEOUT_MS });
  }
}

function versionRank([major, minor, patch]: readonly [number, number, number]): number {
  return (major * 1000 + minor) * 1000 + patch;
}

function describeJump(jump: ForwardJump): string {
  return `chain ${jump.chain} of table ${jump.family} ${jump.table}`;
}

function errorText(stderr: string): string {
  const lines = stderr.trim().split('\n');
  return lines.slice(0, ERROR_LINES).join('\n') + (lines.length > ERROR_LINES ? `\n... (${lines.length - ERROR_LINES} more lines)` : '');
}
