import { PluginHookError, PluginRegistrationError, messageOf } from '../errors.js';
import type { Logger } from '../logger.js';
import type { MappingFirewall, MappingHooks } from '../mapping/hooks.js';
import type { PinholeEvent, PinholePolicyContext, PinholeRequest } from '../mapping/pinhole.js';
import type { MappedEvent, MappingRequest, PolicyContext, PortMapping, RepairedEvent, UnmappedEvent } from '../mapping/types.js';
import { HOOK_KINDS, type FirewallBackend, type Hooks, type HooksOfKind, type Plugin } from './types.js';

const ORDER_RANK = { pre: 0, normal: 1, post: 2 } as const;

/**
 * Runs plugins' hooks by kind. Registration is validated when the driver is built (unknown hook,
 * non-function handler, duplicate name, zero or several firewalls) and frozen from then on.
 */
export class PluginDriver implements MappingHooks {
  readonly plugins: readonly Plugin[];
  /** The plugin that fills the firewall slot. */
  private readonly firewallPlugin: Plugin & { readonly firewall: FirewallBackend };
  private readonly provisioned: Plugin[] = [];
  private readonly pending = new Set<Promise<unknown>>();

  constructor(
    plugins: readonly Plugin[],
    private readonly logger: Logger,
  ) {
    validatePlugins(plugins);
    this.plugins = Object.freeze(
      plugins
        .map((plugin, index) => ({ plugin, index }))
        .sort((a, b) => rank(a.plugin) - rank(b.plugin) || a.index - b.index)
        .map(({ plugin }) => plugin),
    );
    this.firewallPlugin = this.plugins.find((p): p is Plugin & { firewall: FirewallBackend } => p.firewall !== undefined)!;
  }

  /** Told how long each firewall apply took, and whether it succeeded (for the metrics). */
  applyObserver: ((seconds: number, ok: boolean) => void) | undefined;

  /**
   * The firewall as the mapping lifecycle uses it; a failure names the plugin. The optional
   * methods are there when the backend has them (the reconciler falls back on list/init/apply).
   */
  get firewall(): MappingFirewall {
    const backend = this.firewallPlugin.firewall;
    return {
      apply: async (changes) => {
        const started = performance.now();
        let ok = false;
        try {
          await this.callFirewall('apply', () => backend.apply(changes));
          ok = true;
        } finally {
          this.applyObserver?.((performance.now() - started) / 1000, ok);
        }
      },
      list: () => this.callFirewall('list', () => backend.list()),
      init: () => this.callFirewall('init', () => backend.init()),
      ...(backend.check && { check: (expected, pinholes) => this.callFirewall('check', () => backend.check!(expected, pinholes)) }),
      ...(backend.resync && { resync: (rules, pinholes) => this.callFirewall('resync', () => backend.resync!(rules, pinholes)) }),
      ...(backend.pinholes && { pinholes: { packets: (rule) => this.callFirewall('pinholes.packets', () => backend.pinholes!.packets(rule)) } }),
      ...(backend.watch && { watch: (onChange) => backend.watch!(onChange) }),
    };
  }

  get backendName(): string {
    return this.firewallPlugin.name;
  }

  beforeMap(request: MappingRequest, context: PolicyContext): Promise<MappingRequest> {
    return this.hookSeq('beforeMap', request, context);
  }

  beforeUnmap(mapping: PortMapping, context: PolicyContext): Promise<void> {
    return this.hookSeq('beforeUnmap', mapping, context);
  }

  beforePinhole(request: PinholeRequest, context: PinholePolicyContext): Promise<PinholeRequest> {
    return this.hookSeq('beforePinhole', request, context);
  }

  onPinhole(event: PinholeEvent): void {
    void this.hookParallel('onPinhole', event);
  }

  onMapped(event: MappedEvent): void {
    void this.hookParallel('onMapped', event);
  }

  onUnmapped(event: UnmappedEvent): void {
    void this.hookParallel('onUnmapped', event);
  }

  onExpire(event: UnmappedEvent): void {
    void this.hookParallel('onExpire', event);
  }

  onRepaired(event: RepairedEvent): void {
    void this.hookParallel('onRepaired', event);
  }

  /** Provisions plugins in order. On failure, cleans up everything provisioned so far (including the one that failed). */
  async provision(): Promise<void> {
    for (const plugin of this.plugins) {
      this.provisioned.push(plugin);
      try {
        await plugin.provision?.();
      } catch (err) {
        const error = new PluginHookError(plugin.name, 'provision', err);
        await this.cleanup();
        throw error;
      }
    }
  }

  /** Cleans up provisioned plugins in reverse order; every plugin gets its turn even if one fails. */
  async cleanup(): Promise<void> {
    await this.settleNotifications();
    while (this.provisioned.length > 0) {
      const plugin = this.provisioned.pop()!;
      try {
        await plugin.cleanup?.();
      } catch (err) {
        this.logger.error({ err, plugin: plugin.name }, `plugin "${plugin.name}" failed to clean up: ${messageOf(err)}`);
      }
    }
  }

