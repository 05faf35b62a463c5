// tsyringe needs the Reflect metadata API before it loads.
import 'reflect-metadata';
import { container as rootContainer, type DependencyContainer } from 'tsyringe';
import { systemClock, type Clock } from '../core/clock.js';
import { ProcessCommandRunner, type CommandRunner } from '../core/command-runner.js';
import { formatIssues } from '../core/config/load.js';
import type { ResolvedConfig } from '../core/config/schema.js';
import { Daemon, lanAddresses } from '../core/daemon.js';
import { ConfigError, PluginRegistrationError, messageOf } from '../core/errors.js';
import { firewallPlugin } from '../core/plugins/define.js';
import { CLOCK, COMMAND_RUNNER, CONFIG, LAN_ADDRESSES, LOGGER, MAPPINGS, NETWORK_INFO, PLUGIN_OPTIONS, REFUSALS } from '../core/plugins/tokens.js';
import { isPluginSpec, type AnyPluginSpec, type BackendContext, type BackendSpec, type FirewallBackend, type Plugin } from '../core/plugins/types.js';
import type { Logger } from '../core/logger.js';
import { LOG_OUTPUT, createRootLogger, type LogOutput } from '../core/logging.js';
import { MappingViewSlot } from '../core/mapping/view-slot.js';
import { OS_READERS, hostFindings, logFindings, otherIgdFindings, preStartFindings, type HostReaders } from './checks/index.js';
import { systemNetwork, type InterfaceAddress, type NetworkInfo } from '../core/net/network-info.js';
import { dryRun } from '../plugins/dry-run/index.js';
import { iptables } from '../plugins/iptables/index.js';
import { logging } from '../plugins/logging/index.js';
import { nftables } from '../plugins/nftables/index.js';
import { lanTarget } from '../plugins/lan-target/index.js';
import { secureMode } from '../plugins/secure-mode/index.js';
import { natPmp } from '../plugins/nat-pmp/index.js';
import { description } from '../plugins/description/index.js';
import { quota } from '../plugins/quota/index.js';
import { remoteHost } from '../plugins/remote-host/index.js';
import { reservedPorts } from '../plugins/reserved-ports/index.js';
import { RefusalRegistry } from '../core/plugins/refusals.js';

/** The backends upnpd ships, by the name `--backend` takes. Backends listed in the config join them. */
const SHIPPED_BACKENDS: Readonly<Record<string, () => BackendSpec>> = {
  iptables: () => iptables(),
  nftables: () => nftables(),
  'dry-run': () => dryRun(),
};

/** What `--dry-run` imitates when neither `backend` nor `plugins` names a backend. */
const DRY_RUN_DEFAULT_BACKEND = 'iptables';

/**
 * In dry-run without a WAN interface or --external-ip, the address upnpd reports as external, so
 * that mapping actions work on a laptop (with no external address they answer 501, as the spec
 * says). TEST-NET-3 (RFC 5737): documentation-only, never routed.
 */
export const DRY_RUN_EXTERNAL_IP = '203.0.113.1';

/** In dry-run without a WAN interface, the interface the imitated backend renders its rules for. */
export const DRY_RUN_WAN_INTERFACE = 'wan0';

/**
 * Policies upnpd adds unless the config lists them (listing one, with options, replaces its
 * default), in this order before the listed plugins: the description is cleaned before any other
 * plugin sees it. See README "Security defaults".
 */
const DEFAULT_POLICIES: readonly (() => AnyPluginSpec)[] = [() => description(), () => lanTarget(), () => reservedPorts(), () => remoteHost(), () => quota()];

/** A plugin spec with the place it came from, for messages. */
interface PlacedSpec<S extends AnyPluginSpec = AnyPluginSpec> {
  readonly spec: S;
  /** e.g. `/etc/upnpd/upnpd.config.js: plugins[1] (nftables)` or `(default) logging`. */
  readonly where: string;
}

/**
 * Which plugins run, from the config: the listed ones; the firewall backend chosen by
 * `backend`/`--backend` among the shipped and listed ones, wrapped by dry-run under `--dry-run`;
 * plus the defaults (secure mode when on, logging when none is listed, NAT-PMP/PCP unless
 * `natPmp` is false; `natPmp: false` also drops a listed natPmp()).
 */
