import { systemClock, type Clock } from './clock.js';
import { HeapTrimmer } from './heap-trimmer.js';
import { persistedBootId } from './boot-id.js';
import type { ResolvedConfig } from './config/schema.js';
import { ConfigError, messageOf } from './errors.js';
import type { LeaseHolder, RestoredState } from './mapping/state-file.js';
import type { Pinhole } from './mapping/pinhole.js';
import type { CommandRunner } from './command-runner.js';
import { DEFAULT_NEIGHBOUR_SETTINGS, LanHosts, NeighbourCache } from './net/lan-hosts.js';
import type { FrontEnd, LanAddresses } from './front-end.js';
import type { Logger } from './logger.js';
import type { ReconcileStats } from './mapping/reconciler.js';
import { MappingService } from './mapping/service.js';
import { DurableMappingJournal, type PersistenceStatus } from './mapping/journal.js';
import { MappingStateFile } from './mapping/state-file.js';
import type { MappingViewSlot } from './mapping/view-slot.js';
import { systemNetwork, type InterfaceAddress, type NetworkInfo } from './net/network-info.js';
import { Ipv6Lan, type Ipv6InterfaceAddress } from './net/ipv6.js';
import { PluginDriver } from './plugins/driver.js';
import type { RefusalRegistry } from './plugins/refusals.js';
import { isPluginSpec, type Plugin } from './plugins/types.js';
import { UpnpIgdFrontEnd, upnpdVersion } from './upnp/index.js';
import { WanConnection } from './net/wan-connection.js';
import { ClientLimits, clientLimitSettings } from './limits/client-limits.js';

/** Address events of one renumbering arrive together: the LAN is looked at again this long after the last. */
const LAN_CHANGE_SETTLE_MS = 500;

const EMPTY_IPV6_LAN = new Ipv6Lan([]);

function describeLan(lan: readonly InterfaceAddress[], lanIpv6: Ipv6Lan): string {
  return [...lan.map((a) => `${a.interface}:${a.address}/${a.prefixLength}`).sort(), ...lanIpv6.describe()].join(', ');
}

/** Keys a SIGHUP reload can change in place; everything else needs a restart. */
const RELOADABLE_KEYS = new Set(['logLevel', 'lease']);

/** What the daemon runs with: the plugins, already created, and the services they were given. */
export interface DaemonDependencies {
  readonly logger: Logger & { level: string };
  /** Ready plugins, exactly one of which fills the firewall slot. */
  readonly plugins: readonly Plugin[];
  /** The LAN addresses to serve (lanAddresses()). */
  readonly lan: readonly InterfaceAddress[];
  /** The LAN IPv6 addresses to serve (lanIpv6Addresses(), read from `network` when not given). */
  readonly lanIpv6?: readonly Ipv6InterfaceAddress[];
  readonly network?: NetworkInfo;
  readonly clock?: Clock;
  /** Bound to the running table, when plugins were given one (the MAPPINGS token). */
  readonly mappingView?: MappingViewSlot;
  /**
   * SIGHUP: hands changed plugin options to the plugins (app/compose.ts reconfigurePlugins) and
   * returns the plugin changes that still need a restart. Without it, any change of `plugins` does.
   */
  readonly reconfigurePlugins?: (next: ResolvedConfig) => string[];
  /** The policies' refusal counts (the REFUSALS token), for the status and the metrics. */
  readonly refusals?: RefusalRegistry;
  /** Told how long each firewall apply took, from the first (the restore at start) on. */
  readonly onFirewallApply?: (seconds: number, ok: boolean) => void;
  /** Runs `ip neigh` for the pinhole ownership check (a host opens pinholes to any of its own addresses). Without it: only the address it spoke from. */
  readonly commands?: CommandRunner;
}

