import type { Clock } from '../clock.js';
import { BackendError, UpnpError, UpnpErrorCode, messageOf } from '../errors.js';
import type { Logger } from '../logger.js';
import type { PluginDriver } from '../plugins/driver.js';
import type { MappedEvent, MappingView, PolicyContext, UnmappedEvent } from '../plugins/types.js';
import { ExpiryQueue } from './expiry-queue.js';
import type { RestoredMapping } from './state-file.js';
import { MappingDraft, MappingTable } from './table.js';
import { isEmptyChangeSet, keyString, portMappingOf, ruleOf, type MappingKey, type MappingRequest, type PortMapping, type Requester, type RuleSpec } from './types.js';

export interface LeasePolicy {
  /** Lease given when a client asks for 0 ("permanent") and permanent leases are not allowed. */
  readonly defaultSeconds: number;
  /** Longer leases are cut to this. */
  readonly maxSeconds: number;
  /** Whether a client asking for lease 0 gets a mapping that never expires. */
  readonly allowPermanent: boolean;
}

/** What a restore did: mappings reinstalled, dropped by a policy, and refused by the backend. */
export interface RestoreOutcome {
  readonly restored: number;
  readonly refused: number;
  readonly failed: number;
}

export interface AddAnyOptions {
  /** Ports AddAnyPortMapping may pick from, inclusive. */
  readonly portRange: readonly [number, number];
  /** How many candidate ports to try before answering 728 NoPortMapsAvailable. */
  readonly maxAttempts: number;
}

type Notification =
  | { readonly hook: 'onMapped'; readonly event: MappedEvent }
  | { readonly hook: 'onUnmapped' | 'onExpire'; readonly event: UnmappedEvent };

interface Outcome<T> {
  readonly result: T;
  readonly notifications: readonly Notification[];
}

interface QueuedChange {
  run(draft: MappingDraft): Promise<Outcome<unknown>>;
  resolve(value: unknown): void;
  reject(err: unknown): void;
}

/** Changes applied in one backend transaction at most (requests arriving together are coalesced). */
const MAX_BATCH = 512;

/** When an expiry pass failed (backend error), the next try waits this long. */
const EXPIRY_RETRY_MS = 30_000;

/** Ports an AddAnyPortMapping may be moved to when the asked one is not available. */
const PORT_REFUSALS = new Set<number>([
  UpnpErrorCode.ConflictInMappingEntry,
  UpnpErrorCode.ConflictWithOtherMechanisms,
  UpnpErrorCode.NotAuthorized,
]);

/**
 * The mapping lifecycle: the single source of truth for port mappings, from which the firewall
 * state is derived. Every change goes through one queue: changes that arrive together are run
 * one after another against a draft of the table (policies see the effect of earlier ones), then
 * the backend applies their combined change set in one transaction, then the table commits. If
 * the backend fails, the table is unchanged; a failed batch is retried one change at a time so
 * that one bad request does not fail the others.
 */
export class MappingService implements MappingView {
  private readonly table = new MappingTable();
  private readonly expiries = new ExpiryQueue();
  private queue: QueuedChange[] = [];
  private draining = false;
  private expiryTimer: unknown = undefined;
  private closed = false;
  private expiryFailed = false;
  private readonly changeListeners = new Set<() => void>();

  constructor(
    private readonly driver: PluginDriver,
    private readonly clock: Clock,
    private lease: LeasePolicy,
    private readonly logger: Logger,
  ) {}

  /** Applies to leases granted from now on (SIGHUP reload). */
  setLeasePolicy(lease: LeasePolicy): void {
    this.lease = lease;
  }

  get size(): number {
    return this.table.size;
  }

  get(key: MappingKey): PortMapping | undefined {
    return this.table.get(key);
  }

  /** The mapping at a GetGenericPortMappingEntry index, in O(1). */
  at(index: number): PortMapping | undefined {
    return this.table.at(index);
  }

