import type { DependencyContainer } from 'tsyringe';
import type { z } from 'zod';
import type { ResolvedConfig } from '../config/schema.js';
import type { FirewallBackend, Plugin, PluginSpec } from './types.js';
import { CONFIG } from './tokens.js';

/**
 * Declares a plugin factory for config files: `export const quota = definePlugin({...})` lets a
 * user write `plugins: [quota({ max: 10 })]`. The host validates the options with `optionsSchema`
 * and then calls `create` with a child container in which PLUGIN_OPTIONS holds the parsed options.
 */
export function definePlugin<Schema extends z.ZodType>(definition: {
  name: string;
  kind?: 'backend';
  optionsSchema: Schema;
  create(container: DependencyContainer): Plugin;
}): (options?: z.input<Schema>) => PluginSpec<z.output<Schema>> {
  return (options) => ({
    name: definition.name,
    kind: definition.kind,
    options: options ?? {},
    optionsSchema: definition.optionsSchema as unknown as z.ZodType<z.output<Schema>>,
    create: definition.create,
  });
}

/**
 * Wraps a FirewallBackend as the plugin that handles `applyRule`: provision probes then inits,
 * cleanup shuts down (removing upnpd's rules and chains) unless the config keeps rules.
 */
export function backendPlugin(name: string, backend: FirewallBackend, container: DependencyContainer): Plugin {
  const config = container.isRegistered(CONFIG, true) ? container.resolve(CONFIG) : undefined;
  return {
    name,
    backend,
    hooks: { applyRule: (changes) => backend.apply(changes) },
    async provision() {
      await backend.probe();
      await backend.init();
    },
    async cleanup() {
      if (config?.keepRulesOnShutdown) return;
      await backend.shutdown();
    },
  };
}
