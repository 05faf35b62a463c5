import type { ChangeSet, MappedEvent, MappingRequest, PolicyContext, PortMapping, RuleSpec, UnmappedEvent } from './types.js';

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
  /** Notifications, after the change committed; never fail the change. */
  onMapped(event: MappedEvent): void;
  onUnmapped(event: UnmappedEvent): void;
  onExpire(event: UnmappedEvent): void;
}

/** The firewall as the lifecycle uses it: apply a change set atomically, read back what is installed. */
export interface MappingFirewall {
  apply(changes: ChangeSet): Promise<void>;
  list(): Promise<RuleSpec[]>;
}
