import type { DependencyContainer } from 'tsyringe';
import type { z } from 'zod';
import type { ChangeSet, MappingKey, MappingRequest, PortMapping, Requester, RuleSpec } from '../mapping/types.js';

/**
 * Hook kinds, as in Rollup's plugin driver:
 * - `sequential`: handlers run one after another in plugin order; each may veto by throwing
 *   (a UpnpError keeps its code) or adjust the value by returning a new one.
 * - `exclusive`: exactly one plugin (the firewall backend) handles it; a failure fails the change.
 * - `parallel`: notifications, run together; failures are logged and never fatal.
 */
export type HookKind = 'sequential' | 'exclusive' | 'parallel';

/** What a policy sees besides the request. */
export interface PolicyContext {
  readonly requester: Requester;
  /** The mapping currently held under the request's key, if any (a renewal or a conflict). */
  readonly existing: PortMapping | undefined;
  /** The table as it stands inside this change (read only). */
  readonly mappings: MappingView;
}

export interface MappingView {
  get(key: MappingKey): PortMapping | undefined;
  readonly size: number;
  values(): Iterable<PortMapping>;
}

export interface MappedEvent {
  readonly mapping: PortMapping;
  /** The mapping this one replaced (same key), if any. */
  readonly previous: PortMapping | undefined;
  readonly requester: Requester;
  /** Reinstalled at start from the state directory (`requester` is then who created it). */
  readonly restored?: boolean;
}

export type UnmapReason = 'deleted' | 'expired' | 'shutdown';

export interface UnmappedEvent {
  readonly mapping: PortMapping;
  readonly reason: UnmapReason;
  /** Who asked for the removal; null when the daemon removed it itself (expiry, shutdown). */
  readonly requester: Requester | null;
}

export interface ExternalAddressChangeEvent {
  readonly previous: string;
  readonly current: string;
}

type Awaitable<T> = T | Promise<T>;

export interface Hooks {
  /** May veto (throw) or adjust (return a changed request) a mapping before it is made. */
  beforeMap(request: MappingRequest, context: PolicyContext): Awaitable<MappingRequest | void>;
  /** May veto (throw) the removal of a mapping asked for by a client. */
  beforeUnmap(mapping: PortMapping, context: PolicyContext): Awaitable<void>;
  /** The firewall backend installs and removes rules, atomically. */
  applyRule(changes: ChangeSet): Promise<void>;
  onMapped(event: MappedEvent): Awaitable<void>;
  onUnmapped(event: UnmappedEvent): Awaitable<void>;
  onExpire(event: UnmappedEvent): Awaitable<void>;
  onExternalAddressChange(event: ExternalAddressChangeEvent): Awaitable<void>;
}

export type HookName = keyof Hooks;

/** The compiler keeps this list complete: every hook has exactly one kind. */
export const HOOK_KINDS = {
  beforeMap: 'sequential',
  beforeUnmap: 'sequential',
  applyRule: 'exclusive',
  onMapped: 'parallel',
  onUnmapped: 'parallel',
  onExpire: 'parallel',
  onExternalAddressChange: 'parallel',
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
  /** Set by firewall backend plugins; the core uses it for list() and reconciliation. */
  readonly backend?: FirewallBackend;
  provision?(): Promise<void> | void;
  cleanup?(): Promise<void> | void;
}

/**
 * What a config file lists: the result of a plugin factory call such as `iptables({...})`.
 * The host validates `options` with `optionsSchema` (errors name the file and key path), then
 * builds the plugin in a child tsyringe container where PLUGIN_OPTIONS holds the parsed options.
 */
export interface PluginSpec<Options = unknown> {
  readonly name: string;
  /** Marks firewall backends, so that `--backend`/`--dry-run` can replace them. */
  readonly kind?: 'backend';
  readonly options: unknown;
  readonly optionsSchema?: z.ZodType<Options>;
  create(container: DependencyContainer): Plugin;
}

export function isPluginSpec(value: unknown): value is PluginSpec {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as PluginSpec).name === 'string' &&
    typeof (value as PluginSpec).create === 'function'
  );
}

// ---------------------------------------------------------------------------------------------
// The firewall backend contract (what a third-party backend author implements)
// ---------------------------------------------------------------------------------------------

export interface BackendCapabilities {
  /** The rule dialect, e.g. 'iptables' or 'nftables'. */
  readonly dialect: string;
  /** Can restrict a mapping to one remote host. */
  readonly remoteHost: boolean;
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
   * or none of it (and the previous rules are intact).
   */
  apply(changes: ChangeSet): Promise<void>;
  /** Reads back the mappings whose rules upnpd installed (for reconciliation and tests). */
  list(): Promise<RuleSpec[]>;
  /** Removes every rule, chain and jump the backend created, and nothing else. Idempotent. */
  shutdown(): Promise<void>;
}