export function assemblePlugins(config: ResolvedConfig): PlacedSpec[] {
  const listed = config.plugins.map((spec, index) => ({ spec, where: `${config.source}: plugins[${config.pluginIndexes?.[index] ?? index}] (${spec.name})` }));
  const listedBackends = listed.filter((p): p is PlacedSpec<BackendSpec> => p.spec.kind === 'backend');
  if (listedBackends.length > 1) {
    throw new ConfigError(`${config.source}: plugins: only one firewall backend may be listed, found ${listedBackends.map((p) => p.spec.name).join(', ')}`);
  }
  let placed: PlacedSpec[] = [...listed.filter((p) => p.spec.kind !== 'backend'), chooseBackend(config, listedBackends[0])];
  if (config.secureMode && !placed.some((p) => p.spec.name === 'secure-mode')) placed = [{ spec: secureMode(), where: '(default) secure-mode' }, ...placed];
  const defaults = DEFAULT_POLICIES.map((create) => create()).filter((spec) => !placed.some((p) => p.spec.name === spec.name));
  placed = [...defaults.map((spec) => ({ spec, where: `(default) ${spec.name}` })), ...placed];
  if (!placed.some((p) => p.spec.name === 'logging')) placed.push({ spec: logging(), where: '(default) logging' });
  if (config.natPmp && !placed.some((p) => p.spec.name === 'nat-pmp')) placed.push({ spec: natPmp(), where: '(default) nat-pmp' });
  if (!config.natPmp) placed = placed.filter((p) => p.spec.name !== 'nat-pmp');
  // The description is cleaned before any other plugin sees it, also when the config lists description() after others.
  return [...placed.filter((p) => p.spec.name === 'description'), ...placed.filter((p) => p.spec.name !== 'description')];
}

function chooseBackend(config: ResolvedConfig, listed: PlacedSpec<BackendSpec> | undefined): PlacedSpec<BackendSpec> {
  const available = new Map<string, () => PlacedSpec<BackendSpec>>(
    Object.entries(SHIPPED_BACKENDS).map(([name, create]) => [name, () => ({ spec: create(), where: `(--backend) ${name}` })]),
  );
  if (listed) available.set(listed.spec.name, () => listed);
  const wanted = config.backend ?? listed?.spec.name ?? (config.dryRun ? DRY_RUN_DEFAULT_BACKEND : undefined);
  if (wanted === undefined) {
    throw new PluginRegistrationError(
      `no firewall backend: pass --backend NAME (${[...available.keys()].join(', ')}), list one in plugins, or run with --dry-run`,
    );
  }
  const chosen = available.get(wanted)?.();
  if (!chosen) {
    const origin = config.flags?.backend ? `command line ${config.flags.backend}` : config.source;
    throw new ConfigError(`${origin}: backend: unknown firewall backend "${wanted}"; available: ${[...available.keys()].join(', ')}`);
  }
  if (chosen.spec.name === 'dry-run') {
    // `--backend dry-run` shows the listed backend's rules, or iptables' when none is listed.
    const imitated = (chosen.spec.options as { imitate?: BackendSpec }).imitate ?? (listed && listed.spec.name !== 'dry-run' ? listed.spec : undefined);
    return { spec: dryRun({ imitate: imitated ?? iptables() }), where: chosen.where };
  }
  return config.dryRun ? { spec: dryRun({ imitate: chosen.spec }), where: chosen.where } : chosen;
}

/**
 * Parses the options of a plugin the config did not list (a default, `--backend`, dry-run's
 * imitated one); a listed plugin's options were parsed when the config was loaded (its spec then
 * has no schema left), so every plugin's options are parsed exactly once.
 */
function parsedOptions(placed: PlacedSpec): unknown {
  const { spec, where } = placed;
  if (!spec.optionsSchema) return spec.options;
  const parsed = spec.optionsSchema.safeParse(spec.options);
  if (!parsed.success) throw new ConfigError(formatIssues(parsed.error.issues, () => where));
  return parsed.data;
}

