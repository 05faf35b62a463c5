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
  type PinholeChanges,
  type PinholeRule,
  type ResolvedConfig,
  type RuleSpec,
} from 'upnpd';
import { isEmptyChangeSet, listingDigest, pinholeRuleString, sameRecords, sameRule, type CommandResult, type CommandRunner } from 'upnpd/backend';
import {
  buildPinholeResyncScript,
  buildPinholeScript,
  buildPinholeShutdownScript,
  parsePinholeSave,
  pinholeProblems,
  type PinholeRuleOptions,
  type SavedPinholeRules,
} from './pinholes.js';
import { forwardPolicyFinding, mixedFlavourFinding } from './diagnose.js';
import { RestoreSession, RestoreSessionError } from './restore-session.js';
import {
  buildInitScript,
  buildRestoreScript,
  buildResyncScript,
  buildShutdownScript,
  EMPTY_SHARDS,
  integrityProblems,
  installedMappings,
  inverseOf,
  ip6ProgramsOf,
  parseSave,
  stableSaveText,
  programsOf,
  renderCommands,
  shardsOfRules,
  shardsOfSaved,
  tableAtLine,
  type IptablesOptions,
  type IptablesPrograms,
  type IptablesRuleOptions,
  type SavedRuleset,
  type Shards,
} from './rules.js';

/** Seconds iptables-restore waits for the xtables lock held by another program (firewalld, docker, ...). */
const XTABLES_WAIT_SECONDS = '10';
const COMMAND_TIMEOUT_MS = 30_000;
/** The session's sync chain in nat is named after upnpd's nat chain (23 characters at most) with this. */
const SYNC_CHAIN_SUFFIX = '.sync';

/**
 * The iptables backend: per mapping a DNAT rule in nat and (optionally) an ACCEPT rule in filter,
 * in upnpd's leaf chains, dispatched to from its own chains (or the built-in ones); each change set
 * applied by one `iptables-restore --noflush` run. Its jumps and dispatch rules carry a comment
 * tag, which is how they are found in the built-in chains; mappings are read back from the rules
 * in the leaf chains. Nobody else's rules are touched.
 */
export class IptablesBackend implements FirewallBackend {
  private readonly programs: IptablesPrograms;
  private readonly programs6: IptablesPrograms;
  private readonly wanInterface: string | undefined;
  /**
   * The shard chains in effect, as upnpd left them; undefined when unknown (before init, after a
   * failed change): the next change reads them from iptables-save first.
   */
  private shards: Shards | undefined;
  /** IPv6 pinholes (option `pinholes`): ACCEPT rules in upnpd's chain of ip6tables' filter table. */
  readonly pinholes: PinholeBackend | undefined;
  /**
   * One long-lived iptables-restore for the change sets, when it is iptables-nft (set by `probe`);
   * undefined under x_tables, or once the session could not be started: then each runs its own.
   */
  private session: RestoreSession | undefined;
  /**
   * The last check's listing (its digest, without what changes while the rules do not), what it expected and
   * its answer: check reuses the answer while both are the same. Parsing 5000 mappings' rules at
   * every check left megabytes of garbage each time (the CPU a check costs is mostly iptables-save's).
   */
  private lastCheck: { listing: readonly string[]; expected: readonly RuleSpec[]; missing: readonly string[] } | undefined;

  constructor(
    private readonly options: IptablesOptions,
    private readonly runner: CommandRunner,
    private readonly logger: Logger,
    config: Pick<ResolvedConfig, 'wan'> | undefined,
  ) {
    this.programs = programsOf(options.flavour);
    this.programs6 = ip6ProgramsOf(options.flavour);
    this.wanInterface = options.wanInterface ?? config?.wan;
    this.pinholes = options.pinholes
      ? {
          list: async () => (await this.readPinholes()).installed.map((p) => p.rule),
          packets: async (rule) => {
            const wanted = pinholeRuleString(rule);
            return (await this.readPinholes()).installed.find((p) => pinholeRuleString(p.rule) === wanted)?.packets ?? 0;
          },
        }
      : undefined;
  }

  private get pinholeOptions(): PinholeRuleOptions {
    return { chain: this.options.pinholeChain, wanInterface: this.ruleOptions.wanInterface, comment: this.options.comment };
  }

  private get ruleOptions(): IptablesRuleOptions {
    if (!this.wanInterface) {
      throw new BackendError('the iptables backend needs the WAN interface: set `wan` in the config (or --wan), or the `wanInterface` option of iptables()');
    }
    return { ...this.options, wanInterface: this.wanInterface };
  }

