import type { DependencyContainer } from 'tsyringe';
import type { z } from 'zod';
import type { CommandRunner } from '../command-runner.js';
import type { ResolvedConfig } from '../config/schema.js';
import type { FrontEndFactory } from '../front-end.js';
import type { InterfaceAddress } from '../net/network-info.js';
import type { Logger } from '../logger.js';
import type {
  ChangeSet,
  ExternalAddressChangeEvent,
  IntegrityReport,
  MappedEvent,
  MappingRequest,
  PolicyContext,
  PortMapping,
  RepairedEvent,
  RuleSpec,
  UnmappedEvent,
} from '../mapping/types.js';
import type { PinholeEvent, PinholePolicyContext, PinholeRequest, PinholeRule } from '../mapping/pinhole.js';

export type { Pinhole, PinholeChanges, PinholeEvent, PinholePolicyContext, PinholeRequest, PinholeRule, PinholeView } from '../mapping/pinhole.js';
export type {
  ExternalAddressChangeEvent,
  IntegrityReport,
  RepairedEvent,
  MappedEvent,
  MappingView,
  PolicyContext,
  UnmappedEvent,
  UnmapReason,
} from '../mapping/types.js';

/** The LAN IPv4 addresses served before and after a change (`LAN_ADDRESSES` holds those of the start). */
export interface LanAddressChangeEvent {
  readonly previous: readonly InterfaceAddress[];
  readonly current: readonly InterfaceAddress[];
}

/**
 * Hook kinds, as in Rollup's plugin driver:
 * - `sequential`: handlers run one after another in plugin order; each may veto by throwing
 *   (a UpnpError keeps its code) or adjust the value by returning a new one.
 * - `parallel`: notifications, run together; failures are logged and never fatal.
 * The firewall is not a hook but a slot (`Plugin.firewall`) that exactly one plugin fills.
 */
export type HookKind = 'sequential' | 'parallel';

type Awaitable<T> = T | Promise<T>;

export interface Hooks {
  /**
   * May veto (throw) or adjust (return a changed request) a mapping before it is made.
   * May run more than once for one request (a batch the firewall refused is retried one change
   * at a time): decide from the arguments alone, keep no state of your own (count from
   * `context.mappings`, which shows the table as it stands inside the change).
   */
  beforeMap(request: MappingRequest, context: PolicyContext): Awaitable<MappingRequest | void>;
  /** May veto (throw) the removal of a mapping asked for by a client. May run more than once, as beforeMap. */
  beforeUnmap(mapping: PortMapping, context: PolicyContext): Awaitable<void>;
  /** May veto (throw) or adjust an IPv6 pinhole before it is opened or restored. May run more than once, as beforeMap. */
  beforePinhole(request: PinholeRequest, context: PinholePolicyContext): Awaitable<PinholeRequest | void>;
  /** A pinhole was opened, renewed, restored or closed. */
  onPinhole(event: PinholeEvent): Awaitable<void>;
  onMapped(event: MappedEvent): Awaitable<void>;
  onUnmapped(event: UnmappedEvent): Awaitable<void>;
  onExpire(event: UnmappedEvent): Awaitable<void>;
  onExternalAddressChange(event: ExternalAddressChangeEvent): Awaitable<void>;
  /**
   * The LAN IPv4 addresses upnpd serves changed while it runs (a renumbering, an address added or
   * removed). Told before the front-ends serve the new ones: a plugin that took `LAN_ADDRESSES` at
   * start (a policy's LAN subnets) follows here.
   */
  onLanAddressChange(event: LanAddressChangeEvent): Awaitable<void>;
  /** The firewall had lost part of upnpd's rules (a reload) and they were put back. */
  onRepaired(event: RepairedEvent): Awaitable<void>;
}

export type HookName = keyof Hooks;

/** The compiler keeps this list complete: every hook has exactly one kind. */
export const HOOK_KINDS = {
  beforeMap: 'sequential',
  beforeUnmap: 'sequential',
  beforePinhole: 'sequential',
  onPinhole: 'parallel',
  onMapped: 'parallel',
  onUnmapped: 'parallel',
  onExpire: 'parallel',
  onExternalAddressChange: 'parallel',
  onLanAddressChange: 'parallel',
  onRepaired: 'parallel',
} as const satisfies Record<HookName, HookKind>;