  /** Runs a sequential hook: each handler may return a replacement value; a throw vetoes. */
  async hookSeq<H extends 'beforeMap' | 'beforePinhole'>(
    hook: H,
    value: Parameters<Hooks[H]>[0],
    context: Parameters<Hooks[H]>[1],
  ): Promise<Parameters<Hooks[H]>[0]>;
  async hookSeq<H extends 'beforeUnmap'>(hook: H, value: Parameters<Hooks[H]>[0], context: Parameters<Hooks[H]>[1]): Promise<void>;
  async hookSeq(hook: HooksOfKind<'sequential'>, value: unknown, context: unknown): Promise<unknown> {
    let current = value;
    for (const plugin of this.plugins) {
      const handler = plugin.hooks?.[hook] as ((v: unknown, c: unknown) => unknown) | undefined;
      if (!handler) continue;
      let result: unknown;
      try {
        result = await handler.call(plugin.hooks, current, context);
      } catch (err) {
        throw new PluginHookError(plugin.name, hook, err);
      }
      if (result !== undefined && result !== null) current = result;
    }
    return current;
  }

  private async callFirewall<T>(method: 'apply' | 'list' | 'init' | 'check' | 'resync' | 'pinholes.packets', call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      throw new PluginHookError(this.firewallPlugin.name, `firewall.${method}`, err);
    }
  }

  /** Runs a notification hook in every plugin at once; failures are logged, never thrown. */
  hookParallel<H extends HooksOfKind<'parallel'>>(hook: H, event: Parameters<Hooks[H]>[0]): Promise<void> {
    const runs = this.plugins
      .filter((plugin) => plugin.hooks?.[hook])
      .map(async (plugin) => {
        try {
          await (plugin.hooks![hook] as (e: unknown) => unknown).call(plugin.hooks, event);
        } catch (err) {
          const error = new PluginHookError(plugin.name, hook, err);
          this.logger.warn({ err: error, plugin: plugin.name, hook }, error.message);
        }
      });
    const all = Promise.all(runs).then(() => undefined);
    this.pending.add(all);
    void all.finally(() => this.pending.delete(all));
    return all;
  }

  /** Waits for notifications still running (used before cleanup so none is cut off). */
  async settleNotifications(): Promise<void> {
    await Promise.all([...this.pending]);
  }
}

function rank(plugin: Plugin): number {
  return ORDER_RANK[plugin.order ?? 'normal'];
}

const KNOWN_HOOKS = new Set<string>(Object.keys(HOOK_KINDS));

export function validatePlugins(plugins: readonly Plugin[]): void {
  const names = new Set<string>();
  for (const [index, plugin] of plugins.entries()) {
    if (!plugin || typeof plugin !== 'object') throw new PluginRegistrationError(`plugin #${index} is not an object`);
    if (typeof plugin.name !== 'string' || plugin.name === '') throw new PluginRegistrationError(`plugin #${index} has no name`);
    if (names.has(plugin.name)) throw new PluginRegistrationError(`plugin "${plugin.name}" is registered twice`);
    names.add(plugin.name);
    if (plugin.order !== undefined && plugin.order !== 'pre' && plugin.order !== 'post') {
      throw new PluginRegistrationError(`plugin "${plugin.name}": order must be "pre" or "post", not ${JSON.stringify(plugin.order)}`);
    }
    for (const [hook, handler] of Object.entries(plugin.hooks ?? {})) {
      if (!KNOWN_HOOKS.has(hook)) {
        throw new PluginRegistrationError(`plugin "${plugin.name}" has an unknown hook "${hook}" (known hooks: ${[...KNOWN_HOOKS].join(', ')})`);
      }
      if (typeof handler !== 'function') throw new PluginRegistrationError(`plugin "${plugin.name}": hook "${hook}" is not a function`);
    }
    if (plugin.firewall !== undefined) validateFirewall(plugin.name, plugin.firewall);
    for (const lifecycle of ['provision', 'cleanup', 'reconfigure', 'frontEnd'] as const) {
      if (plugin[lifecycle] !== undefined && typeof plugin[lifecycle] !== 'function') {
        throw new PluginRegistrationError(`plugin "${plugin.name}": ${lifecycle} is not a function`);
      }
    }
  }
  const firewalls = plugins.filter((p) => p.firewall !== undefined).map((p) => p.name);
  if (firewalls.length === 0) {
    throw new PluginRegistrationError('no firewall backend: add one of iptables(), nftables() or dryRun() to plugins, or pass --backend / --dry-run');
  }
  if (firewalls.length > 1) {
    throw new PluginRegistrationError(`only one plugin may fill the firewall slot, but ${firewalls.map((b) => `"${b}"`).join(' and ')} both do`);
  }
}

const FIREWALL_METHODS = ['probe', 'init', 'apply', 'list', 'shutdown', 'render'] as const satisfies ReadonlyArray<keyof FirewallBackend>;

function validateFirewall(plugin: string, firewall: FirewallBackend): void {
  const missing = FIREWALL_METHODS.filter((method) => typeof firewall[method] !== 'function');
  if (missing.length > 0) throw new PluginRegistrationError(`plugin "${plugin}": its firewall backend has no ${missing.join(', ')} method`);
}
