import { container as rootContainer, type DependencyContainer } from 'tsyringe';
import { systemClock, type Clock } from './clock.js';
import { ExecaCommandRunner, type CommandRunner } from './command-runner.js';
import { HeapTrimmer } from './heap-trimmer.js';
import { persistedBootId } from './boot-id.js';
import type { BackendKind, ResolvedConfig } from './config/schema.js';
import { ConfigError, PluginRegistrationError, messageOf } from './errors.js';
import type { FrontEnd } from './front-end.js';
import type { Logger } from './logger.js';
import { MappingService } from './mapping/service.js';
import { MappingStateFile, MappingStateWriter } from './mapping/state-file.js';
import { OsNetworkInfo, type InterfaceAddress, type NetworkInfo } from './net/network-info.js';
import { PluginDriver } from './plugins/driver.js';
import { CLOCK, COMMAND_RUNNER, CONFIG, LAN_ADDRESSES, LOGGER, MAPPINGS, NETWORK_INFO, PLUGIN_OPTIONS } from './plugins/tokens.js';
import type { Plugin, PluginSpec } from './plugins/types.js';
import { UpnpIgdFrontEnd } from './upnp/index.js';
import { dryRun } from '../plugins/dry-run/index.js';
import { iptables } from '../plugins/iptables/index.js';
import { nftables } from '../plugins/nftables/index.js';
import { logging } from '../plugins/logging/index.js';
import { secureMode } from '../plugins/secure-mode/index.js';

const BACKEND_FACTORIES: Record<Exclude<BackendKind, 'dry-run'>, () => PluginSpec> = {
  iptables: () => iptables(),
  nftables: () => nftables(),
};

/**
 * In dry-run without a WAN interface or --external-ip, the address upnpd reports as external, so
 * that mapping actions work on a laptop (with no external address they answer 501, as the spec
 * says). TEST-NET-3 (RFC 5737): documentation-only, never routed.
 */
export const DRY_RUN_EXTERNAL_IP = '203.0.113.1';

/** Keys a SIGHUP reload can change in place; everything else needs a restart. */
const RELOADABLE_KEYS = new Set(['logLevel', 'lease']);

export interface DaemonDependencies {
  readonly logger: Logger & { level: string };
  readonly network?: NetworkInfo;
  readonly clock?: Clock;
  readonly commandRunner?: CommandRunner;
  /** Extra registrations (e.g. the logging core's LOG_OUTPUT) made before plugins are created. */
  readonly register?: (container: DependencyContainer) => void;
}

/**
 * Which plugins run, from the config: the listed ones, with the firewall backend chosen by
 * `backend`/`--backend` or replaced by the dry-run backend, plus the defaults (secure mode when
 * on, logging when none is listed).
 */
export function assemblePlugins(config: ResolvedConfig): PluginSpec[] {
  const listedBackend = config.plugins.find((spec) => spec.kind === 'backend');
  let specs = config.plugins.filter((spec) => spec.kind !== 'backend');

  if (config.dryRun || config.backend === 'dry-run') {
    const imitated = config.backend === 'nftables' || (config.backend === undefined && listedBackend?.name === 'nftables') ? 'nftables' : 'iptables';
    const listedOptions = listedBackend && listedBackend.name === imitated ? { [imitated]: listedBackend.options } : {};
    const listedDryRun = listedBackend?.name === 'dry-run' ? listedBackend : undefined;
    specs.push(listedDryRun ?? dryRun({ dialect: imitated, ...listedOptions }));
  } else if (config.backend && listedBackend?.name !== config.backend) {
    specs.push(BACKEND_FACTORIES[config.backend]());
  } else if (listedBackend) {
    specs.push(listedBackend);
  }
  const extraBackends = config.plugins.filter((spec) => spec.kind === 'backend' && spec !== listedBackend);
  if (extraBackends.length > 0) {
    throw new ConfigError(`${config.source}: plugins: only one firewall backend may be listed, found ${[listedBackend!, ...extraBackends].map((s) => s.name).join(', ')}`);
  }

  if (config.secureMode && !specs.some((spec) => spec.name === 'secure-mode')) specs = [secureMode(), ...specs];
  if (!specs.some((spec) => spec.name === 'logging')) specs.push(logging());
  return specs;
}

