import { systemClock, type Clock } from './clock.js';
import { HeapTrimmer } from './heap-trimmer.js';
import { persistedBootId } from './boot-id.js';
import type { ResolvedConfig } from './config/schema.js';
import { ConfigError, messageOf } from './errors.js';
import type { FrontEnd } from './front-end.js';
import type { Logger } from './logger.js';
import type { ReconcileStats } from './mapping/reconciler.js';
import { MappingService } from './mapping/service.js';
import { MappingStateFile, MappingStateWriter } from './mapping/state-file.js';
import type { MappingViewSlot } from './mapping/view-slot.js';
import { OsNetworkInfo, type InterfaceAddress, type NetworkInfo } from './net/network-info.js';
import { PluginDriver } from './plugins/driver.js';
import { isPluginSpec, type Plugin } from './plugins/types.js';
import { UpnpIgdFrontEnd } from './upnp/index.js';

/** Keys a SIGHUP reload can change in place; everything else needs a restart. */
const RELOADABLE_KEYS = new Set(['logLevel', 'lease']);

/** What the daemon runs with: the plugins, already created, and the services they were given. */
export interface DaemonDependencies {
  readonly logger: Logger & { level: string };
  /** Ready plugins, exactly one of which fills the firewall slot. */
  readonly plugins: readonly Plugin[];
  /** The LAN addresses to serve (lanAddresses()). */
  readonly lan: readonly InterfaceAddress[];
  readonly network?: NetworkInfo;
  readonly clock?: Clock;
  /** Bound to the running table, when plugins were given one (the MAPPINGS token). */
  readonly mappingView?: MappingViewSlot;
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

  static async start(config: ResolvedConfig, deps: DaemonDependencies): Promise<Daemon> {
    const logger = deps.logger;
    const network = deps.network ?? new OsNetworkInfo();
    const clock = deps.clock ?? systemClock;
    const lan = deps.lan;

    const driver = new PluginDriver(deps.plugins, logger);
    const mappings = new MappingService(driver, driver.firewall, clock, config.lease, logger);
    deps.mappingView?.bind(mappings.view);

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
    // The rules restored at the start are the first the reconciler keeps an eye on.
    mappings.reconciler.start({ intervalMs: config.reconcile.intervalSeconds * 1000 });
    logger.info(
      {
        backend: driver.backendName,
        plugins: driver.plugins.map((p) => p.name),
        lan: lan.map((a) => `${a.interface}:${a.address}`),
        urls: frontEnds.flatMap((f) => f.describe?.() ?? []),
      },
      `upnpd running: backend ${driver.backendName}${config.dryRun ? ' (dry-run: no firewall is changed)' : ''}; ` +
        frontEnds.flatMap((f) => f.describe?.() ?? []).join('; '),
    );
    return daemon;
  }

  /** What reconciliation has done so far: checks, repairs, the last repair and the last error (for metrics). */
  get reconcileStats(): ReconcileStats {
    return this.mappings.reconciler.stats;
  }

  /** Stops answering, removes the rules (unless configured to keep them), cleans up plugins. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.heapTrimmer.stop();
      await this.mappings.reconciler.stop();
      for (const frontEnd of [...this.frontEnds].reverse()) {
        await frontEnd.stop().catch((err: unknown) => this.logger.error({ err }, `stopping ${frontEnd.name} failed: ${messageOf(err)}`));
      }
      // Saved once the changes already queued have committed, and before the rules go: the
      // mappings are reinstalled at the next start.
      await this.mappings.settled();
      await this.stateWriter?.flush();
      if (!this.config.keepRulesOnShutdown) {
        const removed = await this.mappings.removeAll().catch((err: unknown) => {
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
    logger.info(
      { file: file.path, expired: loaded.expired, invalid: loaded.invalid },
      `no mapping to restore from ${file.path} (${loaded.expired} expired, ${loaded.invalid} invalid)`,
    );
  }
  const writer = new MappingStateWriter(file, () => ({ mappings: [...mappings.values()], remainingMs: (m) => mappings.leaseLeftMs(m) }), logger);
  mappings.onChange(() => writer.changed());
  // What was dropped at the restore leaves the file now, not at the next change.
  if (mappings.size !== loaded.mappings.length + loaded.expired + loaded.invalid) writer.changed();
  return writer;
}

function describeValue(value: unknown): string {
  if (Array.isArray(value)) return JSON.stringify(value.map((v: unknown) => (isPluginSpec(v) ? { name: v.name, options: v.options } : v)));
  return JSON.stringify(value);
}