/** The LAN addresses to serve: loopback in dry-run unless --lan named interfaces. */
export function lanAddresses(config: ResolvedConfig, network: NetworkInfo): InterfaceAddress[] {
  if (config.dryRun && !config.lanFromCommandLine) return [{ interface: 'lo', address: '127.0.0.1', prefixLength: 8 }];
  if (config.lan.length === 0) {
    throw new ConfigError(`${config.source}: lan: no LAN interface given: set "lan" in the config or pass --lan IFACE (or run with --dry-run)`);
  }
  // An interface without an address is left out (the start-up checks warn about it); with none left, nothing can be served.
  const addresses = config.lan.flatMap((iface) => network.ipv4Addresses(iface));
  if (addresses.length === 0) {
    throw new ConfigError(`${config.source}: lan: ${config.lan.map((i) => `"${i}"`).join(', ')}: no such interface with an IPv4 address`);
  }
  return addresses;
}

/**
 * The IPv6 addresses to serve besides lanAddresses(): those of the LAN interfaces, none with
 * `ipv6: false`; in dry-run without --lan, ::1 where the host has it (loopback only, as for IPv4).
 */
export function lanIpv6Addresses(config: ResolvedConfig, network: NetworkInfo): Ipv6InterfaceAddress[] {
  if (!config.ipv6 || !network.ipv6Addresses) return [];
  if (config.dryRun && !config.lanFromCommandLine) return network.ipv6Addresses('lo').filter((a) => a.address === '::1');
  return config.lan.flatMap((iface) => network.ipv6Addresses!(iface));
}

/** What `upnpd status` shows. */
export interface DaemonStatus {
  readonly version: string;
  readonly backend: string;
  readonly dryRun: boolean;
  readonly uptimeSeconds: number;
  /** The external address every front-end answers with (null while the WAN has none). */
  readonly externalAddress: string | null;
  readonly mappings: {
    readonly total: number;
    readonly byProtocol: Readonly<Record<string, number>>;
    readonly byClient: Readonly<Record<string, number>>;
    readonly bySource: Readonly<Record<string, number>>;
  };
  /** IPv6 pinholes, by the LAN address they open. */
  readonly pinholes: {
    readonly total: number;
    readonly byClient: Readonly<Record<string, number>>;
  };
  readonly frontEnds: Readonly<Record<string, Readonly<Record<string, unknown>>>>;
  /** What the per-client bounds refused. */
  readonly limits: ReturnType<ClientLimits['stats']>;
  /** Whether acknowledged mappings are being kept (ok, failing, unavailable, off). */
  readonly persistence: PersistenceStatus;
  /** Refusals by policy and rule. */
  readonly refusals: Readonly<Record<string, Readonly<Record<string, number>>>>;
  /** Firewall checks and repairs (the last repair's findings and duration). */
  readonly reconcile: ReconcileStats;
}

/** The running daemon: plugins provisioned, mapping lifecycle, front-ends answering. */
export class Daemon {
  private stopping: Promise<void> | undefined;
  private readonly startedAt = performance.now();

  private constructor(
    readonly config: ResolvedConfig,
    private readonly logger: Logger & { level: string },
    readonly driver: PluginDriver,
    readonly mappings: MappingService,
    private frontEndList: FrontEnd[],
    private readonly state: StateDirectory,
    private readonly heapTrimmer: HeapTrimmer,
    /** Per-client bounds shared by every front-end; `limits.stats()` counts what they refused. */
    readonly limits: ClientLimits,
    private readonly wan: WanConnection,
    private readonly reconfigurePlugins?: (next: ResolvedConfig) => string[],
    private readonly refusals?: RefusalRegistry,
  ) {}

  private stopWatchingLan: (() => void) | undefined;
  private servedIpv6 = new Ipv6Lan([]);
  private readonly ipv6Listeners = new Set<(current: Ipv6Lan, previous: Ipv6Lan) => void>();

  /**
   * The IPv6 side of the LAN as served now: the gateway's addresses, the on-link prefixes
   * (`prefixes`), and which LAN interface a peer address is on (`interfaceOf`).
   */
  get lanIpv6(): Ipv6Lan {
    return this.servedIpv6;
  }

  /**
   * Tells `listener` each time the LAN IPv6 addresses changed (a new delegated prefix, an address
   * gone), once the UPnP front-end serves the new ones. Returns a function that stops telling.
   */
  onLanIpv6Change(listener: (current: Ipv6Lan, previous: Ipv6Lan) => void): () => void {
    this.ipv6Listeners.add(listener);
    return () => this.ipv6Listeners.delete(listener);
  }
  private stopWatchingWan: (() => void) | undefined;
  private stopWatchingNeighbours: (() => void) | undefined;