  async probe(): Promise<BackendCapabilities> {
    const ruleOptions = this.ruleOptions;
    const version = (await this.mustRun('asking its version', this.programs.iptables, ['-V'])).stdout.trim();
    const restoreVersion = (await this.mustRun('asking its version', this.programs.restore, ['-V'])).stdout;
    await this.mustRun('asking its version', this.programs.save, ['-V']);
    // Probed again (a restart of the backend), the previous session ends first.
    void this.session?.close();
    this.session = /\(nf_tables\)/.test(restoreVersion) ? this.startSession() : undefined;
    // A harmless listing proves the privileges and the kernel support for both tables.
    for (const [table, chain] of [
      ['nat', 'PREROUTING'],
      ['filter', 'FORWARD'],
    ] as const) {
      await this.mustRun(`listing the ${table} table`, this.programs.iptables, ['-w', XTABLES_WAIT_SECONDS, '-t', table, '-S', chain]);
    }
    if (this.pinholes) {
      for (const program of [this.programs6.restore, this.programs6.save]) await this.mustRun('asking its version (IPv6 pinholes)', program, ['-V']);
      await this.mustRun('listing the ip6 filter table (IPv6 pinholes)', this.programs6.iptables, [
        '-w',
        XTABLES_WAIT_SECONDS,
        '-t',
        'filter',
        '-S',
        'FORWARD',
      ]);
    }
    return {
      dialect: 'iptables',
      remoteHost: true,
      ...(this.pinholes && { pinholes: true }),
      details: {
        flavour: this.options.flavour,
        version,
        wanInterface: ruleOptions.wanInterface,
        chains: `${ruleOptions.preroutingChain} (nat), ${ruleOptions.insertForwardRules ? ruleOptions.forwardChain : 'none'} (filter)`,
        ...(this.pinholes && { pinholes: `${this.options.pinholeChain} (ip6 filter)` }),
      },
    };
  }

  async init(): Promise<void> {
    const options = this.ruleOptions;
    this.shards = undefined;
    await this.restore('creating upnpd chains', buildInitScript(await this.readRuleset(), options));
    this.shards = EMPTY_SHARDS;
    if (this.pinholes) await this.restore6('creating the pinhole chain', buildPinholeResyncScript(await this.readPinholes(), [], this.pinholeOptions));
    const forward = options.insertForwardRules ? `${options.forwardChain} (filter)` : 'no filter rules';
    this.logger.info({ flavour: options.flavour }, `iptables: mappings go to ${options.preroutingChain} (nat) and ${forward}`);
  }

  /**
   * IPv4 rules, then pinholes: two restore runs (iptables and ip6tables have no common
   * transaction); when the pinhole part fails, the IPv4 part is undone, so a change set is still
   * all or nothing.
   */
  async apply(changes: ChangeSet): Promise<void> {
    const ipv4 = { remove: changes.remove, add: changes.add };
    await this.applyIpv4(ipv4);
    if (!changes.pinholes || changes.pinholes.remove.length + changes.pinholes.add.length === 0) return;
    try {
      await this.applyPinholes(changes.pinholes);
    } catch (err) {
      await this.applyIpv4(inverseOf(ipv4)).catch((undo: unknown) =>
        this.logger.error({ err: undo }, `iptables: could not undo the IPv4 part: ${messageOf(undo)}`),
      );
      throw err;
    }
  }

  private async applyPinholes(changes: PinholeChanges): Promise<void> {
    if (!this.pinholes) throw new BackendError('iptables: IPv6 pinholes are off (iptables({ pinholes: true }) turns them on)');
    await this.restore6(`changing ${changes.remove.length + changes.add.length} pinhole(s)`, buildPinholeScript(changes, this.pinholeOptions));
  }

  private async applyIpv4(changes: ChangeSet): Promise<void> {
    if (isEmptyChangeSet(changes)) return;
    const options = this.ruleOptions;
    const shards = this.shards ?? shardsOfSaved(await this.readRuleset(), options);
    // Unknown until this change is known to be in effect (or not).
    this.shards = undefined;
    const planned = buildRestoreScript(changes, options, shards);
    const script = planned.script;
    this.logger.debug({ script }, 'iptables-restore');
    const result = await this.runRestore(script);
    if (result.exitCode === 0) {
      this.shards = planned.shards;
      return;
    }

    const problems = [restoreFailureMessage('applying the change set', script, result)];
    // iptables-restore commits table by table: when the filter section failed, the nat one is
    // already in effect and is undone here, so that nothing half-applied remains.
    const natCommitted =
      options.insertForwardRules &&
      (await this.natSectionCommitted(changes, script, result).catch((err: unknown) => {
        problems.push(`cannot tell whether the nat part is in effect: ${messageOf(err)}`);
        return false;
      }));
    if (natCommitted) {
      const undo = buildRestoreScript(inverseOf(changes), { ...options, insertForwardRules: false }, planned.shards).script;
      const undone = await this.runRestore(undo);
      if (undone.exitCode !== 0) problems.push(restoreFailureMessage('undoing the nat part of a failed change set', undo, undone));
    }
    // A failure is often someone else's doing (a firewall reload dropped our chains): the core's
    // reconciler checks next and resyncs everything in one run (check, resync).
    if (problems.length > 1) this.logger.error({ script }, problems.join('; '));
    throw new BackendError(problems.join('; '));
  }

