import type { PinholeEvent, PinholePolicyContext, PinholeRequest, PinholeRule } from './pinhole.js';
import type { ChangeSet, IntegrityReport, MappedEvent, MappingRequest, PolicyContext, PortMapping, RepairedEvent, RuleSpec, UnmappedEvent } from './types.js';

/**
 * What the mapping lifecycle asks of the outside world. The plugin driver implements it; the
 * lifecycle does not know plugins exist.
 */
export interface MappingHooks {
  /**
   * Policies: may veto (throw) or adjust (return a changed request). May be asked more than once
   * for one request (a batch the firewall refused is retried one change at a time), so a policy
   * must decide from its arguments alone and keep no count of its own.
   */
  beforeMap(request: MappingRequest, context: PolicyContext): Promise<MappingRequest>;
  /** May veto (throw) a client's removal of a mapping. The same "may be asked again" applies. */
  beforeUnmap(mapping: PortMapping, context: PolicyContext): Promise<void>;
  /** Policies for IPv6 pinholes: may veto (throw; a UpnpError keeps its code) or adjust. The same "may be asked again" applies. */
  beforePinhole(request: PinholeRequest, context: PinholePolicyContext): Promise<PinholeRequest>;
  /** A pinhole was opened, renewed, restored or closed (after the change committed). */
  onPinhole(event: PinholeEvent): void;
  /** Notifications, after the change committed; never fail the change. */
  onMapped(event: MappedEvent): void;
  onUnmapped(event: UnmappedEvent): void;
  onExpire(event: UnmappedEvent): void;
  /** The reconciler put back rules the firewall had lost. */
  onRepaired(event: RepairedEvent): void;
}

/**
 * The firewall as the lifecycle uses it: apply a change set atomically, read back what is
 * installed. The optional parts serve reconciliation (core/mapping/reconciler.ts, which falls
 * back on `list()`, `init()` and `apply()` where they are absent).
 */
export interface MappingFirewall {
  apply(changes: ChangeSet): Promise<void>;
  list(): Promise<RuleSpec[]>;
  /** Recreates the backend's own tables or chains (empty). */
  init?(): Promise<void>;
  /** A cheap check that what the backend installed for `expected` is intact. */
  check?(expected: readonly RuleSpec[], pinholes: readonly PinholeRule[]): Promise<IntegrityReport>;
  /** Recreates everything (tables, chains, jumps, every rule of `rules` and `pinholes`) in one transaction. */
  resync?(rules: readonly RuleSpec[], pinholes: readonly PinholeRule[]): Promise<void>;
  /**
   * IPv6 pinholes, when the backend has them: change sets may then carry `pinholes`, and this
   * reads a pinhole's packet counter from the kernel. Absent: the core refuses pinholes (703).
   */
  pinholes?: { packets(rule: PinholeRule): Promise<number> };
  /** Calls `onChange` when the kernel reports a change that may have touched the backend's rules; returns a stop function. */
  watch?(onChange: () => void): () => void;
}