export type HooksOfKind<K extends HookKind> = {
  [H in HookName]: (typeof HOOK_KINDS)[H] extends K ? H : never;
}[HookName];

/**
 * A running plugin. `provision` runs at start in plugin order, `cleanup` at shutdown in reverse
 * order; `cleanup` is also called after a `provision` that failed half way, so it must cope with
 * whatever state provision left.
 */
export interface Plugin {
  readonly name: string;
  /** Position among plugins: 'pre' ones first, then unmarked, then 'post'; registration order within. */
  readonly order?: 'pre' | 'post';
  readonly hooks?: Partial<Hooks>;
  /**
   * The firewall slot: exactly one plugin of the daemon fills it (the design's `applyRule`). The
   * core applies every change set through it and keeps it in step with the mapping table
   * (reconciliation: `check`/`resync` where the backend has them, else `list()`/`init()`).
   */
  readonly firewall?: FirewallBackend;
  /**
   * The front-end slot: a protocol front-end (NAT-PMP/PCP ships as one) that the daemon builds
   * after provisioning, with the mapping lifecycle, the LAN addresses, the shared client limits and
   * the external address (FrontEndContext), starts with the UPnP one, rebuilds after a LAN address
   * change and stops at shutdown. Any number of plugins may fill it.
   */
  readonly frontEnd?: FrontEndFactory;
  provision?(): Promise<void> | void;
  cleanup?(): Promise<void> | void;
  /**
   * SIGHUP: new options for this plugin, parsed by the same schema as at start. Applies to requests
   * from now on (mappings already made stay). A plugin without it needs a restart to change.
   */
  reconfigure?(options: unknown): void;
}

/**
 * What a config file lists for a plugin that is not a firewall backend: the result of a factory
 * call such as `secureMode()`. The host validates `options` with `optionsSchema` (errors name the
 * file and key path), then calls `create` with a child tsyringe container in which PLUGIN_OPTIONS
 * holds the parsed options (so a class may `@inject(PLUGIN_OPTIONS)`; a plain function may
 * `container.resolve(TOKEN)`).
 */
export interface PluginSpec<Options = unknown> {
  readonly kind: 'plugin';
  readonly name: string;
  readonly options: unknown;
  readonly optionsSchema?: z.ZodType<Options>;
  create(container: DependencyContainer): Plugin;
}

/** What a backend's `create` gets: its parsed options and the daemon's services, typed. */
export interface BackendContext<Options = unknown> {
  readonly options: Options;
  readonly config: ResolvedConfig;
  readonly logger: Logger;
  readonly commands: CommandRunner;
  /** The plugin's container, for any other token (`NETWORK_INFO`, `CLOCK`, ...). */
  readonly container: DependencyContainer;
  /** Builds another backend from its spec with the same services (for backends that wrap one, as dry-run does). */
  readonly build: (spec: BackendSpec) => FirewallBackend;
}

/**
 * What a config file lists for a firewall backend: the result of a factory made by
 * `defineBackend`, e.g. `nftables({...})`. `--backend NAME` picks one by name; `--dry-run` builds
 * it but only ever calls its `render`.
 */
export interface BackendSpec<Options = unknown> {
  readonly kind: 'backend';
  readonly name: string;
  readonly options: unknown;
  readonly optionsSchema?: z.ZodType<Options>;
  create(context: BackendContext<Options>): FirewallBackend;
}

export type AnyPluginSpec = PluginSpec | BackendSpec;

export function isPluginSpec(value: unknown): value is AnyPluginSpec {
  if (typeof value !== 'object' || value === null) return false;
  const spec = value as Partial<AnyPluginSpec>;
  return (spec.kind === 'plugin' || spec.kind === 'backend') && typeof spec.name === 'string' && typeof spec.create === 'function';
}

// ---------------------------------------------------------------------------------------------
// The firewall backend contract (what a third-party backend author implements)
// ---------------------------------------------------------------------------------------------

export interface BackendCapabilities {
  /** The rule dialect, e.g. 'iptables' or 'nftables'. */
  readonly dialect: string;
  /** Can restrict a mapping to one remote host. */
  readonly remoteHost: boolean;
  /** Can open IPv6 pinholes (the backend then has `pinholes`); absent or false: pinhole requests answer 703. */
  readonly pinholes?: boolean;
  /** Free-form facts found by probing (binary path, version, flavour). */
  readonly details: Readonly<Record<string, string>>;
}

