import {
  BackendError,
  messageOf,
  type BackendCapabilities,
  type ChangeSet,
  type Finding,
  type FirewallBackend,
  type IntegrityReport,
  type Logger,
  type ResolvedConfig,
  type RuleSpec,
} from 'upnpd';
import { isEmptyChangeSet, sameRule, type CommandResult, type CommandRunner } from 'upnpd/backend';
import { forwardPolicyFinding, mixedFlavourFinding } from './diagnose.js';
import {
  buildInitScript,
  buildRestoreScript,
  buildResyncScript,
  buildShutdownScript,
  integrityProblems,
  installedMappings,
  inverseOf,
  parseSave,
  programsOf,
  renderCommands,
  tableAtLine,
  type IptablesOptions,
  type IptablesPrograms,
  type IptablesRuleOptions,
  type SavedRuleset,
} from './rules.js';

/** Seconds iptables-restore waits for the xtables lock held by another program (firewalld, docker, ...). */
const XTABLES_WAIT_SECONDS = '10';
const COMMAND_TIMEOUT_MS = 30_000;

/**
 * The iptables backend: per mapping a DNAT rule in nat and (optionally) an ACCEPT rule in filter,
 * in upnpd's own chains (or the built-in ones), each change set applied by one
 * `iptables-restore --noflush` run. Rules carry a comment tag, which is how they are listed and
 * removed; nobody else's rules are touched.
 */
export class IptablesBackend implements FirewallBackend {
  private readonly programs: IptablesPrograms;
  private readonly wanInterface: string | undefined;

  constructor(
    private readonly options: IptablesOptions,
    private readonly runner: CommandRunner,
    private readonly logger: Logger,
    config: Pick<ResolvedConfig, 'wan'> | undefined,
  ) {
    this.programs = programsOf(options.flavour);
    this.wanInterface = options.wanInterface ?? config?.wan;
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
    for (const program of [this.programs.restore, this.programs.save]) await this.mustRun('asking its version', program, ['-V']);
    // A harmless listing proves the privileges and the kernel support for both tables.
    for (const [table, chain] of [
      ['nat', 'PREROUTING'],
      ['filter', 'FORWARD'],
    ] as const) {
      await this.mustRun(`listing the ${table} table`, this.programs.iptables, ['-w', XTABLES_WAIT_SECONDS, '-t', table, '-S', chain]);
    }
    return {
      dialect: 'iptables',
      remoteHost: true,
      details: {
        flavour: this.options.flavour,
        version,
        wanInterface: ruleOptions.wanInterface,
        chains: `${ruleOptions.preroutingChain} (nat), ${ruleOptions.insertForwardRules ? ruleOptions.forwardChain : 'none'} (filter)`,
      },
    };
  }

  async init(): Promise<void> {
    const options = this.ruleOptions;
    await this.restore('creating upnpd chains', buildInitScript(await this.readRuleset(), options));
    const forward = options.insertForwardRules ? `${options.forwardChain} (filter)` : 'no filter rules';
    this.logger.info({ flavour: options.flavour }, `iptables: mappings go to ${options.preroutingChain} (nat) and ${forward}`);
  }

  async apply(changes: ChangeSet): Promise<void> {
    if (isEmptyChangeSet(changes)) return;
    const options = this.ruleOptions;
    const script = buildRestoreScript(changes, options);
    this.logger.debug({ script }, 'iptables-restore');
    const result = await this.runRestore(script);
    if (result.exitCode === 0) return;

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
      const undo = buildRestoreScript(inverseOf(changes), { ...options, insertForwardRules: false });
      const undone = await this.runRestore(undo);
      if (undone.exitCode !== 0) problems.push(restoreFailureMessage('undoing the nat part of a failed change set', undo, undone));
    }
    // A failure is often someone else's doing (a firewall reload dropped our chains): the core's
    // reconciler checks next and resyncs everything in one run (check, resync).
    if (problems.length > 1) this.logger.error({ script }, problems.join('; '));
    throw new BackendError(problems.join('; '));
  }

  /** The commands apply would run, one iptables command line per rule change. */
  render(changes: ChangeSet): string {
    return renderCommands(changes, this.ruleOptions).join('\n');
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
  async check(expected: readonly RuleSpec[]): Promise<IntegrityReport> {
    return { missing: integrityProblems(await this.readRuleset(), this.ruleOptions, expected) };
  }

  /** Recreates chains and jumps and every mapping in one `iptables-restore --noflush` run. */
  async resync(rules: readonly RuleSpec[]): Promise<void> {
    await this.restore(`recreating upnpd chains with ${rules.length} mapping(s)`, buildResyncScript(await this.readRuleset(), rules, this.ruleOptions));
  }

  async shutdown(): Promise<void> {
    const script = buildShutdownScript(await this.readRuleset(), this.ruleOptions);
    if (script) await this.restore('removing upnpd rules and chains', script);
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
    const outputs = await Promise.all(
      (['nat', 'filter'] as const).map(async (table) => (await this.mustRun(`reading the ${table} table`, this.programs.save, ['-t', table])).stdout),
    );
    return parseSave(outputs.join('\n'));
  }

  private async restore(what: string, script: string): Promise<void> {
    if (!script) return;
    const result = await this.runRestore(script);
    if (result.exitCode !== 0) throw new BackendError(restoreFailureMessage(what, script, result));
  }

  private runRestore(script: string): Promise<CommandResult> {
    return this.run(this.programs.restore, ['-w', XTABLES_WAIT_SECONDS, '--noflush'], script);
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
