import type { Clock } from '../clock.js';
import { BackendError, UpnpError, UpnpErrorCode, messageOf, upnpErrorIn } from '../errors.js';
import type { Logger } from '../logger.js';
import { ExpiryQueue, hasLease, type LeasedMapping } from './expiry-queue.js';
import type { MappingFirewall, MappingHooks } from './hooks.js';
import type { MappingJournal, WriteFailurePolicy } from './journal.js';
import {
  MAX_PINHOLE_ID,
  pinholeOf,
  pinholeRuleOf,
  pinholeRuleString,
  samePinholeRule,
  type Pinhole,
  type PinholeEvent,
  type PinholeRequest,
  type PinholeView,
} from './pinhole.js';
import { Reconciler } from './reconciler.js';
import type { LeaseHolder, RestoredMapping } from './state-file.js';
import { MappingDraft, MappingTable } from './table.js';
import {
  isEmptyChangeSet,
  keyString,
  portMappingOf,
  protocolOf,
  ruleOf,
  sameRule,
  type ChangeSet,
  type MappedEvent,
  type MappingKey,
  type MappingRequest,
  type MappingView,
  type PolicyContext,
  type PortMapping,
  type Protocol,
  type Requester,
  type UnmappedEvent,
} from './types.js';

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
  /**
   * Skip every external port that holds a mapping, the requester's own included, and whatever its
   * remote host (NAT-PMP/PCP: a mapping is known by its internal port, so another of the client's
   * mappings must not be replaced). Without it, UPnP's rule: the requester may take over its own.
   */
  readonly freePortsOnly?: boolean;
}

type Notification =
  | { readonly hook: 'onMapped'; readonly event: MappedEvent }
  | { readonly hook: 'onUnmapped' | 'onExpire'; readonly event: UnmappedEvent }
  | { readonly hook: 'onPinhole'; readonly event: PinholeEvent };

/**
 * Who may open and manage pinholes to an address: a LAN host, to any of its own IPv6 addresses
 * (core/net/lan-hosts.ts answers from the gateway's neighbour table). Returns why not, or undefined.
 */
export type PinholeTargetCheck = (internalClient: string, requester: string) => Promise<string | undefined>;

/** A restored pinhole: the lease time it has left when upnpd starts. */
export interface RestoredPinhole extends PinholeRequest {
  readonly id: number;
  readonly remainingMs: number;
  readonly createdBy: Requester;
}

interface Outcome<T> {
  readonly result: T;
  readonly notifications: readonly Notification[];
}

interface QueuedChange {
  run(draft: MappingDraft): Outcome<unknown> | Promise<Outcome<unknown>>;
  resolve(value: unknown): void;
  reject(err: unknown): void;
}

/** Work that runs alone in the queue, between batches (a firewall repair). */
interface QueuedTask {
  readonly task: () => Promise<unknown>;
  resolve(value: unknown): void;
  reject(err: unknown): void;
}

/** One change of a batch after staging: its outcome, or the error that refused it. */
type StagedChange = { readonly change: QueuedChange } & ({ readonly outcome: Outcome<unknown> } | { readonly error: unknown });

/** Changes applied in one backend transaction at most (requests arriving together are coalesced). */
const MAX_BATCH = 512;

/** Stale expiry entries allowed beyond the table's size before the queue is rebuilt. */
const STALE_EXPIRIES_SLACK = 1024;

/** When an expiry pass failed (backend error), the next try waits this long. */
const EXPIRY_RETRY_MS = 30_000;

/** While the journal cannot be written, it is tried again this often even when no change comes. */
const JOURNAL_RETRY_MS = 5_000;

/** How often the wall clock is compared with the monotonic one (a step makes the journal write the state whole). */
const WALL_CLOCK_CHECK_MS = 10_000;