/** The LAN addresses to serve: loopback in dry-run unless --lan named interfaces. */
export function lanAddresses(config: ResolvedConfig, network: NetworkInfo): InterfaceAddress[] {
  if (config.dryRun && !config.lanFromCommandLine) return [{ interface: 'lo', address: '127.0.0.1', prefixLength: 8 }];
  if (config.lan.length === 0) {
    throw new ConfigError(`${config.source}: lan: no LAN interface given: set "lan" in the config or pass --lan IFACE (or run with --dry-run)`);
  }
  return config.lan.flatMap((iface) => {
    const addresses = network.ipv4Addresses(iface);
    if (addresses.length === 0) throw new ConfigError(`${config.source}: lan: interface "${iface}" does not exist or has no IPv4 address`);
    return addresses;
  });
}

/** The running daemon: plugins provisioned, mapping lifecycle, front-ends answering. */
export class Daemon {
  private stopping: Promise<void> | undefined;

  private constructor(
    readonly config: ResolvedConfig,
    private readonly logger: Logger & { level: string },
    readonly driver: PluginDriver,
    readonly mappings: MappingService,
    readonly frontEnds: readonly FrontEnd[],
    private readonly stateWriter: MappingStateWriter | undefined,
    private readonly heapTrimmer: HeapTrimmer,
  ) {}

  static async start(givenConfig: ResolvedConfig, deps: DaemonDependencies): Promise<Daemon> {
    const logger = deps.logger;
    const config = withDryRunDefaults(givenConfig, logger);
    const network = deps.network ?? new OsNetworkInfo();
    const clock = deps.clock ?? systemClock;
    const lan = lanAddresses(config, network);

    const container = rootContainer.createChildContainer();
    container.register(CONFIG, { useValue: config });
    container.register(LOGGER, { useValue: logger });
    container.register(CLOCK, { useValue: clock });
    container.register(NETWORK_INFO, { useValue: network });
    container.register(COMMAND_RUNNER, { useValue: deps.commandRunner ?? new ExecaCommandRunner() });
    container.register(LAN_ADDRESSES, { useValue: lan });
    deps.register?.(container);

    const plugins = assemblePlugins(config).map((spec) => createPlugin(spec, container, logger));
    const driver = new PluginDriver(plugins, logger);
    const mappings = new MappingService(driver, clock, config.lease, logger);
    container.register(MAPPINGS, { useValue: mappings });

    await driver.provision();
    let stateWriter: MappingStateWriter | undefined;
    try {
      stateWriter = config.stateDir ? await restoreMappings(config, config.stateDir, mappings, logger) : undefined;
    } catch (err) {
      await mappings.close();
      await driver.cleanup();
      throw err;
    }
    const bootId = config.stateDir ? await persistedBootId(config.stateDir, logger) : undefined;
    const frontEnds: FrontEnd[] = [
      new UpnpIgdFrontEnd({
        config,
        bootId,
        logger,
        mappings,
        network,
        clock,
        lan,
        onExternalAddressChange: (event) => void driver.hookParallel('onExternalAddressChange', event),
      }),
    ];
    const daemon = new Daemon(config, logger, driver, mappings, frontEnds, stateWriter, new HeapTrimmer(clock, logger));
    try {
      for (const frontEnd of frontEnds) await frontEnd.start();
    } catch (err) {
      await daemon.stop();
      throw err;
    }
    daemon.heapTrimmer.start();
    logger.info(
      { backend: driver.backendName, plugins: driver.plugins.map((p) => p.name), lan: lan.map((a) => `${a.interface}:${a.address}`), urls: frontEnds.flatMap((f) => f.describe?.() ?? []) },
      `upnpd running: backend ${driver.backendName}${config.dryRun ? ' (dry-run: no firewall is changed)' : ''}; ` +
        frontEnds.flatMap((f) => f.describe?.() ?? []).join('; '),
    );
    return daemon;
  }

  /** Stops answering, removes the rules (unless configured to keep them), cleans up plugins. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.heapTrimmer.stop();
      for (const frontEnd of [...this.frontEnds].reverse()) {
        await frontEnd.stop().catch((err) => this.logger.error({ err }, `stopping ${frontEnd.name} failed: ${messageOf(err)}`));
      }
      // Saved once the changes already queued have committed, and before the rules go: the
      // mappings are reinstalled at the next start.
      await this.mappings.settled();
      await this.stateWriter?.flush();
      if (!this.config.keepRulesOnShutdown) {
        const removed = await this.mappings.removeAll().catch((err) => {
          this.logger.error({ err }, `removing the mappings at shutdown failed: ${messageOf(err)}`);
          return 0;
        });
        this.logger.info({ removed }, `removed ${removed} mapping(s) at shutdown`);
      }
      await this.mappings.close();
      await this.driver.cleanup();
      this.logger.info('upnpd stopped');
    })();
    return this.stopping;
  }

  /**
   * SIGHUP: applies what can change in place (log level, lease policy) and names each changed
   * key that needs a restart. Returns those keys.
   */
  reload(next: ResolvedConfig): string[] {
    const needRestart: string[] = [];
    for (const key of Object.keys(next) as Array<keyof ResolvedConfig>) {
      if (key === 'source') continue;
      if (describeValue(next[key]) === describeValue(this.config[key])) continue;
      if (RELOADABLE_KEYS.has(key)) continue;
      needRestart.push(key);
    }
    this.logger.level = next.logLevel;
    this.mappings.setLeasePolicy(next.lease);
    (this as { config: ResolvedConfig }).config = { ...this.config, logLevel: next.logLevel, lease: next.lease };
    if (needRestart.length > 0) {
      this.logger.warn({ needRestart }, `configuration reloaded; these changes need a restart: ${needRestart.join(', ')}`);
    } else {
      this.logger.info('configuration reloaded');
    }
    return needRestart;
  }
}