  /** The commands apply would run, one iptables command line per rule change. */
  render(changes: ChangeSet, installed: readonly RuleSpec[] = []): string {
    const pinholes = changes.pinholes && this.pinholes ? buildPinholeScript(changes.pinholes, this.pinholeOptions) : '';
    const options = this.ruleOptions;
    return [
      ...renderCommands(changes, options, shardsOfRules(installed, options)),
      ...(pinholes ? [`${this.programs6.restore} --noflush <<EOF`, pinholes.trimEnd(), 'EOF'] : []),
    ].join('\n');
  }

  /** The forward path and a mix of iptables flavours (read only). */
  async diagnose(): Promise<readonly Finding[]> {
    const options = this.ruleOptions;
    const forward = await this.run(this.programs.iptables, ['-w', XTABLES_WAIT_SECONDS, '-t', 'filter', '-S', 'FORWARD']);
    const findings: Finding[] = [
      forward.exitCode === 0
        ? forwardPolicyFinding(forward.stdout, options)
        : { check: 'forward-path', severity: 'warning', message: `cannot list FORWARD: ${forward.stderr.trim()}` },
    ];
    const other = this.options.flavour === 'iptables-legacy' ? 'iptables-nft' : 'iptables-legacy';
    const otherSave = await this.run(`${other}-save`, []).then(
      (r) => (r.exitCode === 0 ? r.stdout : undefined),
      () => undefined,
    );
    findings.push(mixedFlavourFinding(this.options.flavour, other, otherSave, options.comment));
    return findings;
  }

  async list(): Promise<RuleSpec[]> {
    return installedMappings(await this.readRuleset(), this.ruleOptions);
  }

  /** Reads nat and filter once (iptables-save): upnpd's chains, the jumps to them, every mapping's rules. */
  async check(expected: readonly RuleSpec[], pinholes: readonly PinholeRule[] = []): Promise<IntegrityReport> {
    const outputs = await this.readSaveOutputs();
    // Per table, each output copied once (the garbage a check leaves is about the size of its listing).
    const listing = outputs.map((output) => listingDigest(stableSaveText(output)));
    const last = this.lastCheck;
    let missing: string[];
    if (last && listing.every((text, i) => text === last.listing[i]) && sameRecords(last.expected, expected)) {
      missing = [...last.missing];
    } else {
      missing = integrityProblems(parseSave(outputs.join('\n')), this.ruleOptions, expected);
      this.lastCheck = { listing, expected, missing: [...missing] };
    }
    if (this.pinholes) missing.push(...pinholeProblems(await this.readPinholes(), this.pinholeOptions, pinholes));
    return { missing };
  }

  /** Recreates chains and jumps and every mapping in one `iptables-restore --noflush` run (and the pinholes in one ip6tables-restore run). */
  async resync(rules: readonly RuleSpec[], pinholes: readonly PinholeRule[] = []): Promise<void> {
    const options = this.ruleOptions;
    this.shards = undefined;
    await this.restore(`recreating upnpd chains with ${rules.length} mapping(s)`, buildResyncScript(await this.readRuleset(), rules, options));
    this.shards = shardsOfRules(rules, options);
    if (this.pinholes) {
      await this.restore6(
        `recreating the pinhole chain with ${pinholes.length} pinhole(s)`,
        buildPinholeResyncScript(await this.readPinholes(), pinholes, this.pinholeOptions),
      );
    }
  }

  async shutdown(): Promise<void> {
    this.shards = undefined;
    try {
      const script = buildShutdownScript(await this.readRuleset(), this.ruleOptions);
      if (script) await this.restore('removing upnpd rules and chains', script);
    } finally {
      // Ends the iptables-restore session once the removal has gone through it.
      await this.session?.close();
    }
    if (this.pinholes) {
      const script6 = buildPinholeShutdownScript(await this.readPinholes(), this.pinholeOptions);
      if (script6) await this.restore6('removing the pinhole chain', script6);
    }
  }

  /** upnpd's pinhole rules with their packet counters (`ip6tables-save -c -t filter`). */
  private async readPinholes(): Promise<SavedPinholeRules> {
    const saved = await this.mustRun('reading the ip6 filter table', this.programs6.save, ['-c', '-t', 'filter']);
    return parsePinholeSave(saved.stdout, this.pinholeOptions);
  }