  /**
   * Pinholes open only to LAN hosts' own addresses, checked in the neighbour table (with `commands`;
   * without, only the address a client spoke from), on the LAN IPv6 prefixes served now; when the
   * prefixes change (a new delegated prefix), pinholes to addresses that left the LAN are closed.
   */
  private guardPinholes(commands: CommandRunner | undefined, network: NetworkInfo): void {
    if (commands) {
      // The neighbour events (from the `ip monitor` already running for the addresses) spare most checks a process.
      const cache = network.watchNeighbours && new NeighbourCache(this.config.lan, (onEvent) => network.watchNeighbours!(onEvent));
      this.stopWatchingNeighbours = cache && (() => cache.close());
      const hosts = new LanHosts(this.config.lan, commands, () => this.lanIpv6, DEFAULT_NEIGHBOUR_SETTINGS, cache);
      this.mappings.checkPinholeTargets((internalClient, requester) => hosts.refuse(internalClient, requester));
    }
    this.onLanIpv6Change((current) => {
      this.mappings
        .closePinholesWhere((p) => !current.contains(p.internalClient), 'deleted', null)
        .then(
          (closed) => {
            if (closed.length > 0)
              this.logger.info({ closed: closed.map((p) => p.id) }, `closed ${closed.length} pinhole(s) to addresses no longer on the LAN`);
          },
          (err: unknown) => this.logger.error({ err }, `could not close the pinholes of addresses that left the LAN: ${messageOf(err)}`),
        );
    });
  }
  /** LAN address changes are handled one after another. */
  private lanChange: Promise<void> = Promise.resolve();

  /** The protocol front-ends, as they run now (one that cannot take a LAN address change in place is replaced). */
  get frontEnds(): readonly FrontEnd[] {
    return this.frontEndList;
  }

  /** Whether acknowledged mappings are kept across restarts (the operations CLI shows it). */
  get persistence(): PersistenceStatus {
    return this.state.journal?.persistence ?? this.state.status;
  }

  static async start(config: ResolvedConfig, deps: DaemonDependencies): Promise<Daemon> {
    const logger = deps.logger;
    const network = deps.network ?? systemNetwork(logger);
    const clock = deps.clock ?? systemClock;
    const lan = deps.lan;
    const lanIpv6 = new Ipv6Lan(deps.lanIpv6 ?? lanIpv6Addresses(config, network));

    const driver = new PluginDriver(deps.plugins, logger);
    driver.applyObserver = deps.onFirewallApply;
    const mappings = new MappingService(driver, driver.firewall, clock, config.lease, logger);
    deps.mappingView?.bind(mappings.view);

    await driver.provision();
    const ownPorts = new Set<number>(config.httpPort > 0 ? [config.httpPort] : []);
    const ownAddresses = new Set(lan.map((a) => a.address));
    mappings.protectOwnEndpoints((address, port) => ownPorts.has(port) && (ownAddresses.has(address) || address.startsWith('127.')));
    const state = config.stateDir ? await restoreMappings(config.stateDir, config, mappings, logger) : NO_STATE_DIRECTORY;
    const bootId = config.stateDir ? await persistedBootId(config.stateDir, logger) : undefined;
    const limits = new ClientLimits(clientLimitSettings(config.limits), logger, clock);
    // One watcher of the external address for every front-end; the plugins hear of its changes.
    const wan = new WanConnection({ externalIp: config.externalIp, wan: config.wan, network, clock, logger });
    const builders = frontEndBuilders(config, driver, { mappings, limits, wan, clock, logger, network, bootId, restoredState: state.restored });
    const frontEnds: FrontEnd[] = [];
    for (const build of builders) frontEnds.push(await build(lan, lanIpv6));
    const daemon = new Daemon(
      config,
      logger,
      driver,
      mappings,
      frontEnds,
      state,
      new HeapTrimmer(clock, logger),
      limits,
      wan,
      deps.reconfigurePlugins,
      deps.refusals,
    );
    daemon.servedIpv6 = lanIpv6;
    // Read at once; the plugins hear of changes after the start.
    wan.start();
    daemon.stopWatchingWan = wan.onChange((current, previous) => {
      void driver.hookParallel('onExternalAddressChange', { previous: previous ?? '', current: current ?? '' });
    });
    daemon.guardPinholes(deps.commands, network);
    try {
      for (const frontEnd of frontEnds) await frontEnd.start();
    } catch (err) {
      await daemon.stop();
      throw err;
    }
    // With httpPort 0 the port is known only now (and a state file could not have named it); a LAN
    // address added while running is the gateway's own as well.
    const rememberOwnPorts = (started: readonly FrontEnd[]) => {
      for (const url of started.flatMap((f) => f.describe?.() ?? []).map((u) => new URL(u))) {
        ownPorts.add(Number(url.port));
        ownAddresses.add(url.hostname);
      }
    };
    rememberOwnPorts(frontEnds);
    daemon.heapTrimmer.start();
    if (!(config.dryRun && !config.lanFromCommandLine)) daemon.watchLan(lan, network, builders, rememberOwnPorts);
    // The rules restored at the start are the first the reconciler keeps an eye on.
    mappings.reconciler.start({ intervalMs: config.reconcile.intervalSeconds * 1000, maxCheckShare: config.reconcile.maxCheckShare });
    if (state.journal) mappings.watchWallClock();
    logger.info(
      {
        backend: driver.backendName,
        plugins: driver.plugins.map((p) => p.name),
        lan: lan.map((a) => `${a.interface}:${a.address}`),
        lanIpv6: lanIpv6.describe(),
        urls: frontEnds.flatMap((f) => f.describe?.() ?? []),
      },
      `upnpd running: backend ${driver.backendName}${config.dryRun ? ' (dry-run: no firewall is changed)' : ''}; ` +
        frontEnds.flatMap((f) => f.describe?.() ?? []).join('; '),
    );
    return daemon;
  }