/** Ports an AddAnyPortMapping may be moved to when the asked one is not available. */
const PORT_REFUSALS = new Set<number>([UpnpErrorCode.ConflictInMappingEntry, UpnpErrorCode.ConflictWithOtherMechanisms, UpnpErrorCode.NotAuthorized]);

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
  private queue: Array<QueuedChange | QueuedTask> = [];
  /** The running drain of the queue, from the moment a change is queued until the queue is empty. */
  private draining: Promise<void> | undefined;
  private expiryTimer: unknown = undefined;
  /** When `expiryTimer` fires (monotonic ms). */
  private expiryTimerAt = 0;
  private closed = false;
  private expiryFailed = false;
  private readonly changeListeners = new Set<() => void>();
  private journal: MappingJournal | undefined;
  private onWriteFailure: WriteFailurePolicy = 'refuse';
  private journalRetryTimer: unknown = undefined;
  private wallClockTimer: unknown = undefined;
  /** Set while a batch is staged with a journal that cannot be written, under the 'refuse' policy. */
  private refusingNewMappings = false;
  private isOwnEndpoint: (address: string, port: number) => boolean = () => false;
  /** Without a neighbour table: a client opens pinholes only to the address it spoke from. */
  private pinholeTargetRefused: PinholeTargetCheck = (internalClient, requester) =>
    Promise.resolve(internalClient === requester ? undefined : `${requester} may open pinholes only to its own address`);
  /** The last UniqueID given out: the next is the lowest free one after it (IDs are not reused at once). */
  private lastPinholeId = 0;
  /** Keeps the firewall in step with the table; repairs run through this queue. The daemon starts its periodic checks. */
  readonly reconciler: Reconciler;

  constructor(
    private readonly hooks: MappingHooks,
    private readonly firewall: MappingFirewall,
    private readonly clock: Clock,
    private lease: LeasePolicy,
    private readonly logger: Logger,
  ) {
    this.reconciler = new Reconciler(
      firewall,
      {
        expectedRules: () => this.table.enabledRules(),
        expectedPinholes: () => this.table.pinholeRules(),
        exclusive: (task) => this.exclusive(task),
        busy: () => this.draining !== undefined,
        repaired: (event) => this.hooks.onRepaired(event),
      },
      clock,
      logger,
    );
  }

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

  heldBy(address: string): number {
    return this.table.heldBy(address);
  }

  ofClient(internalClient: string): Iterable<PortMapping> {
    return this.table.ofClient(internalClient);
  }

  /** The table as plugins may see it: read only, without the lifecycle's methods. */
  readonly view: MappingView = readOnlyView(this.table);

  /**
   * Calls `listener` after every committed change of the table (for front-ends that publish state,
   * e.g. GENA's PortMappingNumberOfEntries). Returns a function that unsubscribes.
   */
  onChange(listener: () => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  /**
   * From now on, every batch that changes the table is recorded in `journal` before it is answered.
   * When the journal cannot be written, `onWriteFailure` says what happens to new mappings:
   * 'refuse' answers them 501 (nothing of them stays in the firewall), 'best-effort' grants them
   * in memory. Removals, expiries and renewals of a mapping's same target proceed either way.
   */
  persistTo(journal: MappingJournal, onWriteFailure: WriteFailurePolicy): void {
    this.journal = journal;
    this.onWriteFailure = onWriteFailure;
    // Already failing (the state could not be written at start): tried again without a request too.
    if (journal.failing) this.scheduleJournalRetry();
  }

  /**
   * Refuses (606) any mapping, live or restored, whose target is one of the daemon's own listening
   * endpoints (its HTTP server): forwarding the WAN to it would expose the control URL.
   */
  protectOwnEndpoints(isOwnEndpoint: (address: string, port: number) => boolean): void {
    this.isOwnEndpoint = isOwnEndpoint;
  }

  /** How pinhole targets are checked from now on (the daemon passes the LAN's neighbour table). */
  checkPinholeTargets(check: PinholeTargetCheck): void {
    this.pinholeTargetRefused = check;
  }

  // -------------------------------------------------------------------------------------------
  // IPv6 pinholes: the same queue, transactions, journal and expiry as mappings
  // -------------------------------------------------------------------------------------------

  /** Whether the firewall backend can open pinholes (WANIPv6FirewallControl's InboundPinholeAllowed). */
  get pinholesSupported(): boolean {
    return this.firewall.pinholes !== undefined;
  }

  /** The pinholes, read only, in the order they were opened. */
  readonly pinholes: PinholeView = readOnlyPinholes(this.table.pinholes);

  /**
   * Opens a pinhole for `requester` to one of its own IPv6 addresses, or renews the identical one
   * it already holds (same rule: the same UniqueID is answered). Policies (beforePinhole) may veto.
   */
  openPinhole(request: PinholeRequest, requester: Requester): Promise<Pinhole> {
    return this.enqueue(async (draft) => {
      this.requirePinholes();
      await this.requirePinholeTarget(request.internalClient, requester);
      const held = draft.pinholeWithRule(request);
      if (held) checkOwner(held, request);
      const adjusted = await this.hooks.beforePinhole(request, { requester, existing: held, pinholes: draft.pinholes, mappings: draft });
      if (!samePinholeRule(adjusted, request)) await this.requirePinholeTarget(adjusted.internalClient, requester);
      const id = held?.id ?? draft.freePinholeId(this.lastPinholeId);
      if (id === undefined) throw new UpnpError(UpnpErrorCode.PinholeSpaceExhausted, 'every UniqueID is in use');
      if (!held) this.lastPinholeId = id;
      // A renewal without a nonce (UPnP) keeps the PCP owner's.
      const owned = held?.ownerNonce !== undefined && adjusted.ownerNonce === undefined ? { ...adjusted, ownerNonce: held.ownerNonce } : adjusted;
      const pinhole = pinholeOf(owned, id, this.pinholeExpiry(adjusted.leaseSeconds), held?.createdBy ?? requester);
      draft.putPinhole(pinhole);
      return { result: pinhole, notifications: [{ hook: 'onPinhole', event: { pinhole, requester, change: held ? 'renewed' : 'opened' } }] };
    });
  }

  /** UpdatePinhole: a new lease for a pinhole the requester's host owns. 704 when there is none. */
  updatePinhole(id: number, leaseSeconds: number, requester: Requester): Promise<Pinhole> {
    return this.enqueue(async (draft) => {
      const existing = await this.ownedPinhole(draft.pinholes, id, requester);
      const pinhole = pinholeOf({ ...existing, leaseSeconds }, id, this.pinholeExpiry(leaseSeconds), existing.createdBy);
      draft.putPinhole(pinhole);
      return { result: pinhole, notifications: [{ hook: 'onPinhole', event: { pinhole, requester, change: 'renewed' } }] };
    });
  }

  /** DeletePinhole: closes a pinhole the requester's host owns. 704 when there is none. */
  closePinhole(id: number, requester: Requester): Promise<Pinhole> {
    return this.enqueue(async (draft) => {
      const pinhole = await this.ownedPinhole(draft.pinholes, id, requester);
      draft.removePinhole(id);
      return { result: pinhole, notifications: [{ hook: 'onPinhole', event: { pinhole, requester, change: 'deleted' } }] };
    });
  }

  /** GetPinholePackets: the packets the kernel let through a pinhole the requester's host owns. */
  async pinholePackets(id: number, requester: Requester): Promise<number> {
    const pinhole = await this.ownedPinhole(this.pinholes, id, requester);
    if (!this.firewall.pinholes) throw new UpnpError(UpnpErrorCode.InboundPinholeNotAllowed, 'the firewall backend has no IPv6 pinholes');
    return this.firewall.pinholes.packets(pinholeRuleOf(pinhole));
  }

  /** Closes, in one transaction and without asking policies, the pinholes that match (an admin's purge, shutdown). */
  closePinholesWhere(matches: (p: Pinhole) => boolean, change: 'deleted' | 'shutdown', requester: Requester | null): Promise<Pinhole[]> {
    return this.enqueue((draft) => {
      const closed = [...draft.pinholes.values()].filter(matches);
      for (const p of closed) draft.removePinhole(p.id);
      return { result: closed, notifications: closed.map((pinhole) => ({ hook: 'onPinhole' as const, event: { pinhole, requester, change } })) };
    });
  }

  /** The last UniqueID given out (0: none yet), which the state file keeps across a restart. */
  get lastGivenPinholeId(): number {
    return this.lastPinholeId;
  }

  /** At start, before restorePinholes: the last UniqueID given out before the stop, so that the next pinhole does not take it (nor one before it). */
  resumePinholeIds(lastId: number): void {
    if (Number.isInteger(lastId) && lastId >= 1 && lastId <= MAX_PINHOLE_ID) this.lastPinholeId = lastId;
  }

  /** Reinstalls pinholes kept across a restart (in one transaction), asking the policies again; returns how many were restored. */
  restorePinholes(pinholes: readonly RestoredPinhole[]): Promise<number> {
    if (pinholes.length === 0 || !this.pinholesSupported) return Promise.resolve(0);
    return this.enqueue(async (draft) => {
      const notifications: Notification[] = [];
      for (const { id, remainingMs, createdBy, ...request } of pinholes) {
        const savepoint = draft.savepoint();
        try {
          if (draft.pinholes.get(id)) throw new Error(`UniqueID ${id} is restored twice`);
          const adjusted = await this.hooks.beforePinhole(request, { requester: createdBy, existing: undefined, pinholes: draft.pinholes, mappings: draft });
          const pinhole = pinholeOf(adjusted, id, this.clock.now() + Math.min(remainingMs, this.lease.maxSeconds * 1000), createdBy);
          draft.putPinhole(pinhole);
          this.lastPinholeId = Math.max(this.lastPinholeId, id);
          notifications.push({ hook: 'onPinhole', event: { pinhole, requester: createdBy, change: 'restored' } });
        } catch (err) {
          draft.rollbackTo(savepoint);
          this.logger.warn({ err, pinhole: id }, `not restoring pinhole ${id} (${pinholeRuleString(request)}): ${messageOf(err)}`);
        }
      }
      return { result: notifications.length, notifications };
    });
  }

  private requirePinholes(): void {
    if (!this.firewall.pinholes) throw new UpnpError(UpnpErrorCode.InboundPinholeNotAllowed, 'the firewall backend has no IPv6 pinholes');
  }

  private async requirePinholeTarget(internalClient: string, requester: Requester): Promise<void> {
    const why = await this.pinholeTargetRefused(internalClient, requester.address);
    if (why !== undefined) throw new UpnpError(UpnpErrorCode.NotAuthorized, why);
  }

  /** The pinhole under `id` if the requester's host owns it (its internal client is one of that host's addresses): 704, else 606. */
  private async ownedPinhole(pinholes: PinholeView, id: number, requester: Requester): Promise<Pinhole> {
    const pinhole = pinholes.get(id);
    if (!pinhole) throw new UpnpError(UpnpErrorCode.NoSuchEntry, `no pinhole has UniqueID ${id}`);
    await this.requirePinholeTarget(pinhole.internalClient, requester);
    return pinhole;
  }

  private pinholeExpiry(leaseSeconds: number): number {
    return this.clock.now() + Math.min(leaseSeconds, this.lease.maxSeconds) * 1000;
  }

  /** Milliseconds left on a lease, null for a permanent one (what the state file keeps). */
  leaseLeftMs(entry: LeaseHolder): number | null {
    return entry.expiresAt === null ? null : Math.max(0, entry.expiresAt - this.clock.now());
  }

  /** Seconds left on a lease, 0 for a permanent one (as UPnP reports it). */
  remainingSeconds(entry: LeaseHolder): number {
    if (entry.expiresAt === null) return 0;
    return Math.max(1, Math.ceil((entry.expiresAt - this.clock.now()) / 1000));
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
      let held: PortMapping | undefined;
      for (const m of draft.ofClient(request.internalClient)) {
        if (m.internalPort === request.internalPort && m.protocol === request.protocol && m.remoteHost === request.remoteHost) {
          held = m;
          break;
        }
      }
      if (held) checkOwner(held, request);
      const first = held?.externalPort ?? request.externalPort;
      // The first port is looked at alone (it is usually free, or this client's); the table's taken
      // ports are gathered only when the search goes on past it.
      let taken: Set<number> | undefined;
      const isTaken = (port: number): boolean => {
        if (!options.freePortsOnly) return false;
        if (taken) return taken.has(port);
        if (port === first) return draft.holdersOf(request.protocol, port).some((m) => m !== held);
        taken = takenPorts(draft, request.protocol, held);
        return taken.has(port);
      };
      let attempts = 0;
      let refusal: unknown;
      for (const externalPort of candidatePorts(first, options.portRange)) {
        if (attempts >= options.maxAttempts) break;
        if (isTaken(externalPort)) continue;
        const existing = draft.get({ ...request, externalPort });
        if (existing && existing.internalClient !== request.internalClient) continue;
        attempts++;
        const savepoint = draft.savepoint();
        try {
          const { mapping, previous } = await this.stageAdd(draft, { ...request, externalPort }, requester);
          return { result: mapping, notifications: [{ hook: 'onMapped', event: { mapping, previous, requester } }] };
        } catch (err) {
          draft.rollbackTo(savepoint);
          if (!isPortRefusal(err)) throw err;
          refusal ??= err;
        }
      }
      // The first policy refusal, if any, says why the ports tried were not had (a front-end may tell it).
      throw new UpnpError(UpnpErrorCode.NoPortMapsAvailable, undefined, { cause: refusal });
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
        const adjusted = await this.hooks.beforeMap(request, this.policyContext(draft, createdBy, draft.get(request)));
        this.checkTarget(adjusted);
        const existing = draft.get(adjusted);
        if (existing) throw new UpnpError(UpnpErrorCode.ConflictInMappingEntry, `${adjusted.protocol} ${adjusted.externalPort} is restored twice`);
        const mapping = portMappingOf(adjusted, this.restoredExpiry(remainingMs), createdBy, draft.siblingOf(adjusted.internalClient));
        draft.put(mapping);
        notifications.push({ hook: 'onMapped', event: { mapping, previous: undefined, requester: createdBy, restored: true } });
      } catch (err) {
        draft.rollbackTo(savepoint);
        refused += 1;
        const why = upnpErrorIn(err) ? 'refused by policy' : 'a policy failed';
        this.logger.warn(
          { err, mapping: keyString(request), internalClient: request.internalClient },
          `not restoring ${keyString(request)} (${why}): ${messageOf(err)}`,
        );
      }
    }
    return { result: { restored: notifications.length, refused, failed: 0 }, notifications };
  }

  /** Resolves once every change queued so far has committed or failed (at shutdown, before the last save). */
  async settled(): Promise<void> {
    while (this.draining) await this.draining;
  }

  /**
   * Deletes the mapping under a key; 714 when there is none. Policies may veto (secure mode); so
   * does the owner's nonce, when both the mapping and `ownerNonce` carry one (606).
   */
  delete(key: MappingKey, requester: Requester, ownerNonce?: string): Promise<PortMapping> {
    return this.enqueue(async (draft) => {
      const existing = draft.get(key);
      if (!existing) throw new UpnpError(UpnpErrorCode.NoSuchEntryInArray);
      checkOwner(existing, { ownerNonce });
      await this.hooks.beforeUnmap(existing, this.policyContext(draft, requester, existing));
      draft.remove(key);
      return { result: existing, notifications: [{ hook: 'onUnmapped', event: { mapping: existing, reason: 'deleted', requester } }] };
    });
  }

  /**
   * Deletes, in one transaction, every mapping that matches and that policies let this requester
   * delete; mappings a policy refuses (with a UPnP error) are skipped. Returns what was deleted.
   * With `internalClient`, only that client's mappings are looked at (no walk of the table).
   */
  deleteMatching(matches: (m: PortMapping) => boolean, requester: Requester, internalClient?: string): Promise<PortMapping[]> {
    return this.enqueue(async (draft) => {
      const deleted: PortMapping[] = [];
      const candidates = internalClient === undefined ? draft.values() : draft.ofClient(internalClient);
      for (const mapping of [...candidates].filter(matches)) {
        try {
          await this.hooks.beforeUnmap(mapping, this.policyContext(draft, requester, mapping));
        } catch (err) {
          if (upnpErrorIn(err)) continue;
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

  /** Removes every mapping and pinhole and their rules (at shutdown). No policy is asked. */
  async removeAll(): Promise<number> {
    const pinholes = await this.closePinholesWhere(() => true, 'shutdown', null);
    return (await this.removeWhere(() => true, 'shutdown', null)).length + pinholes.length;
  }

  /**
   * Removes, in one transaction and without asking policies, the mappings that match: an admin's
   * removal (`upnpd delete`, `upnpd purge`), with the same rules, state and notifications as any.
   */
  removeWhere(matches: (m: PortMapping) => boolean, reason: 'deleted' | 'shutdown', requester: Requester | null): Promise<PortMapping[]> {
    return this.enqueue((draft) => {
      const removed = [...draft.values()].filter(matches);
      for (const mapping of removed) draft.remove(mapping);
      return {
        result: removed,
        notifications: removed.map((mapping) => ({ hook: 'onUnmapped' as const, event: { mapping, reason, requester } })),
      };
    });
  }

  /**
   * From now on, checks every few seconds whether the wall clock stepped, and if so has the journal
   * write the state whole (leases are stored as wall-clock ends). The daemon starts it.
   */
  watchWallClock(): void {
    if (this.closed) return;
    this.wallClockTimer = this.clock.setTimer(() => {
      const journal = this.journal;
      const check = journal?.rewriteAfterWallClockStep ? this.exclusive(() => journal.rewriteAfterWallClockStep!()) : Promise.resolve();
      void check.catch(() => undefined).then(() => this.watchWallClock());
    }, WALL_CLOCK_CHECK_MS);
  }

  /** Stops expiry and refuses further changes. Queued changes still finish. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.wallClockTimer !== undefined) this.clock.clearTimer(this.wallClockTimer);
    this.wallClockTimer = undefined;
    this.clearExpiryTimer();
    if (this.journalRetryTimer !== undefined) this.clock.clearTimer(this.journalRetryTimer);
    this.journalRetryTimer = undefined;
    await this.settled();
  }

  /**
   * Removes the mappings whose lease has ended (the timer calls this; tests may too). Only the
   * leases due in the expiry queue are looked at; a renewed mapping's older entry is skipped.
   */
  expireDue(): Promise<number> {
    const now = this.clock.now();
    const due = this.expiries.popDue(now);
    const run = this.enqueue((draft) => {
      const expired: PortMapping[] = [];
      for (const queued of due) {
        const mapping = draft.get(queued);
        if (!mapping || mapping.expiresAt === null || mapping.expiresAt > now) continue;
        draft.remove(mapping);
        expired.push(mapping);
      }
      const expiredPinholes = [...draft.pinholes.values()].filter((p) => p.expiresAt <= now);
      for (const p of expiredPinholes) draft.removePinhole(p.id);
      return {
        result: expired.length + expiredPinholes.length,
        notifications: [
          ...expiredPinholes.map((pinhole): Notification => ({ hook: 'onPinhole', event: { pinhole, requester: null, change: 'expired' } })),
          ...expired.flatMap((mapping): Notification[] => {
            const event: UnmappedEvent = { mapping, reason: 'expired', requester: null };
            return [
              { hook: 'onExpire', event },
              { hook: 'onUnmapped', event },
            ];
          }),
        ],
      };
    });
    // Not removed after all (the firewall refused): they are due again at the next pass.
    run.catch(() => {
      for (const mapping of due) this.expiries.push(mapping);
    });
    return run;
  }

  private async stageAdd(
    draft: MappingDraft,
    request: MappingRequest,
    requester: Requester,
  ): Promise<{ mapping: PortMapping; previous: PortMapping | undefined }> {
    const asked = draft.get(request);
    const adjusted = await this.hooks.beforeMap(request, this.policyContext(draft, requester, asked));
    this.checkTarget(adjusted);
    const existing = draft.get(adjusted);
    // Another client's port, whichever remote host either restricts it to (a PCP FILTER, a UPnP RemoteHost).
    if (draft.holdersOf(adjusted.protocol, adjusted.externalPort).some((m) => m.internalClient !== adjusted.internalClient)) {
      throw new UpnpError(UpnpErrorCode.ConflictInMappingEntry, `${adjusted.protocol} ${adjusted.externalPort} is mapped to another client`);
    }
    if (existing) checkOwner(existing, adjusted);
    if (this.refusingNewMappings && !(existing && sameRule(ruleOf(existing), ruleOf(adjusted)))) {
      throw new UpnpError(
        UpnpErrorCode.ActionFailed,
        'the mapping state cannot be written (disk full, read-only or failing); new mappings are refused until it can',
      );
    }
    const same = existing && sameRule(ruleOf(existing), ruleOf(adjusted)) ? existing : undefined;
    const owned = same?.ownerNonce !== undefined && adjusted.ownerNonce === undefined ? { ...adjusted, ownerNonce: same.ownerNonce } : adjusted;
    const lease = this.leaseOf(adjusted.leaseSeconds, same, requester);
    const sibling = existing ?? draft.siblingOf(adjusted.internalClient);
    const mapping = portMappingOf({ ...owned, leaseSeconds: lease.leaseSeconds }, lease.expiresAt, requester, sibling);
    draft.put(mapping);
    return { mapping, previous: existing };
  }

  /**
   * The lease of a mapping: its length and when it ends. A renewal through another protocol (a
   * client asking through UPnP and NAT-PMP for the same mapping) never shortens it: the mapping
   * lasts until the later of the two leases, and keeps the longer length (which bounds the lease
   * restored after a restart). Within one protocol, the lease asked for now is the lease (UPnP's rules).
   */
  private leaseOf(leaseSeconds: number, renewed: PortMapping | undefined, requester: Requester): { leaseSeconds: number; expiresAt: number | null } {
    const asked = this.expiryFor(leaseSeconds);
    if (!renewed || protocolOf(renewed.createdBy.via) === protocolOf(requester.via)) return { leaseSeconds, expiresAt: asked };
    if (asked !== null && renewed.expiresAt !== null && asked >= renewed.expiresAt) return { leaseSeconds, expiresAt: asked };
    if (asked === null) return { leaseSeconds, expiresAt: null };
    return { leaseSeconds: renewed.leaseSeconds, expiresAt: renewed.expiresAt };
  }

  private checkTarget(request: MappingRequest): void {
    if (this.isOwnEndpoint(request.internalClient, request.internalPort)) {
      throw new UpnpError(UpnpErrorCode.NotAuthorized, `${request.internalClient}:${request.internalPort} is upnpd's own HTTP endpoint`);
    }
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
    return { requester, existing, mappings: draft, pinholes: draft.pinholes };
  }

  private enqueue<T>(run: (draft: MappingDraft) => Outcome<T> | Promise<Outcome<T>>): Promise<T> {
    return this.push<T>((resolve, reject) => ({ run, resolve, reject }));
  }

  /** Runs `task` in the queue on its own: after the changes queued before it, before those queued after it. */
  private exclusive<T>(task: () => Promise<T>): Promise<T> {
    return this.push<T>((resolve, reject) => ({ task, resolve, reject }));
  }

  private push<T>(work: (resolve: (value: T) => void, reject: (err: unknown) => void) => QueuedChange | QueuedTask): Promise<T> {
    if (this.closed) return Promise.reject(new UpnpError(UpnpErrorCode.ActionFailed, 'the daemon is shutting down'));
    return new Promise<T>((resolve, reject) => {
      this.queue.push(work(resolve, reject));
      // Started on the next turn so that requests arriving together share one transaction.
      this.draining ??= new Promise((next) => setImmediate(next)).then(() => this.drain());
    });
  }

  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const first = this.queue[0]!;
        if ('task' in first) {
          this.queue.shift();
          await first.task().then(
            (value) => first.resolve(value),
            (err: unknown) => first.reject(err),
          );
          continue;
        }
        const taskAt = this.queue.findIndex((work) => 'task' in work);
        const batch = this.queue.splice(0, Math.min(MAX_BATCH, taskAt < 0 ? this.queue.length : taskAt)) as QueuedChange[];
        const done = await this.runBatch(batch);
        // One change the firewall refuses must not fail the others: each is run again on its own.
        if (!done) for (const change of batch) await this.runBatch([change]);
      }
    } finally {
      this.draining = undefined;
    }
  }

  /**
   * One batch: stage every change against a draft, apply the combined change set (repairing the
   * firewall once if it no longer matches the table), commit, publish. Returns false, with nothing
   * applied or answered, when the firewall refused a batch of several changes.
   */
  private async runBatch(batch: readonly QueuedChange[]): Promise<boolean> {
    // A journal that failed is tried again with each batch (a whole snapshot), before staging.
    if (this.journal?.failing) await this.journal.record({ mapped: [], unmapped: [] }).catch(() => this.scheduleJournalRetry());
    this.refusingNewMappings = this.journal?.failing === true && this.onWriteFailure === 'refuse';
    let draft: MappingDraft, staged: StagedChange[];
    try {
      ({ draft, staged } = await this.stage(batch));
    } finally {
      this.refusingNewMappings = false;
    }
    const changes = draft.changeSet();
    const failure = await this.applyStaged(changes);
    if (failure && batch.length > 1) return false;
    if (failure) {
      for (const entry of staged) entry.change.reject('error' in entry ? entry.error : failure);
      return true;
    }
    // Not durable, and new mappings must not be granted so: they were undone in the firewall, and
    // the batch is staged again, now refusing them (bounded: the journal is failing from here on).
    if (!(await this.persist(draft, changes))) return this.runBatch(batch);
    this.commit(draft, staged);
    this.publish(staged);
    return true;
  }

  /**
   * Records the batch in the journal before it commits and is answered. Returns false when it
   * could not be written and the batch adds mappings the 'refuse' policy must not grant (the
   * firewall change is then undone); removals and renewals commit anyway.
   */
  private async persist(draft: MappingDraft, changes: ChangeSet): Promise<boolean> {
    if (!this.journal || (!draft.hasChanges() && !this.journal.failing)) return true;
    try {
      await this.journal.record(draft.changes());
      return true;
    } catch {
      // The journal logs the failure and reports it in its status.
      this.scheduleJournalRetry();
      if (this.onWriteFailure === 'best-effort' || !draft.addsMappings()) return true;
      const undo = await this.applyStaged({ remove: changes.add, add: changes.remove });
      if (undo) this.logger.error({ err: undo }, `could not undo a change the mapping state could not record: ${messageOf(undo)}`);
      return false;
    }
  }

  /** While the journal fails, a no-op change runs now and then so that it is tried again without a client's request. */
  private scheduleJournalRetry(): void {
    if (this.closed || this.journalRetryTimer !== undefined) return;
    this.journalRetryTimer = this.clock.setTimer(() => {
      this.journalRetryTimer = undefined;
      if (this.journal?.failing) this.enqueue(() => ({ result: undefined, notifications: [] })).catch(() => undefined);
    }, JOURNAL_RETRY_MS);
  }

  private async stage(batch: readonly QueuedChange[]): Promise<{ draft: MappingDraft; staged: StagedChange[] }> {
    const draft = new MappingDraft(this.table);
    const staged: StagedChange[] = [];
    for (const change of batch) {
      const savepoint = draft.savepoint();
      try {
        staged.push({ change, outcome: await change.run(draft) });
      } catch (error) {
        draft.rollbackTo(savepoint);
        staged.push({ change, error });
      }
    }
    return { draft, staged };
  }

  /** Applies a change set; returns the error to answer with when it could not be applied, even after a repair. */
  private async applyStaged(changes: ChangeSet): Promise<BackendError | undefined> {
    if (isEmptyChangeSet(changes)) return undefined;
    try {
      await this.firewall.apply(changes);
      return undefined;
    } catch (firstErr) {
      let err = firstErr;
      if (await this.reconciler.repairInQueue('after a failed change')) {
        try {
          await this.firewall.apply(changes);
          return undefined;
        } catch (retryErr) {
          err = retryErr;
        }
      }
      this.logger.error({ err, changes }, `firewall backend failed: ${messageOf(err)}`);
      return new BackendError(`the firewall backend could not apply the change: ${messageOf(err)}`, { cause: err });
    }
  }

  private commit(draft: MappingDraft, staged: readonly StagedChange[]): void {
    const changed = draft.hasChanges();
    draft.commit();
    for (const entry of staged) {
      if (!('outcome' in entry)) continue;
      for (const n of entry.outcome.notifications) {
        if (n.hook === 'onMapped' && hasLease(n.event.mapping)) this.expiries.push(n.event.mapping);
      }
    }
    // A renewal leaves its older entry behind until that one comes due (up to lease.maxSeconds): a
    // host renewing one mapping 32 times a second would grow the queue by millions a day. Once
    // stale entries outnumber the table, the queue is rebuilt from it (amortised O(1) per change).
    if (this.expiries.size > 2 * this.table.size + STALE_EXPIRIES_SLACK) this.expiries.rebuild(this.leasesOfTable());
    this.scheduleExpiry();
    if (changed) for (const listener of this.changeListeners) listener();
  }

  /** Entries in the expiry queue, stale ones included (bounded by about twice the table). */
  get queuedExpiries(): number {
    return this.expiries.size;
  }

  private *leasesOfTable(): Generator<LeasedMapping> {
    for (const m of this.table.values()) if (hasLease(m)) yield m;
  }

  /** Answers each change and sends its notifications (after the commit, so they see the new table). */
  private publish(staged: readonly StagedChange[]): void {
    for (const entry of staged) {
      if (!('outcome' in entry)) {
        entry.change.reject(entry.error);
        continue;
      }
      entry.change.resolve(entry.outcome.result);
      for (const n of entry.outcome.notifications) {
        if (n.hook === 'onMapped') this.hooks.onMapped(n.event);
        else if (n.hook === 'onPinhole') this.hooks.onPinhole(n.event);
        else if (n.hook === 'onExpire') this.hooks.onExpire(n.event);
        else this.hooks.onUnmapped(n.event);
      }
    }
  }

  private scheduleExpiry(): void {
    if (this.closed) return;
    this.expiries.dropWhile((queued) => this.table.get(queued) !== queued);
    // Pinholes are few next to mappings (a host's few services): their earliest lease is found by a walk.
    let next = this.expiries.peekTime();
    for (const p of this.table.pinholes.values()) if (next === undefined || p.expiresAt < next) next = p.expiresAt;
    if (next === undefined) return this.clearExpiryTimer();
    const dueAt = Math.max(next, this.clock.now() + (this.expiryFailed ? EXPIRY_RETRY_MS : 0));
    // A timer due no later is kept (if it finds nothing due, it schedules again): re-arming it at
    // each batch left an empty timer list behind in Node for every distinct delay (5000 with 5000 adds).
    if (this.expiryTimer !== undefined && this.expiryTimerAt <= dueAt) return;
    this.clearExpiryTimer();
    this.expiryTimerAt = dueAt;
    this.expiryTimer = this.clock.setTimer(() => {
      this.expiryTimer = undefined;
      this.expireDue().then(
        // Its batch's commit schedules the next (also when nothing was due: a renewed or removed mapping).
        () => (this.expiryFailed = false),
        (err: unknown) => {
          this.expiryFailed = true;
          this.logger.error({ err }, `lease expiry failed, will retry: ${messageOf(err)}`);
          this.scheduleExpiry();
        },
      );
    }, dueAt - this.clock.now());
  }

  private clearExpiryTimer(): void {
    if (this.expiryTimer !== undefined) this.clock.clearTimer(this.expiryTimer);
    this.expiryTimer = undefined;
  }
}

function* candidatePorts(first: number, [low, high]: readonly [number, number]): Generator<number> {
  if (first >= 1 && first <= 65535) yield first;
  const start = Math.min(Math.max(first + 1, low), high);
  for (let p = start; p <= high; p++) if (p !== first) yield p;
  for (let p = low; p < start; p++) if (p !== first) yield p;
}

/** A PCP client may not renew or delete a mapping or pinhole another nonce owns (RFC 6887 §11.1: NOT_AUTHORIZED). */
function checkOwner(existing: PortMapping | Pinhole, request: { readonly ownerNonce?: string }): void {
  if (existing.ownerNonce !== undefined && request.ownerNonce !== undefined && existing.ownerNonce !== request.ownerNonce) {
    const what = 'id' in existing ? `pinhole ${existing.id}` : `${existing.protocol} ${existing.externalPort}`;
    throw new UpnpError(UpnpErrorCode.NotAuthorized, `${what} belongs to another PCP client (nonce)`);
  }
}

/** External ports of `protocol` that hold a mapping (any remote host), except `own`'s. */
function takenPorts(view: MappingView, protocol: Protocol, own: PortMapping | undefined): Set<number> {
  const taken = new Set<number>();
  for (const m of view.values()) if (m.protocol === protocol && m !== own) taken.add(m.externalPort);
  return taken;
}

function isPortRefusal(err: unknown): boolean {
  const refusal = upnpErrorIn(err);
  return refusal !== undefined && PORT_REFUSALS.has(refusal.upnpCode);
}

function readOnlyView(table: MappingTable): MappingView {
  return Object.freeze({
    get: (key: MappingKey) => table.get(key),
    values: () => table.values(),
    heldBy: (address: string) => table.heldBy(address),
    ofClient: (internalClient: string) => table.ofClient(internalClient),
    get size() {
      return table.size;
    },
  });
}

function readOnlyPinholes(pinholes: ReadonlyMap<number, Pinhole>): PinholeView {
  return Object.freeze({
    get: (id: number) => pinholes.get(id),
    values: () => pinholes.values(),
    get size() {
      return pinholes.size;
    },
  });
}