/** Builds the plugins, each in a child container holding its logger and parsed options. */
export function createPlugins(placed: readonly PlacedSpec[], container: DependencyContainer, config: ResolvedConfig, logger: Logger): Plugin[] {
  const backendConfig: ResolvedConfig = config.dryRun ? { ...config, wan: config.wan ?? DRY_RUN_WAN_INTERFACE } : config;
  const buildBackend = (p: PlacedSpec<BackendSpec>): FirewallBackend => {
    const options = parsedOptions(p);
    const child = childContainer(container, p.spec.name, options, logger);
    const context: BackendContext = {
      options,
      config: backendConfig,
      logger: child.resolve(LOGGER),
      commands: child.resolve(COMMAND_RUNNER),
      container: child,
      build: (inner) => buildBackend({ spec: inner, where: `${p.where}: imitate (${inner.name})` }),
    };
    return p.spec.create(context);
  };
  return placed.map((p) => {
    try {
      if (p.spec.kind === 'backend') {
        return firewallPlugin(p.spec.name, buildBackend(p as PlacedSpec<BackendSpec>), { keepRulesOnShutdown: config.keepRulesOnShutdown });
      }
      return p.spec.create(childContainer(container, p.spec.name, parsedOptions(p), logger));
    } catch (err) {
      if (err instanceof ConfigError) throw err;
      throw new PluginRegistrationError(`${p.where}: could not be created: ${messageOf(err)}`);
    }
  });
}

function childContainer(container: DependencyContainer, name: string, options: unknown, logger: Logger): DependencyContainer {
  const child = container.createChildContainer();
  child.register(LOGGER, { useValue: logger.child({ plugin: name }) });
  child.register(PLUGIN_OPTIONS, { useValue: options });
  return child;
}

export interface StartOptions {
  readonly logger: Logger & { level: string };
  /** Where the root logger's records go; the logging plugin routes them. */
  readonly logOutput: LogOutput;
  readonly network?: NetworkInfo;
  readonly clock?: Clock;
  readonly commandRunner?: CommandRunner;
  /** Told how long each firewall apply took (the admin listener's histogram). */
  readonly onFirewallApply?: (seconds: number, ok: boolean) => void;
  /** What the start-up checks read from the host (tests give their own); `false` runs none. */
  readonly hostReaders?: HostReaders | false;
}

/** What the plugins' container holds besides the config (the tokens of README "Writing a plugin"). */
export interface PluginServices {
  readonly logger: Logger;
  readonly logOutput: LogOutput;
  readonly network: NetworkInfo;
  readonly clock: Clock;
  readonly commandRunner: CommandRunner;
  readonly lan: readonly InterfaceAddress[];
  readonly mappingView: MappingViewSlot;
  readonly refusals: RefusalRegistry;
}

/** Services to build plugins with and start none (`upnpd check`, `upnpd doctor`): nothing is logged. */
export function inertServices(network: NetworkInfo, commandRunner: CommandRunner, lan: readonly InterfaceAddress[]): PluginServices {
  const { logger, output } = createRootLogger({ level: 'silent' });
  return { logger, logOutput: output, network, clock: systemClock, commandRunner, lan, mappingView: new MappingViewSlot(), refusals: new RefusalRegistry() };
}

/** The container every plugin's child container comes from: the daemon's, `upnpd check`'s and `upnpd doctor`'s. */
export function pluginContainer(config: ResolvedConfig, services: PluginServices): DependencyContainer {
  const container = rootContainer.createChildContainer();
  container.register(CONFIG, { useValue: config });
  container.register(LOGGER, { useValue: services.logger });
  container.register(CLOCK, { useValue: services.clock });
  container.register(NETWORK_INFO, { useValue: services.network });
  container.register(COMMAND_RUNNER, { useValue: services.commandRunner });
  container.register(LAN_ADDRESSES, { useValue: services.lan });
  container.register(LOG_OUTPUT, { useValue: services.logOutput });
  container.register(MAPPINGS, { useValue: services.mappingView });
  container.register(REFUSALS, { useValue: services.refusals });
  return container;
}