/**
 * A firewall backend. Rules are built as data by a pure function of (change set, options), then
 * applied in one transaction. All methods throw BackendError with a message an admin can act on.
 */
export interface FirewallBackend {
  /** Checks the tools and kernel support it needs; throws a clear error when something is missing. */
  probe(): Promise<BackendCapabilities>;
  /** Creates the backend's own chains/tables. Idempotent. */
  init(): Promise<void>;
  /**
   * Applies removals then additions as one atomic step: either all of it is in effect afterwards,
   * or none of it (and the previous rules are intact). Removing a rule that is not installed is an error.
   */
  apply(changes: ChangeSet): Promise<void>;
  /** Reads back the mappings whose rules upnpd installed (for reconciliation and tests). */
  list(): Promise<RuleSpec[]>;
  /** Removes every rule, chain and jump the backend created, and nothing else. Idempotent. */
  shutdown(): Promise<void>;
  /**
   * Pure: the exact commands or script `apply(changes)` would run when `installed` are the rules in
   * effect before it. Touches nothing (no command runs); `--dry-run` logs what it returns.
   */
  render(changes: ChangeSet, installed: readonly RuleSpec[]): string;
  /**
   * Optional, for reconciliation: a cheap check (it runs every few seconds, so read as little as
   * possible) that what the backend installed for `expected` (the table's rules) is intact: its
   * own table or chains, the jumps into the admin's chains, the forward accept, the number of
   * rules or elements. Returns what is missing, in words for the log; nothing when intact.
   * Without it, the core compares `list()` with the table.
   */
  check?(expected: readonly RuleSpec[], pinholes?: readonly PinholeRule[]): Promise<IntegrityReport>;
  /**
   * Optional, for reconciliation: recreates the table/chains/jumps and every rule of `rules` in
   * ONE transaction, whatever is left of them. The core calls it (never concurrently with
   * `apply`) when `check` found something missing. Without it, the core calls `init()` and then
   * applies the difference between `list()` and `rules`.
   */
  resync?(rules: readonly RuleSpec[], pinholes?: readonly PinholeRule[]): Promise<void>;
  /**
   * Optional, IPv6 pinholes: a backend that has this receives change sets with `pinholes` (applied
   * in the same transaction as the mappings), lists, checks and resyncs them too, and reads a
   * pinhole's packet counter from the kernel (GetPinholePackets). Without it the core refuses
   * pinholes with 703 InboundPinholeNotAllowed and never sends them.
   */
  readonly pinholes?: PinholeBackend;
  /**
   * Optional: calls `onChange` whenever the kernel reports a change that may have touched the
   * backend's rules (e.g. from `nft monitor`); the core then checks at once instead of at the next
   * periodic check. Returns a function that stops watching. Without it, the periodic check alone.
   */
  watch?(onChange: () => void): () => void;
  /**
   * Optional: what would keep mapped traffic from flowing on this host although the rules are in
   * place (a forward chain that drops, a firewall tool that overrides this one). Reads only; run at
   * start (each finding logged as a warning) and by `upnpd doctor`.
   */
  diagnose?(): Promise<readonly Finding[]>;
}

/** What a backend with IPv6 pinholes offers besides carrying them in change sets. */
export interface PinholeBackend {
  /** The pinholes installed (for reconciliation and tests). */
  list(): Promise<PinholeRule[]>;
  /** Packets the kernel let through this pinhole's rule (0 when it is not installed). */
  packets(rule: PinholeRule): Promise<number>;
}

/**
 * One result of a check (`upnpd doctor`, start-up warnings): `error` means the daemon cannot do its
 * job (e.g. mapped traffic is dropped), `warning` that some clients or setups will fail.
 */
export interface Finding {
  /** A stable name scripts can match, e.g. `ip-forwarding`, `forward-path`. */
  readonly check: string;
  readonly severity: 'ok' | 'warning' | 'error';
  /** What is wrong (or what was found to be right), and what it breaks. */
  readonly message: string;
  /** The exact fix: the config key to set or the command to run. */
  readonly fix?: string;
}