  /**
   * A LAN address change (DHCP on a LAN bridge, an admin's `ip addr`, an IPv6 address whose
   * duplicate address detection ended): each front-end serves the new addresses in place
   * (`FrontEnd.updateLan`: listeners added and removed, the others answering all along; UPnP
   * announces the new LOCATIONs with the next BOOTID). One without it, or that cannot, is stopped
   * and built again on the new addresses. When the IPv4 addresses changed, the plugins are told
   * first (`onLanAddressChange`: the policies' LAN subnets follow).
   */
  private watchLan(
    initial: readonly InterfaceAddress[],
    network: NetworkInfo,
    builders: readonly FrontEndBuilder[],
    started: (frontEnds: readonly FrontEnd[]) => void,
  ): void {
    let current = describeLan(initial, this.servedIpv6);
    let currentIpv4 = initial;
    let timer: NodeJS.Timeout | undefined;
    this.stopWatchingLan = network.watchAddresses?.(() => {
      clearTimeout(timer);
      // Address events come in bursts (a renumbering is a delete and an add).
      timer = setTimeout(() => {
        this.lanChange = this.lanChange.then(async () => {
          if (this.stopping) return;
          let next: InterfaceAddress[];
          try {
            next = lanAddresses(this.config, network);
          } catch (err) {
            this.logger.error({ err }, `the LAN addresses changed and none is usable now: ${messageOf(err)}; still answering on ${current}`);
            return;
          }
          const nextIpv6 = new Ipv6Lan(lanIpv6Addresses(this.config, network));
          const described = describeLan(next, nextIpv6);
          if (described === current) return;
          this.logger.info(
            { previous: current, current: described },
            `LAN addresses changed (${current} -> ${described}): the front-ends serve the new addresses`,
          );
          // Before the front-ends: a host of a new subnet can reach them only from then on, and by
          // then the policies take it for a LAN host. Not waited for: a synchronous handler (a
          // policy's) has run when this returns, and a slow one must not hold up the LAN.
          if (describeLan(next, EMPTY_IPV6_LAN) !== describeLan(currentIpv4, EMPTY_IPV6_LAN)) {
            void this.driver.hookParallel('onLanAddressChange', { previous: currentIpv4, current: next });
            currentIpv4 = next;
          }
          // Together: one front-end's slow update (SSDP's announcements) does not keep the others waiting.
          this.frontEndList = await Promise.all(
            this.frontEndList.map((frontEnd, i) => this.serveChangedLan(frontEnd, builders[i]!, { lan: next, lanIpv6: nextIpv6 }, started)),
          );
          current = described;
          const previousIpv6 = this.servedIpv6;
          this.servedIpv6 = nextIpv6;
          if (previousIpv6.describe().join() !== nextIpv6.describe().join()) {
            for (const listener of this.ipv6Listeners) {
              try {
                listener(nextIpv6, previousIpv6);
              } catch (err) {
                this.logger.error({ err }, `a LAN IPv6 change listener failed: ${messageOf(err)}`);
              }
            }
          }
        });
      }, LAN_CHANGE_SETTLE_MS);
      timer.unref();
    });
  }

