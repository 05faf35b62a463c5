import { BackendError, type BackendCapabilities, type ChangeSet, type FirewallBackend, type Logger, type RuleSpec } from 'upnpd';
import { keyString, ruleOf } from 'upnpd/backend';

/**
 * A backend that touches no firewall: it keeps the rules it would have installed in memory and
 * logs, for every change set, exactly what the imitated backend would apply (its `render`), without
 * ever calling that backend's probe, init or apply. Runs without root. With nothing to imitate it
 * describes each rule change in plain words.
 */
export class DryRunBackend implements FirewallBackend {
  private readonly installed = new Map<string, RuleSpec>();

  constructor(
    private readonly imitated: { readonly name: string; readonly backend: FirewallBackend } | undefined,
    private readonly logger: Logger,
  ) {}

  private get imitatedName(): string {
    return this.imitated?.name ?? 'no particular';
  }

  // No method waits for anything: nothing outside this process is asked.
  probe(): Promise<BackendCapabilities> {
    return Promise.resolve({ dialect: this.imitated?.name ?? 'dry-run', remoteHost: true, details: { mode: 'dry-run: no firewall is changed' } });
  }

  init(): Promise<void> {
    this.installed.clear();
    this.logger.info({ imitates: this.imitated?.name }, `dry-run: no firewall will be changed; showing what the ${this.imitatedName} backend would apply`);
    return Promise.resolve();
  }

  apply(changes: ChangeSet): Promise<void> {
    const missing = changes.remove.filter((r) => !this.installed.has(keyString(r)));
    if (missing.length > 0) {
      return Promise.reject(new BackendError(`dry-run: cannot remove rules that are not installed: ${missing.map(keyString).join(', ')}`));
    }
    const script = this.render(changes, [...this.installed.values()]);
    for (const r of changes.remove) this.installed.delete(keyString(r));
    for (const r of changes.add) this.installed.set(keyString(r), ruleOf(r));
    this.logger.info(
      { imitates: this.imitated?.name, script, removed: changes.remove.length, added: changes.add.length },
      `dry-run: the ${this.imitatedName} backend would apply:\n${script}`,
    );
    return Promise.resolve();
  }

  render(changes: ChangeSet, installed: readonly RuleSpec[]): string {
    if (this.imitated) return this.imitated.backend.render(changes, installed);
    return [...changes.remove.map((r) => `remove ${describeRule(r)}`), ...changes.add.map((r) => `add ${describeRule(r)}`)].join('\n');
  }

  list(): Promise<RuleSpec[]> {
    return Promise.resolve([...this.installed.values()].map(ruleOf));
  }

  shutdown(): Promise<void> {
    if (this.installed.size > 0) this.logger.info(`dry-run: would remove ${this.installed.size} rule(s) and whatever the ${this.imitatedName} backend created`);
    this.installed.clear();
    return Promise.resolve();
  }
}

function describeRule(rule: RuleSpec): string {
  const from = rule.remoteHost ? ` from ${rule.remoteHost}` : '';
  return `${rule.protocol} ${rule.externalPort}${from} -> ${rule.internalClient}:${rule.internalPort}`;
}
