import { loadConfig } from '../core/config/load.js';
import type { ResolvedConfig } from '../core/config/schema.js';
import { messageOf, ConfigError } from '../core/errors.js';
import { ProcessCommandRunner } from '../core/command-runner.js';
import { lanAddresses } from '../core/daemon.js';
import { OsNetworkInfo, type InterfaceAddress, type NetworkInfo } from '../core/net/network-info.js';
import { assemblePlugins, createPlugins, dryRunDefaults, inertServices, pluginContainer } from './compose.js';
import { parseCommandLine } from './command-line.js';

export const CHECK_USAGE = `Usage: upnpd check [--config FILE] [the daemon's options]

Loads and validates the configuration (the file, the flags, every plugin's options, the backend's
name) and builds every plugin (starting none) as the daemon would, and exits: 0 when it is valid, 2 with the same messages as the daemon
otherwise. Interfaces that do not exist on this machine are warnings, not errors: a file may be
checked on another host than the gateway.
`;

/** Interfaces the config names that this machine does not have. */
export function missingInterfaces(config: ResolvedConfig, network: NetworkInfo): string[] {
  const named = [...config.lan, ...(config.wan ? [config.wan] : [])];
  return named.filter((iface) => network.ipv4Addresses(iface).length === 0);
}

/**
 * The LAN addresses the plugins are built with. A file without a LAN interface (outside dry-run)
 * is refused as at start; one naming interfaces of another host is checked with none.
 */
function lanToCheck(config: ResolvedConfig, network: NetworkInfo): InterfaceAddress[] {
  if (config.lan.length > 0 && missingInterfaces(config, network).length > 0) return [];
  return lanAddresses(config, network);
}

/** `upnpd check`: resolves with the exit status (0 valid, 2 invalid). */
export async function check(
  argv: readonly string[],
  out: NodeJS.WritableStream = process.stdout,
  err: NodeJS.WritableStream = process.stderr,
  network: NetworkInfo = new OsNetworkInfo(),
): Promise<number> {
  if (argv.includes('--help')) {
    out.write(CHECK_USAGE);
    return 0;
  }
  try {
    const config = dryRunDefaults(await loadConfig(parseCommandLine(argv).load));
    const plugins = assemblePlugins(config);
    // Options of the plugins the daemon adds itself are parsed too, as at start.
    for (const { spec, where } of plugins) {
      const parsed = spec.optionsSchema?.safeParse(spec.options);
      if (parsed && !parsed.success) throw new ConfigError(`${where}: ${parsed.error.issues.map((i) => i.message).join('; ')}`);
    }
    // Built as at start (a plugin's create may throw), then dropped: create starts nothing, provision does.
    const services = inertServices(network, new ProcessCommandRunner(), lanToCheck(config, network));
    createPlugins(plugins, pluginContainer(config, services), config, services.logger);
    for (const iface of missingInterfaces(config, network)) {
      err.write(`upnpd check: warning: interface "${iface}" does not exist on this machine or has no IPv4 address (fine if the file is for another host)\n`);
    }
    out.write(`${config.source}: valid (plugins: ${plugins.map((p) => p.spec.name).join(', ')})\n`);
    return 0;
  } catch (e) {
    err.write(`upnpd check: ${messageOf(e)}\n`);
    return 2;
  }
}