  private async restore6(what: string, script: string): Promise<void> {
    if (!script) return;
    const result = await this.run(this.programs6.restore, ['-w', XTABLES_WAIT_SECONDS, '--noflush'], script);
    if (result.exitCode !== 0) throw new BackendError(restoreFailureMessage(what, script, result).replace('iptables-restore', this.programs6.restore));
  }

  /** Whether the nat section of a failed restore is in effect: from the failing line, else from what is installed. */
  private async natSectionCommitted(changes: ChangeSet, script: string, result: CommandResult): Promise<boolean> {
    const failedLine = failedLineOf(result);
    if (failedLine !== undefined) return tableAtLine(script, failedLine) === 'filter';
    const natOnly = { ...this.ruleOptions, insertForwardRules: false };
    const installed = installedMappings(await this.readRuleset(), natOnly);
    const has = (spec: RuleSpec) => installed.some((r) => sameRule(r, spec));
    return changes.add.every(has) && changes.remove.every((spec) => !has(spec) || changes.add.some((a) => sameRule(a, spec)));
  }

  private async readRuleset(): Promise<SavedRuleset> {
    return parseSave((await this.readSaveOutputs()).join('\n'));
  }

  /** iptables-save's nat and filter tables, in that order. */
  private readSaveOutputs(): Promise<string[]> {
    return Promise.all(
      (['nat', 'filter'] as const).map(async (table) => (await this.mustRun(`reading the ${table} table`, this.programs.save, ['-t', table])).stdout),
    );
  }

  private async restore(what: string, script: string): Promise<void> {
    if (!script) return;
    const result = await this.runRestore(script);
    if (result.exitCode !== 0) throw new BackendError(restoreFailureMessage(what, script, result));
  }

  private async runRestore(script: string): Promise<CommandResult> {
    if (this.session) {
      try {
        return await this.session.run(script);
      } catch (err) {
        // From now on each change runs its own iptables-restore. When the script surely did not run
        // (the session could not start, or ended before reading it), it runs that way now;
        // otherwise (no answer in time) what it did is unknown, and the change fails (the
        // reconciler reads the ruleset next).
        this.logger.warn({ err }, `iptables: the iptables-restore session failed (${messageOf(err)}); one iptables-restore per change from now on`);
        this.session = undefined;
        if (!(err instanceof RestoreSessionError) || err.mayHaveRun) {
          this.shards = undefined;
          throw err;
        }
      }
    }
    return this.run(this.programs.restore, ['-w', XTABLES_WAIT_SECONDS, '--noflush'], script);
  }

  /** `stdbuf -oL`: iptables-restore's output line by line, which is how the session learns that a script is done. */
  private startSession(): RestoreSession {
    return new RestoreSession(
      () => this.runner.start('stdbuf', ['-oL', this.programs.restore, '-w', XTABLES_WAIT_SECONDS, '--noflush'], { stdout: true }),
      `${this.ruleOptions.preroutingChain}${SYNC_CHAIN_SUFFIX}`,
    );
  }

  private async mustRun(what: string, program: string, args: readonly string[]): Promise<CommandResult> {
    const result = await this.run(program, args);
    if (result.exitCode !== 0) {
      throw new BackendError(`${what} failed (${program} ${args.join(' ')}, exit ${result.exitCode}): ${result.stderr.trim() || result.stdout.trim()}`);
    }
    return result;
  }

  private async run(program: string, args: readonly string[], input?: string): Promise<CommandResult> {
    try {
      return await this.runner.run(program, args, { input, timeoutMs: COMMAND_TIMEOUT_MS });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new BackendError(`${program} not found: install the "iptables" package (it provides ${program}), or choose another backend`, { cause: err });
      }
      throw new BackendError(`cannot run ${program}: ${messageOf(err)}`, { cause: err });
    }
  }
}

/** Names what failed, iptables-restore's own words, and the script line it complains about. */
function restoreFailureMessage(what: string, script: string, result: CommandResult): string {
  const stderr = result.stderr.trim().split('\n').slice(0, 3).join('; ');
  const line = failedLineOf(result);
  const offending = line !== undefined ? script.split('\n')[line - 1] : undefined;
  return `iptables-restore failed ${what} (exit ${result.exitCode}): ${stderr || 'no error message'}${offending ? ` [line ${line}: ${offending}]` : ''}`;
}

/** The script line iptables-restore names ("line 7 failed", "Error occurred at line: 7"), if any. */
function failedLineOf(result: CommandResult): number | undefined {
  const line = /\bline:? (\d+)/.exec(result.stderr)?.[1];
  return line === undefined ? undefined : Number(line);
}
