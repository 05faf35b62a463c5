import type { DependencyContainer } from 'tsyringe';
import type { z } from 'zod';
import type { BackendContext, BackendSpec, FirewallBackend, Plugin, PluginSpec } from './types.js';

/**
 * Declares a plugin factory for config files: `export const quota = definePlugin({...})` lets a
 * user write `plugins: [quota({ max: 10 })]`. The host validates the options with `optionsSchema`
 * and then calls `create` with a child container in which PLUGIN_OPTIONS holds the parsed options.
 */
export function definePlugin<Schema extends z.ZodType = z.ZodType<Record<string, never>>>(definition: {
  name: string;
  optionsSchema?: Schema;
  create(container: DependencyContainer): Plugin;
}): (options?: z.input<Schema>) => PluginSpec<z.output<Schema>> {
  return (options) => ({
    kind: 'plugin',
    name: definition.name,
    options: options ?? {},
    optionsSchema: definition.optionsSchema as unknown as z.ZodType<z.output<Schema>> | undefined,
    create: (container) => definition.create(container),
  });
}

/**
 * Declares a firewall backend for config files and `--backend NAME`:
 * `export const mine = defineBackend({ name: 'mine', create: ({ options, logger }) => new Mine(options, logger) })`.
 * `create` gets the parsed options and the daemon's services (no decorators needed) and returns a
 * FirewallBackend. The host provisions it (probe, then init), applies every change set through it,
 * and shuts it down at exit; under `--dry-run` it only ever calls `render`.
 */
export function defineBackend<Schema extends z.ZodType = z.ZodType<Record<string, never>>>(definition: {
  name: string;
  optionsSchema?: Schema;
  create(context: BackendContext<z.output<Schema>>): FirewallBackend;
}): (options?: z.input<Schema>) => BackendSpec<z.output<Schema>> {
  return (options) => ({
    kind: 'backend',
    name: definition.name,
    options: options ?? {},
    optionsSchema: definition.optionsSchema as unknown as z.ZodType<z.output<Schema>> | undefined,
    create: (context) => definition.create(context),
  });
}

/**
 * The plugin that fills the firewall slot with a backend: provision probes then inits, cleanup
 * shuts down (removing upnpd's rules and chains) unless the config keeps the rules.
 */
export function firewallPlugin(name: string, backend: FirewallBackend, options: { readonly keepRulesOnShutdown: boolean }): Plugin {
  return {
    name,
    firewall: backend,
    async provision() {
      await backend.probe();
      await backend.init();
    },
    async cleanup() {
      if (options.keepRulesOnShutdown) return;
      await backend.shutdown();
    },
  };
}