/**
 * With a state directory: reinstalls the mappings saved there (leases that ended meanwhile are
 * dropped), then keeps the file in step with the table. A directory that cannot be created or a
 * file that cannot be read stops the start with a config error; a file that is not a mappings
 * file is set aside (MappingStateFile.load).
 */
async function restoreMappings(config: ResolvedConfig, stateDir: string, mappings: MappingService, logger: Logger): Promise<MappingStateWriter> {
  const file = new MappingStateFile(stateDir, logger);
  let loaded;
  try {
    await file.prepare();
    loaded = await file.load();
  } catch (err) {
    throw new ConfigError(`${config.source}: stateDir: cannot use "${stateDir}": ${messageOf(err)}`);
  }
  if (loaded.mappings.length > 0) {
    const outcome = await mappings.restore(loaded.mappings);
    const dropped = [
      loaded.expired && `${loaded.expired} expired while upnpd was stopped`,
      outcome.refused && `${outcome.refused} refused by policy`,
      loaded.invalid && `${loaded.invalid} invalid`,
      outcome.failed && `${outcome.failed} refused by the firewall backend`,
    ].filter(Boolean);
    logger.info(
      { file: file.path, ...outcome, expired: loaded.expired, invalid: loaded.invalid },
      `restored ${outcome.restored} mapping(s) from ${file.path}${dropped.length > 0 ? ` (${dropped.join(', ')})` : ''}`,
    );
    if (outcome.failed > 0) {
      // The next save leaves them out: keep what was read, for the admin.
      const copy = await file.keepCopy('restore-failed');
      logger.error({ file: file.path, copy }, `${outcome.failed} saved mapping(s) could not be reinstalled; the file as it was read is kept as ${copy}`);
    }
  } else if (loaded.expired || loaded.invalid) {
    logger.info({ file: file.path, expired: loaded.expired, invalid: loaded.invalid }, `no mapping to restore from ${file.path} (${loaded.expired} expired, ${loaded.invalid} invalid)`);
  }
  const writer = new MappingStateWriter(file, () => ({ mappings: [...mappings.values()], remainingMs: (m) => mappings.leaseLeftMs(m) }), logger);
  mappings.onChange(() => writer.changed());
  // What was dropped at the restore leaves the file now, not at the next change.
  if (mappings.size !== loaded.mappings.length + loaded.expired + loaded.invalid) writer.changed();
  return writer;
}

function withDryRunDefaults(config: ResolvedConfig, logger: Logger): ResolvedConfig {
  if (!config.dryRun || config.externalIp || config.wan) return config;
  logger.info(`dry-run: no WAN interface given; reporting ${DRY_RUN_EXTERNAL_IP} (TEST-NET-3) as the external address`);
  return { ...config, externalIp: DRY_RUN_EXTERNAL_IP };
}

function createPlugin(spec: PluginSpec, container: DependencyContainer, logger: Logger): Plugin {
  const child = container.createChildContainer();
  child.register(LOGGER, { useValue: logger.child({ plugin: spec.name }) });
  try {
    // Options from a config file were parsed at load; those of plugins added here (defaults,
    // --backend, --dry-run) are parsed now, so every plugin sees its defaults filled in.
    child.register(PLUGIN_OPTIONS, { useValue: spec.optionsSchema ? spec.optionsSchema.parse(spec.options) : spec.options });
    return spec.create(child);
  } catch (err) {
    throw new PluginRegistrationError(`plugin "${spec.name}" could not be created: ${messageOf(err)}`);
  }
}

function describeValue(value: unknown): string {
  if (Array.isArray(value)) return JSON.stringify(value.map((v) => (v && typeof v === 'object' && 'name' in v ? { name: v.name, options: v.options } : v)));
  return JSON.stringify(value);
}