  /** One front-end on changed LAN addresses: updated in place, or else stopped and built again. Returns the one that runs now. */
  private async serveChangedLan(
    frontEnd: FrontEnd,
    build: FrontEndBuilder,
    lan: LanAddresses,
    started: (frontEnds: readonly FrontEnd[]) => void,
  ): Promise<FrontEnd> {
    const updated = await (frontEnd.updateLan?.(lan) ?? Promise.resolve(false)).catch((err: unknown) => {
      this.logger.error({ err }, `${frontEnd.name} could not serve the new LAN addresses in place, starting it again: ${messageOf(err)}`);
      return false;
    });
    if (updated) {
      started([frontEnd]);
      return frontEnd;
    }
    await frontEnd.stop().catch((err: unknown) => this.logger.error({ err }, `stopping ${frontEnd.name} failed: ${messageOf(err)}`));
    const replacement = await build(lan.lan, lan.lanIpv6, { lanChanged: true });
    await replacement.start().then(
      () => started([replacement]),
      (err: unknown) => this.logger.error({ err }, `${replacement.name} could not start on the new addresses: ${messageOf(err)}`),
    );
    return replacement;
  }

  status(): DaemonStatus {
    const all = [...this.mappings.values()];
    const countBy = (key: (m: (typeof all)[number]) => string) => {
      const counts: Record<string, number> = {};
      for (const m of all) counts[key(m)] = (counts[key(m)] ?? 0) + 1;
      return counts;
    };
    return {
      version: upnpdVersion(),
      backend: this.driver.backendName,
      dryRun: this.config.dryRun,
      uptimeSeconds: Math.round((performance.now() - this.startedAt) / 1000),
      externalAddress: this.wan.externalAddress ?? null,
      mappings: {
        total: all.length,
        byProtocol: countBy((m) => m.protocol),
        byClient: countBy((m) => m.internalClient),
        bySource: countBy((m) => m.createdBy.via),
      },
      pinholes: pinholeCounts(this.mappings.pinholes.values()),
      frontEnds: Object.fromEntries(this.frontEnds.map((f) => [f.name, f.status?.() ?? {}])),
      limits: this.limits.stats(),
      persistence: this.persistence,
      refusals: this.refusals?.snapshot() ?? {},
      reconcile: this.reconcileStats,
    };
  }

  /** What reconciliation has done so far: checks, repairs, the last repair and the last error (for metrics). */
  get reconcileStats(): ReconcileStats {
    return this.mappings.reconciler.stats;
  }