  values(): IterableIterator<PortMapping> {
    return this.table.values();
  }

  /**
   * Calls `listener` after every committed change of the table (for front-ends that publish state,
   * e.g. GENA's PortMappingNumberOfEntries). Returns a function that unsubscribes.
   */
  onChange(listener: () => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  /** Milliseconds left on a lease, null for a permanent one (what the state file keeps). */
  leaseLeftMs(mapping: PortMapping): number | null {
    return mapping.expiresAt === null ? null : Math.max(0, mapping.expiresAt - this.clock.now());
  }

  /** Seconds left on a lease, 0 for a permanent one (as UPnP reports it). */
  remainingSeconds(mapping: PortMapping): number {
    if (mapping.expiresAt === null) return 0;
    return Math.max(1, Math.ceil((mapping.expiresAt - this.clock.now()) / 1000));
  }

  /** Adds a mapping, or replaces the one under the same key when the same internal client holds it (a renewal). */
  add(request: MappingRequest, requester: Requester): Promise<PortMapping> {
    return this.enqueue(async (draft) => {
      const { mapping, previous } = await this.stageAdd(draft, request, requester);
      return { result: mapping, notifications: [{ hook: 'onMapped', event: { mapping, previous, requester } }] };
    });
  }

  /**
   * AddAnyPortMapping: the asked port if it is free (or already this client's), else another
   * permitted free port. When this client already maps the same internal port and protocol, that
   * mapping is renewed and returned.
   */
  addAny(request: MappingRequest, requester: Requester, options: AddAnyOptions): Promise<PortMapping> {
    return this.enqueue(async (draft) => {
      const held = [...draft.values()].find(
        (m) =>
          m.internalClient === request.internalClient &&
          m.internalPort === request.internalPort &&
          m.protocol === request.protocol &&
          m.remoteHost === request.remoteHost,
      );
      const candidates = candidatePorts(held?.externalPort ?? request.externalPort, options.portRange);
      let attempts = 0;
      for (const externalPort of candidates) {
        if (attempts >= options.maxAttempts) break;
        const existing = draft.get({ ...request, externalPort });
        if (existing && existing.internalClient !== request.internalClient) continue;
        attempts++;
        const savepoint = draft.savepoint();
        try {
          const { mapping, previous } = await this.stageAdd(draft, { ...request, externalPort }, requester);
          return { result: mapping, notifications: [{ hook: 'onMapped', event: { mapping, previous, requester } }] };
        } catch (err) {
          draft.rollbackTo(savepoint);
          if (!(err instanceof Error) || !isPortRefusal(err)) throw err;
        }
      }
      throw new UpnpError(UpnpErrorCode.NoPortMapsAvailable);
    });
  }

  /**
   * Reinstalls mappings kept across a restart, in one transaction. Each is asked of the policies
   * again, as if its creator renewed it: one a policy now refuses (added to the config since), or
   * whose policy check fails, is dropped and counted. Leases keep the time they had left, cut to
   * the lease policy's maximum. When the backend refuses the transaction (one bad mapping, a busy
   * firewall at boot), each mapping is tried in a transaction of its own, and those the backend
   * still refuses are counted as failed: a restore never stops the daemon from starting.
   */
  async restore(mappings: readonly RestoredMapping[]): Promise<RestoreOutcome> {
    try {
      return await this.enqueue((draft) => this.stageRestore(draft, mappings));
    } catch (err) {
      if (mappings.length <= 1) {
        this.logger.error({ err }, `could not restore ${mappings.map(keyString).join(', ')}: ${messageOf(err)}`);
        return { restored: 0, refused: 0, failed: mappings.length };
      }
      this.logger.warn({ err }, `restoring ${mappings.length} mappings in one transaction failed (${messageOf(err)}); trying each on its own`);
    }
    const outcomes = await Promise.all(mappings.map((m) => this.restore([m])));
    return outcomes.reduce((sum, o) => ({ restored: sum.restored + o.restored, refused: sum.refused + o.refused, failed: sum.failed + o.failed }));
  }

  private async stageRestore(draft: MappingDraft, mappings: readonly RestoredMapping[]): Promise<Outcome<RestoreOutcome>> {
    const notifications: Notification[] = [];
    let refused = 0;
    for (const { remainingMs, createdBy, ...request } of mappings) {
      const savepoint = draft.savepoint();
      try {
        const adjusted = await this.driver.hookSeq('beforeMap', request, this.policyContext(draft, createdBy, draft.get(request)));
        const existing = draft.get(adjusted);
        if (existing) throw new UpnpError(UpnpErrorCode.ConflictInMappingEntry, `${adjusted.protocol} ${adjusted.externalPort} is restored twice`);
        const mapping = portMappingOf(adjusted, this.restoredExpiry(remainingMs), createdBy);
        draft.put(mapping);
        notifications.push({ hook: 'onMapped', event: { mapping, previous: undefined, requester: createdBy, restored: true } });
      } catch (err) {
        draft.rollbackTo(savepoint);
        refused += 1;
        const why = isUpnpRefusal(err) ? 'refused by policy' : 'a policy failed';
        this.logger.warn({ err, mapping: keyString(request), internalClient: request.internalClient }, `not restoring ${keyString(request)} (${why}): ${messageOf(err)}`);
      }
    }
    return { result: { restored: notifications.length, refused, failed: 0 }, notifications };
  }

  /** Resolves once every change queued so far has committed or failed (at shutdown, before the last save). */
  async settled(): Promise<void> {
    while (this.draining || this.queue.length > 0) await new Promise((resolve) => setImmediate(resolve));
  }

  /** Deletes the mapping under a key; 714 when there is none. Policies may veto (secure mode). */
  delete(key: MappingKey, requester: Requester): Promise<PortMapping> {
    return this.enqueue(async (draft) => {
      const existing = draft.get(key);
      if (!existing) throw new UpnpError(UpnpErrorCode.NoSuchEntryInArray);
      await this.driver.hookSeq('beforeUnmap', existing, this.policyContext(draft, requester, existing));
      draft.remove(key);
      return { result: existing, notifications: [{ hook: 'onUnmapped', event: { mapping: existing, reason: 'deleted', requester } }] };
    });
  }

  /**
   * Deletes, in one transaction, every mapping that matches and that policies let this requester
   * delete; mappings a policy refuses (with a UPnP error) are skipped. Returns what was deleted.
   */
  deleteMatching(matches: (m: PortMapping) => boolean, requester: Requester): Promise<PortMapping[]> {
    return this.enqueue(async (draft) => {
      const deleted: PortMapping[] = [];
      for (const mapping of [...draft.values()].filter(matches)) {
        try {
          await this.driver.hookSeq('beforeUnmap', mapping, this.policyContext(draft, requester, mapping));
        } catch (err) {
          if (isUpnpRefusal(err)) continue;
          throw err;
        }
        draft.remove(mapping);
        deleted.push(mapping);
      }
      return {
        result: deleted,
        notifications: deleted.map((mapping) => ({ hook: 'onUnmapped' as const, event: { mapping, reason: 'deleted' as const, requester } })),
      };
    });
  }

  /** Removes every mapping and its rules (at shutdown). No policy is asked. */
  removeAll(): Promise<number> {
    return this.enqueue(async (draft) => {
      const all = [...draft.values()];
      for (const mapping of all) draft.remove(mapping);
      return {
        result: all.length,
        notifications: all.map((mapping) => ({ hook: 'onUnmapped' as const, event: { mapping, reason: 'shutdown' as const, requester: null } })),
      };
    });
  }

  /** Stops expiry and refuses further changes. Queued changes still finish. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.expiryTimer !== undefined) this.clock.clearTimer(this.expiryTimer);
    this.expiryTimer = undefined;
    await this.settled();
  }

  /** Runs the expiry pass now (the timer calls this; tests may too). */
  expireDue(): Promise<number> {
    return this.enqueue(async (draft) => {
      const now = this.clock.now();
      const expired = [...draft.values()].filter((m) => m.expiresAt !== null && m.expiresAt <= now);
      for (const mapping of expired) draft.remove(mapping);
      return {
        result: expired.length,
        notifications: expired.flatMap((mapping) => {
          const event: UnmappedEvent = { mapping, reason: 'expired', requester: null };
          return [
            { hook: 'onExpire' as const, event },
            { hook: 'onUnmapped' as const, event },
          ];
        }),
      };
    });
  }

  private async stageAdd(
    draft: MappingDraft,
    request: MappingRequest,
    requester: Requester,
  ): Promise<{ mapping: PortMapping; previous: PortMapping | undefined }> {
    const asked = draft.get(request);
    const adjusted = await this.driver.hookSeq('beforeMap', request, this.policyContext(draft, requester, asked));
    const existing = draft.get(adjusted);
    if (existing && existing.internalClient !== adjusted.internalClient) {
      throw new UpnpError(UpnpErrorCode.ConflictInMappingEntry, `${adjusted.protocol} ${adjusted.externalPort} is mapped to another client`);
    }
    const mapping = portMappingOf(adjusted, this.expiryFor(adjusted.leaseSeconds), requester);
    draft.put(mapping);
    return { mapping, previous: existing };
  }

  private expiryFor(leaseSeconds: number): number | null {
    if (leaseSeconds === 0 && this.lease.allowPermanent) return null;
    const seconds = leaseSeconds === 0 ? this.lease.defaultSeconds : Math.min(leaseSeconds, this.lease.maxSeconds);
    return this.clock.now() + seconds * 1000;
  }

  private restoredExpiry(remainingMs: number | null): number | null {
    if (remainingMs === null) return this.expiryFor(0);
    return this.clock.now() + Math.min(remainingMs, this.lease.maxSeconds * 1000);
  }

  private policyContext(draft: MappingDraft, requester: Requester, existing: PortMapping | undefined): PolicyContext {
    return { requester, existing, mappings: draft };
  }

  private enqueue<T>(run: (draft: MappingDraft) => Promise<Outcome<T>>): Promise<T> {
    if (this.closed) return Promise.reject(new UpnpError(UpnpErrorCode.ActionFailed, 'the daemon is shutting down'));
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ run, resolve: resolve as (v: unknown) => void, reject });
      if (!this.draining) {
        this.draining = true;
        // Start on the next turn so that requests arriving together share one transaction.
        setImmediate(() => void this.drain());
      }
    });
  }

  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, MAX_BATCH);
        const applied = await this.runBatch(batch);
        if (!applied) for (const change of batch) await this.runBatch([change]);
      }
    } finally {
      this.draining = false;
    }
  }

  /**
   * Runs changes against a draft, applies the combined change set, commits. Returns false when the
   * backend refused a batch of several changes, which the caller then retries one by one.
   */
  private async runBatch(batch: QueuedChange[], repaired = false): Promise<boolean> {
    const draft = new MappingDraft(this.table);
    const outcomes: Array<{ change: QueuedChange; outcome?: Outcome<unknown>; error?: unknown }> = [];
    for (const change of batch) {
      const savepoint = draft.savepoint();
      try {
        outcomes.push({ change, outcome: await change.run(draft) });
      } catch (error) {
        draft.rollbackTo(savepoint);
        outcomes.push({ change, error });
      }
    }
    const changes = draft.changeSet();
    if (!isEmptyChangeSet(changes)) {
      try {
        await this.driver.applyRule(changes);
      } catch (err) {
        if (batch.length > 1) return false;
        if (!repaired && (await this.repairFirewall())) return this.runBatch(batch, true);
        this.logger.error({ err, changes }, `firewall backend failed: ${messageOf(err)}`);
        const failure = new BackendError(`the firewall backend could not apply the change: ${messageOf(err)}`, { cause: err });
        for (const { change } of outcomes) change.reject(outcomes.find((o) => o.change === change)!.error ?? failure);
        return true;
      }
    }
    const changed = draft.hasChanges();
    draft.commit();
    for (const { outcome } of outcomes) {
      for (const n of outcome?.notifications ?? []) {
        if (n.hook === 'onMapped' && n.event.mapping.expiresAt !== null) this.expiries.push(n.event.mapping.expiresAt, n.event.mapping);
      }
    }
    this.scheduleExpiry();
    if (changed) for (const listener of this.changeListeners) listener();
    for (const { change, outcome, error } of outcomes) {
      if (!outcome) {
        change.reject(error);
        continue;
      }
      change.resolve(outcome.result);
      for (const n of outcome.notifications) void this.driver.hookParallel(n.hook, n.event as never);
    }
    return true;
  }

  /**
   * After a failed change: compares what the backend has installed with the table, and when they
   * differ (an admin's firewall reload flushed our rules, someone deleted one by hand) applies the
   * difference so the firewall matches the table again. Returns whether anything was repaired.
   */
  private async repairFirewall(): Promise<boolean> {
    const backend = this.driver.backend;
    if (!backend) return false;
    try {
      const target = (r: RuleSpec) => `${keyString(r)}>${r.internalClient}:${r.internalPort}`;
      const installed = await backend.list();
      const desired = [...this.table.values()].filter((m) => m.enabled).map(ruleOf);
      const installedTargets = new Set(installed.map(target));
      const desiredTargets = new Set(desired.map(target));
      const repair = {
        remove: installed.filter((r) => !desiredTargets.has(target(r))),
        add: desired.filter((r) => !installedTargets.has(target(r))),
      };
      if (isEmptyChangeSet(repair)) return false;
      await this.driver.applyRule(repair);
      this.logger.warn(
        { restored: repair.add.length, removed: repair.remove.length },
        `the firewall did not match the mapping table (rules flushed or changed outside upnpd): restored ${repair.add.length}, removed ${repair.remove.length}`,
      );
      return true;
    } catch (err) {
      this.logger.error({ err }, `could not repair the firewall rules: ${messageOf(err)}`);
      return false;
    }
  }

  private scheduleExpiry(): void {
    if (this.closed) return;
    if (this.expiryTimer !== undefined) this.clock.clearTimer(this.expiryTimer);
    this.expiryTimer = undefined;
    this.expiries.dropWhile((at, key) => this.table.get(key)?.expiresAt !== at);
    const next = this.expiries.peekTime();
    if (next === undefined) return;
    const delay = Math.max(next - this.clock.now(), this.expiryFailed ? EXPIRY_RETRY_MS : 0);
    this.expiryTimer = this.clock.setTimer(() => {
      this.expiryTimer = undefined;
      this.expireDue().then(
        () => (this.expiryFailed = false),
        (err) => {
          this.expiryFailed = true;
          this.logger.error({ err }, `lease expiry failed, will retry: ${messageOf(err)}`);
          this.scheduleExpiry();
        },
      );
    }, delay);
  }
}

function* candidatePorts(first: number, [low, high]: readonly [number, number]): Generator<number> {
  if (first >= 1 && first <= 65535) yield first;
  const start = Math.min(Math.max(first + 1, low), high);
  for (let p = start; p <= high; p++) if (p !== first) yield p;
  for (let p = low; p < start; p++) if (p !== first) yield p;
}

function isUpnpRefusal(err: unknown): boolean {
  let e: unknown = err;
  for (let depth = 0; e && depth < 5; depth++) {
    if (e instanceof UpnpError) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

function isPortRefusal(err: Error): boolean {
  let e: unknown = err;
  for (let depth = 0; e && depth < 5; depth++) {
    if (e instanceof UpnpError) return PORT_REFUSALS.has(e.upnpCode);
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}
