import 'reflect-metadata';
import { container as rootContainer } from 'tsyringe';
import { configSchema, type ResolvedConfig, type UserConfig } from '../../core/config/schema.js';
import { ConfigError } from '../../core/errors.js';
import { formatIssues } from '../../core/config/load.js';
import type { InterfaceAddress, NetworkInfo } from '../../core/net/network-info.js';
import { RefusalRegistry } from '../../core/plugins/refusals.js';
import { CLOCK, CONFIG, LAN_ADDRESSES, LOGGER, NETWORK_INFO, PLUGIN_OPTIONS, REFUSALS } from '../../core/plugins/tokens.js';
import type { Plugin, PluginSpec } from '../../core/plugins/types.js';
import type { Logger } from '../../core/logger.js';
import { LISTENING_SOCKETS, type ListeningSockets } from '../../plugins/reserved-ports/index.js';
import type { Protocol } from '../../core/mapping/types.js';
import { ManualClock, RecordingLogger } from './fakes.js';

/** Sockets the gateway "listens on", set by the test. */
export class FakeSockets implements ListeningSockets {
  readonly listening = new Set<string>();
  reads = 0;
  listen(protocol: Protocol, port: number): this {
    this.listening.add(`${protocol}/${port}`);
    return this;
  }
  isListening(protocol: Protocol, port: number): Promise<boolean> {
    this.reads++;
    return Promise.resolve(this.listening.has(`${protocol}/${port}`));
  }
}

export interface PolicyEnvironment {
  readonly lan?: readonly InterfaceAddress[];
  readonly config?: UserConfig;
  readonly network?: NetworkInfo;
  readonly sockets?: ListeningSockets;
  readonly refusals?: RefusalRegistry;
  readonly logger?: Logger;
  readonly clock?: ManualClock;
}

const NO_NETWORK: NetworkInfo = { ipv4Addresses: () => [], counters: () => Promise.resolve(null), link: () => Promise.resolve(null) };

/**
 * Builds a policy plugin from its factory call as the daemon does: options parsed by the plugin's
 * schema (a ConfigError naming the key path otherwise), then `create` with a container holding
 * the daemon's services.
 */
export function buildPolicy(spec: PluginSpec, env: PolicyEnvironment = {}): Plugin {
  const parsed = spec.optionsSchema ? spec.optionsSchema.safeParse(spec.options) : { success: true as const, data: spec.options };
  if (!parsed.success) throw new ConfigError(formatIssues(parsed.error.issues, () => 'test', `plugins[0] (${spec.name})`));
  const config: ResolvedConfig = { ...configSchema.parse({ dryRun: true, ...env.config }), source: 'test', lanFromCommandLine: false, plugins: [] };
  const child = rootContainer.createChildContainer();
  child.register(CONFIG, { useValue: config });
  child.register(LAN_ADDRESSES, { useValue: env.lan ?? [{ interface: 'br-lan', address: '192.168.1.1', prefixLength: 24 }] });
  child.register(NETWORK_INFO, { useValue: env.network ?? NO_NETWORK });
  child.register(CLOCK, { useValue: env.clock ?? new ManualClock() });
  child.register(LOGGER, { useValue: env.logger ?? new RecordingLogger() });
  child.register(REFUSALS, { useValue: env.refusals ?? new RefusalRegistry() });
  child.register(PLUGIN_OPTIONS, { useValue: parsed.data });
  if (env.sockets) child.register(LISTENING_SOCKETS, { useValue: env.sockets });
  return spec.create(child);
}
