import { inject, injectable } from 'tsyringe';
import { z } from 'zod';
import { BackendError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { keyString, ruleOf, type ChangeSet, type RuleSpec } from '../../core/mapping/types.js';
import { CONFIG, LOGGER, PLUGIN_OPTIONS } from '../../core/plugins/tokens.js';
import type { BackendCapabilities, FirewallBackend } from '../../core/plugins/types.js';
import type { ResolvedConfig } from '../../core/config/schema.js';
import { iptablesOptionsSchema, renderCommands } from '../iptables/rules.js';
import { buildChangeScript, nftablesOptionsSchema } from '../nftables/rules.js';

export const dryRunOptionsSchema = z
  .object({
    /** Whose rules to show: the commands the iptables backend would run, or the nft script. */
    dialect: z.enum(['iptables', 'nftables']).default('iptables'),
    /** Options of the backend being imitated (chain/table names, WAN interface, ...). */
    iptables: iptablesOptionsSchema.default(iptablesOptionsSchema.parse({})),
    nftables: nftablesOptionsSchema.default(nftablesOptionsSchema.parse({})),
  })
  .strict();

export type DryRunOptions = z.output<typeof dryRunOptionsSchema>;

/**
 * A backend that touches no firewall: it keeps the rules it would have installed in memory and
 * logs, for every change set, the exact commands (iptables dialect) or rule script (nftables
 * dialect) the real backend would apply. Runs without root.
 */
@injectable()
export class DryRunBackend implements FirewallBackend {
  private readonly installed = new Map<string, RuleSpec>();
  private readonly render: (changes: ChangeSet) => string;

  constructor(
    @inject(PLUGIN_OPTIONS) options: DryRunOptions,
    @inject(LOGGER) private readonly logger: Logger,
    @inject(CONFIG) config: ResolvedConfig,
  ) {
    const wanInterface = config.wan ?? 'wan0';
    this.render =
      options.dialect === 'iptables'
        ? (changes) => renderCommands(changes, { wanInterface, ...options.iptables }).join('\n')
        : (changes) => buildChangeScript(changes, { wanInterface, ...options.nftables }, this.installed.values());
    this.dialect = options.dialect;
  }

  private readonly dialect: DryRunOptions['dialect'];

  async probe(): Promise<BackendCapabilities> {
    return { dialect: this.dialect, remoteHost: true, details: { mode: 'dry-run: no firewall is changed' } };
  }

  async init(): Promise<void> {
    this.installed.clear();
    this.logger.info({ dialect: this.dialect }, `dry-run: no firewall will be changed; showing what the ${this.dialect} backend would apply`);
  }

  async apply(changes: ChangeSet): Promise<void> {
    const missing = changes.remove.filter((r) => !this.installed.has(keyString(r)));
    if (missing.length > 0) {
      throw new BackendError(`dry-run: cannot remove rules that are not installed: ${missing.map(keyString).join(', ')}`);
    }
    const script = this.render(changes);
    for (const r of changes.remove) this.installed.delete(keyString(r));
    for (const r of changes.add) this.installed.set(keyString(r), ruleOf(r));
    this.logger.info({ dialect: this.dialect, script, removed: changes.remove.length, added: changes.add.length }, `dry-run: ${this.dialect} would apply:\n${script}`);
  }

  async list(): Promise<RuleSpec[]> {
    return [...this.installed.values()].map((r) => ({ ...r }));
  }

  async shutdown(): Promise<void> {
    if (this.installed.size > 0) this.logger.info(`dry-run: would remove ${this.installed.size} rule(s) and upnpd's chains`);
    this.installed.clear();
  }
}