/** The composition root: chooses and builds the plugins for a config, then starts the daemon with them. */
export async function startDaemon(givenConfig: ResolvedConfig, options: StartOptions): Promise<Daemon> {
  const { logger } = options;
  const specs = assemblePlugins(givenConfig);
  const config = withDryRunDefaults(givenConfig, logger);
  const network = options.network ?? systemNetwork(logger);
  const clock = options.clock ?? systemClock;
  const lan = lanAddresses(config, network);
  const mappingView = new MappingViewSlot();
  const refusals = new RefusalRegistry();
  const container = pluginContainer(config, {
    logger,
    logOutput: options.logOutput,
    network,
    clock,
    commandRunner: options.commandRunner ?? new ProcessCommandRunner(),
    lan,
    mappingView,
    refusals,
  });

  const plugins = createPlugins(specs, container, config, logger);
  const running = specs.map((placed, index) => ({ placed, plugin: plugins[index]! }));
  const reconfigure = (next: ResolvedConfig) => reconfigurePlugins(running, next);
  const start = () =>
    Daemon.start(config, {
      logger,
      plugins,
      lan,
      network,
      clock,
      mappingView,
      reconfigurePlugins: reconfigure,
      refusals,
      onFirewallApply: options.onFirewallApply,
      commands: container.resolve(COMMAND_RUNNER),
    });
  const readers = options.hostReaders ?? OS_READERS;
  if (!readers) return start();

  // Start-up checks warn and never stop the start: ports before upnpd binds them, the LAN's other
  // IGDs while it starts (its own answers are told apart by their UDNs), the rest once it runs.
  logFindings(logger, await preStartFindings(config, lan, readers));
  const otherIgds = otherIgdFindings(config, lan, readers);
  const daemon = await start();
  const firewall = plugins.find((p) => p.firewall)?.firewall;
  logFindings(logger, await hostFindings(config, network, readers, firewall));
  void otherIgds.then(
    (findings) => logFindings(logger, findings),
    (err: unknown) => logger.debug({ err }, `the LAN could not be asked for other IGDs: ${messageOf(err)}`),
  );
  return daemon;
}

/** A plugin as it runs, with the spec it was built from. */
export interface RunningPlugin {
  placed: PlacedSpec;
  readonly plugin: Plugin;
}

/**
 * SIGHUP: the plugins the new config asks for, against the running ones (by name). A plugin whose
 * options changed gets them, parsed by its own schema, through `reconfigure`; every options change
 * is parsed before any is applied, so that a bad one changes nothing. Returns what needs a restart:
 * plugins added or removed, and changed ones that cannot be reconfigured (firewall backends).
 */
export function reconfigurePlugins(running: RunningPlugin[], next: ResolvedConfig): string[] {
  const wanted = assemblePlugins(next);
  const needRestart: string[] = [];
  const changes: { entry: RunningPlugin; placed: PlacedSpec; options: unknown }[] = [];
  for (const placed of wanted) {
    const entry = running.find((r) => r.placed.spec.name === placed.spec.name);
    if (!entry) {
      needRestart.push(`plugins: ${placed.spec.name} added`);
      continue;
    }
    const options = parsedOptions(placed);
    if (describeOptions(options) === describeOptions(parsedOptions(entry.placed))) continue;
    if (entry.placed.spec.kind === 'backend' || !entry.plugin.reconfigure) needRestart.push(`plugins: ${placed.spec.name} options`);
    else changes.push({ entry, placed, options });
  }
  for (const { placed } of running) if (!wanted.some((w) => w.spec.name === placed.spec.name)) needRestart.push(`plugins: ${placed.spec.name} removed`);
  for (const { entry, placed, options } of changes) {
    entry.plugin.reconfigure!(options);
    entry.placed = { spec: { ...placed.spec, options, optionsSchema: undefined }, where: placed.where };
  }
  return needRestart;
}

function withDryRunDefaults(config: ResolvedConfig, logger: Logger): ResolvedConfig {
  const adjusted = dryRunDefaults(config);
  if (adjusted !== config) logger.info(`dry-run: no WAN interface given; reporting ${DRY_RUN_EXTERNAL_IP} (TEST-NET-3) as the external address`);
  return adjusted;
}

/** In dry-run without `wan` or `externalIp`: the documentation address as the external one. */
export function dryRunDefaults(config: ResolvedConfig): ResolvedConfig {
  if (!config.dryRun || config.externalIp || config.wan) return config;
  return { ...config, externalIp: DRY_RUN_EXTERNAL_IP };
}

/** Options as text, to compare; a nested plugin spec (dry-run's `imitate`) by its name and options. */
function describeOptions(options: unknown): string {
  return JSON.stringify(options, (_key, value: unknown) => (isPluginSpec(value) ? { name: value.name, options: value.options } : value)) ?? '';
}