  /** Stops answering, removes the rules (unless configured to keep them), cleans up plugins. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.stopWatchingLan?.();
      await this.lanChange;
      this.stopWatchingWan?.();
      this.stopWatchingNeighbours?.();
      this.heapTrimmer.stop();
      await this.mappings.reconciler.stop();
      for (const frontEnd of [...this.frontEnds].reverse()) {
        await frontEnd.stop().catch((err: unknown) => this.logger.error({ err }, `stopping ${frontEnd.name} failed: ${messageOf(err)}`));
      }
      this.wan.stop();
      // Saved once the changes already queued have committed, and before the rules go: the
      // mappings are reinstalled at the next start.
      await this.mappings.settled();
      await this.state.journal
        ?.compact()
        .catch((err: unknown) => this.logger.error({ err }, `could not compact the mapping state at shutdown: ${messageOf(err)}`));
      // The rules removed below are reinstalled at the next start: not recorded as removals.
      this.state.journal?.close();
      if (!this.config.keepRulesOnShutdown) {
        const removed = await this.mappings.removeAll().catch((err: unknown) => {
          this.logger.error({ err }, `removing the mappings at shutdown failed: ${messageOf(err)}`);
          return 0;
        });
        this.logger.info({ removed }, `removed ${removed} mapping(s) at shutdown`);
      }
      await this.mappings.close();
      // Logged before the plugins clean up: the logging plugin, cleaned up last, closes syslog, and
      // the admin's syslog is where this last line is looked for. A cleanup that fails after it is
      // still logged (to stdout once syslog is closed).
      this.logger.info('upnpd stopped');
      await this.driver.cleanup();
    })();
    return this.stopping;
  }

  /**
   * SIGHUP: applies what can change in place (log level, lease policy, the options of plugins that
   * can be reconfigured: new policies apply to new requests, mappings already made stay) and names
   * each changed key that needs a restart. Returns those keys.
   */
  reload(next: ResolvedConfig): string[] {
    const needRestart: string[] = [];
    if (this.reconfigurePlugins) {
      try {
        needRestart.push(...this.reconfigurePlugins(next));
      } catch (err) {
        this.logger.error({ err }, `SIGHUP: configuration not reloaded, keeping the running one: ${messageOf(err)}`);
        return [];
      }
    }
    for (const key of Object.keys(next) as Array<keyof ResolvedConfig>) {
      if (key === 'source' || (key === 'plugins' && this.reconfigurePlugins)) continue;
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

/** Builds a front-end for the LAN addresses served now; called again after each LAN address change. */
type FrontEndBuilder = (lan: readonly InterfaceAddress[], lanIpv6: Ipv6Lan, when?: { readonly lanChanged: boolean }) => Promise<FrontEnd>;

interface FrontEndServices {
  readonly mappings: MappingService;
  readonly limits: ClientLimits;
  readonly wan: WanConnection;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly network: NetworkInfo;
  /** BOOTID.UPNP.ORG kept in the state directory, if there is one. */
  readonly bootId: number | undefined;
  readonly restoredState: RestoredState;
}

/**
 * The front-ends to run: UPnP IGD (unless `upnp.enabled` is false), then each plugin that fills the
 * front-end slot, in plugin order.
 */
function frontEndBuilders(config: ResolvedConfig, driver: PluginDriver, services: FrontEndServices): FrontEndBuilder[] {
  const { mappings, limits, wan, clock, logger, network } = services;
  let upnp: UpnpIgdFrontEnd | undefined;
  // After a LAN change it announces the next BOOTID: from the state directory, else one more than before.
  const nextBootId = async () => (config.stateDir ? await persistedBootId(config.stateDir, logger) : (upnp?.bootId ?? 0) + 1);
  const upnpBuilder: FrontEndBuilder = async (lan, lanIpv6, when) => {
    const bootId = when?.lanChanged ? await nextBootId() : services.bootId;
    if (when?.lanChanged) logger.info({ bootId }, `LAN addresses changed (UPnP IGD): starting again with BOOTID ${bootId}`);
    // A replacement keeps the HTTP port of the one it replaces, so that cached URLs stay valid.
    const preferredHttpPort = when?.lanChanged ? upnp?.httpPort : undefined;
    upnp = new UpnpIgdFrontEnd({ config, limits, bootId, nextBootId, logger, mappings, network, clock, lan, lanIpv6, preferredHttpPort, wan });
    return upnp;
  };
  const plugins = driver.plugins.flatMap((plugin): FrontEndBuilder[] => {
    const factory = plugin.frontEnd;
    if (!factory) return [];
    const context = { mappings, limits, external: wan, clock, logger: logger.child({ plugin: plugin.name }), config, restoredState: services.restoredState };
    return [(lan, lanIpv6) => Promise.resolve(factory({ ...context, lan, lanIpv6 }))];
  });
  return [...(config.upnp.enabled ? [upnpBuilder] : []), ...plugins];
}

/** The state directory as the daemon uses it: its journal, or why there is none. */
interface StateDirectory {
  readonly journal?: DurableMappingJournal;
  readonly status: PersistenceStatus;
  /** What the start found of the state kept before it. */
  readonly restored: RestoredState;
}

const NO_STATE_DIRECTORY: StateDirectory = { status: { state: 'off', since: new Date().toISOString() }, restored: 'none' };

/**
 * With a state directory: reinstalls the mappings kept there (snapshot and journal; leases that
 * ended meanwhile are dropped), writes them as a fresh snapshot (which also takes over a
 * `mappings.json` of an earlier release), and from then on journals every batch before it is
 * answered. Never stops the start: a file that cannot be read is set aside (MappingStateFile.load),
 * and a directory that cannot be written means running without persistence, logged and reported.
 */
async function restoreMappings(stateDir: string, config: ResolvedConfig, mappings: MappingService, logger: Logger): Promise<StateDirectory> {
  const file = new MappingStateFile(stateDir, logger);
  try {
    await file.prepare();
  } catch (err) {
    logger.error({ err, stateDir }, `cannot create the state directory ${stateDir}: ${messageOf(err)}`);
  }
  const loaded = await file.load();
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
      // The snapshot written next leaves them out: keep what was read, for the admin.
      await file.keepCopy('restore-failed').then(
        (copy) =>
          logger.error(
            { file: file.path, copy },
            `${outcome.failed} saved mapping(s) could not be reinstalled; the files as they were read are kept as ${copy}`,
          ),
        (err: unknown) =>
          logger.error({ err, file: file.path }, `${outcome.failed} saved mapping(s) could not be reinstalled, and no copy could be kept: ${messageOf(err)}`),
      );
    }
  }
  mappings.resumePinholeIds(loaded.lastPinholeId);
  if (loaded.pinholes.length > 0) {
    const restored = await mappings.restorePinholes(loaded.pinholes);
    logger.info(
      { file: file.path, restored, stored: loaded.pinholes.length },
      `restored ${restored} of ${loaded.pinholes.length} IPv6 pinhole(s) from ${file.path}`,
    );
  }
  if (loaded.mappings.length === 0 && (loaded.expired || loaded.invalid)) {
    logger.info(
      { file: file.path, expired: loaded.expired, invalid: loaded.invalid },
      `no mapping to restore from ${file.path} (${loaded.expired} expired, ${loaded.invalid} invalid)`,
    );
  }
  const table = {
    mappings: () => mappings.values(),
    pinholes: () => mappings.pinholes.values(),
    lastPinholeId: () => mappings.lastGivenPinholeId,
    remainingMs: (m: LeaseHolder) => mappings.leaseLeftMs(m),
  };
  const journal = new DurableMappingJournal(file, table, logger);
  try {
    await file.save(table.mappings(), table.remainingMs, table.pinholes(), table.lastPinholeId());
  } catch (err) {
    // Kept as after a write failed while running: the policy holds, and a write that works ends it.
    journal.startedUnavailable(err);
    const meanwhile = config.state.onWriteFailure === 'refuse' ? 'new mappings are refused' : 'new mappings are kept in memory only';
    logger.error(
      { err, stateDir },
      `cannot write the mapping state to ${stateDir} (${journal.persistence.lastError}); running WITHOUT persistence until a write works (tried with each change and every few seconds): ${meanwhile} until then`,
    );
  }
  mappings.persistTo(journal, config.state.onWriteFailure);
  return { journal, status: journal.persistence, restored: loaded.state };
}

function pinholeCounts(pinholes: Iterable<Pinhole>): DaemonStatus['pinholes'] {
  const byClient: Record<string, number> = {};
  let total = 0;
  for (const p of pinholes) {
    byClient[p.internalClient] = (byClient[p.internalClient] ?? 0) + 1;
    total++;
  }
  return { total, byClient };
}

function describeValue(value: unknown): string {
  if (Array.isArray(value)) return JSON.stringify(value.map((v: unknown) => (isPluginSpec(v) ? { name: v.name, options: v.options } : v)));
  return JSON.stringify(value);
}
