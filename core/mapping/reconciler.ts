import type { Clock } from '../clock.js';
import { messageOf } from '../errors.js';
import type { Logger } from '../logger.js';
import type { MappingFirewall } from './hooks.js';
import type { PinholeRule } from './pinhole.js';
import { isEmptyChangeSet, keyString, type ChangeSet, type IntegrityReport, type RepairedEvent, type RuleSpec } from './types.js';

/** How often the firewall is checked, and how long a kernel event may wait for the check it triggers. */
export interface ReconcileSettings {
  /** Period of the cheap integrity check (the shortest: see maxCheckShare). */
  readonly intervalMs: number;
  /**
   * The largest share of the time periodic checks may take: a check that took `d` ms is followed by
   * the next one no sooner than `d / maxCheckShare` ms later. A check reads the whole table (with
   * 5000 nftables mappings it takes 70-85 ms, two `nft -j list` side by side using about 100 ms of
   * CPU; a small router's CPU is several times slower), so a large table is checked less often;
   * events still trigger a check at once. Wall time: the CPU share may be up to twice as much.
   */
  readonly maxCheckShare: number;
  /** Events arrive in bursts (a reload is many changes): one check once they have settled. */
  readonly eventDebounceMs: number;
  /** A periodic check is put off while changes are being applied, but never longer than this. */
  readonly maxDeferMs: number;
}

/** How many recent checks periodMs takes the cost of a check from. */
const CHECK_COST_SAMPLES = 3;

export const DEFAULT_RECONCILE_SETTINGS: ReconcileSettings = Object.freeze({
  intervalMs: 2_000,
  maxCheckShare: 0.01,
  eventDebounceMs: 100,
  maxDeferMs: 10_000,
});

/** What the reconciler has done, for logs and metrics (the daemon exposes it as `reconcileStats`). */
export interface ReconcileStats {
  readonly checks: number;
  readonly repairs: number;
  /** Checks or repairs that failed (the backend could not be read or written); `lastError` says why. */
  readonly failures: number;
  /** Monotonic time (Clock.now) of the last check, undefined before the first. */
  readonly lastCheckAt: number | undefined;
  /** How long the last check took (ms), undefined before the first ended. */
  readonly lastCheckMs: number | undefined;
  /** The time between periodic checks now: intervalMs, or longer when checks are slow (maxCheckShare). */
  readonly periodMs: number;
  readonly lastRepairAt: number | undefined;
  readonly lastRepairMs: number | undefined;
  /** What the last repair found missing. */
  readonly lastMissing: readonly string[];
  readonly lastError: string | undefined;
}

/** What the reconciler needs of the mapping lifecycle: the table (the truth) and its queue. */
export interface ReconcileSource {
  /** The rules the table says must be installed. */
  expectedRules(): readonly RuleSpec[];
  /** The IPv6 pinholes the table says must be open (checked and resynced by backends with `check`/`resync`). */
  expectedPinholes(): readonly PinholeRule[];
  /** Runs `task` in the change queue, alone (never concurrently with a batch). */
  exclusive<T>(task: () => Promise<T>): Promise<T>;
  /** Whether changes are being applied right now (a periodic check then waits). */
  busy(): boolean;
  /** Told of each repair, after it (notifications). */
  repaired?(event: RepairedEvent): void;
}

/**
 * Keeps the firewall in step with the mapping table when someone else changes it (an admin's
 * firewall reload flushes the rules, a jump is deleted by hand). A cheap check runs periodically
 * and when the backend reports a kernel event; it only reads. When something is missing, a repair
 * enters the change queue, checks again there (the first check may have raced with a batch) and
 * resyncs the backend from the table in one transaction. After a failed apply the lifecycle calls
 * `repairInQueue` itself, from inside the queue.
 */
export class Reconciler {
  private timer: unknown = undefined;
  private eventTimer: unknown = undefined;
  private stopWatching: (() => void) | undefined;
  private checking: Promise<void> | undefined;
  private running = false;
  private deferredSince: number | undefined;
  private counters = { checks: 0, repairs: 0, failures: 0 };
  /** How long the last few checks took (ms), the latest last. */
  private recentCheckMs: number[] = [];
  private last: Omit<ReconcileStats, 'checks' | 'repairs' | 'failures' | 'periodMs'> = {
    lastCheckAt: undefined,
    lastCheckMs: undefined,
    lastRepairAt: undefined,
    lastRepairMs: undefined,
    lastMissing: [],
    lastError: undefined,
  };

  constructor(
    private readonly firewall: MappingFirewall,
    private readonly source: ReconcileSource,
    private readonly clock: Clock,
    private readonly logger: Logger,
    private settings: ReconcileSettings = DEFAULT_RECONCILE_SETTINGS,
  ) {}

  get stats(): ReconcileStats {
    return { ...this.counters, ...this.last, periodMs: this.periodMs() };
  }

  /**
   * intervalMs, stretched so that periodic checks take at most maxCheckShare of the time. A check's
   * cost is the quickest of the last CHECK_COST_SAMPLES: one slowed down by a burst of changes
   * beside it (measured: 919 ms against about 100 ms when quiet) does not put the next off for long.
   */
  private periodMs(): number {
    const { intervalMs, maxCheckShare } = this.settings;
    const cost = this.recentCheckMs.length > 0 ? Math.min(...this.recentCheckMs) : 0;
    return Math.max(intervalMs, Math.round(cost / maxCheckShare));
  }

  /** Starts the periodic check and, where the backend offers them, checks on kernel events. */
  start(settings: Partial<ReconcileSettings> = {}): void {
    if (this.running) return;
    this.settings = { ...this.settings, ...settings };
    this.running = true;
    this.schedule();
    try {
      this.stopWatching = this.firewall.watch?.(() => this.onEvent());
    } catch (err) {
      this.logger.warn({ err }, `firewall events are not available, checking every ${this.settings.intervalMs} ms only: ${messageOf(err)}`);
    }
  }

  /** Stops checking; a check under way finishes. */
  async stop(): Promise<void> {
    this.running = false;
    if (this.timer !== undefined) this.clock.clearTimer(this.timer);
    if (this.eventTimer !== undefined) this.clock.clearTimer(this.eventTimer);
    this.timer = this.eventTimer = undefined;
    this.stopWatching?.();
    this.stopWatching = undefined;
    await this.checking;
  }

  /**
   * Checks now (reads only) and, when something is missing, repairs through the queue. Resolves
   * when done; never rejects (failures are logged and counted). A check under way is shared.
   */
  checkNow(reason: string): Promise<void> {
    this.checking ??= this.checkThenRepair(reason).finally(() => (this.checking = undefined));
    return this.checking;
  }

  /**
   * From inside the change queue (after a failed apply): checks, and resyncs when something is
   * missing. Returns whether a repair was made (then the failed change is worth retrying).
   */
  async repairInQueue(reason: string): Promise<boolean> {
    const started = this.clock.now();
    let report: IntegrityReport;
    const expected = this.source.expectedRules();
    const pinholes = this.source.expectedPinholes();
    try {
      report = await this.check(expected, pinholes);
    } catch (err) {
      this.failed(`checking the firewall ${reason}`, err);
      return false;
    }
    if (report.missing.length === 0) return false;
    try {
      await this.resync(expected, pinholes);
    } catch (err) {
      this.failed(`repairing the firewall ${reason}`, err);
      return false;
    }
    const tookMs = Math.round(this.clock.now() - started);
    this.counters.repairs++;
    this.last = { ...this.last, lastRepairAt: this.clock.now(), lastRepairMs: tookMs, lastMissing: report.missing, lastError: undefined };
    this.source.repaired?.({ missing: report.missing, rules: expected.length, tookMs, reason });
    this.logger.warn(
      { missing: report.missing, tookMs, rules: expected.length, reason },
      `the firewall had lost part of upnpd's rules (reloaded or changed outside upnpd): ${report.missing.join('; ')}; ` +
        `resynced ${expected.length} mapping(s)${pinholes.length > 0 ? ` and ${pinholes.length} pinhole(s)` : ''} in ${tookMs} ms (${reason})`,
    );
    return true;
  }

  private async checkThenRepair(reason: string): Promise<void> {
    let report: IntegrityReport;
    try {
      report = await this.check(this.source.expectedRules(), this.source.expectedPinholes());
    } catch (err) {
      this.failed(`checking the firewall ${reason}`, err);
      return;
    }
    if (report.missing.length === 0) return;
    this.logger.debug({ missing: report.missing, reason }, 'firewall check found missing parts; repairing through the queue');
    try {
      await this.source.exclusive(() => this.repairInQueue(reason));
    } catch (err) {
      this.failed(`repairing the firewall ${reason}`, err);
    }
  }

  private async check(expected: readonly RuleSpec[], pinholes: readonly PinholeRule[]): Promise<IntegrityReport> {
    this.counters.checks++;
    const started = this.clock.now();
    this.last = { ...this.last, lastCheckAt: started };
    try {
      return await (this.firewall.check ? this.firewall.check(expected, pinholes) : checkByListing(this.firewall, expected));
    } finally {
      this.noteCheckTook(this.clock.now() - started);
    }
  }

  /** Logs when slow checks stretch the period beyond intervalMs, and when it is back. */
  private noteCheckTook(ms: number): void {
    const before = this.periodMs();
    this.last = { ...this.last, lastCheckMs: Math.round(ms) };
    this.recentCheckMs = [...this.recentCheckMs, ms].slice(-CHECK_COST_SAMPLES);
    const after = this.periodMs();
    const { intervalMs, maxCheckShare } = this.settings;
    if (before > intervalMs === after > intervalMs) return;
    this.logger.info(
      { lastCheckMs: this.last.lastCheckMs, periodMs: after },
      after > intervalMs
        ? `firewall checks take ${Math.round(Math.min(...this.recentCheckMs))} ms: checking every ${after} ms instead of ${intervalMs} (at most ${maxCheckShare * 100} % of the time; firewall events are still checked at once)`
        : `firewall checks are quick again: checking every ${intervalMs} ms`,
    );
  }

  private async resync(rules: readonly RuleSpec[], pinholes: readonly PinholeRule[]): Promise<void> {
    if (this.firewall.resync) return this.firewall.resync(rules, pinholes);
    await this.firewall.init?.();
    const repair = differenceToApply(await this.firewall.list(), rules);
    if (!isEmptyChangeSet(repair)) await this.firewall.apply(repair);
  }

  private failed(what: string, err: unknown): void {
    this.counters.failures++;
    this.last = { ...this.last, lastError: `${what}: ${messageOf(err)}` };
    this.logger.error({ err }, `${what} failed: ${messageOf(err)}`);
  }

  private onEvent(): void {
    if (!this.running || this.eventTimer !== undefined) return;
    this.eventTimer = this.clock.setTimer(() => {
      this.eventTimer = undefined;
      if (this.running) void this.checkNow('after a firewall change event');
    }, this.settings.eventDebounceMs);
  }

  /** Sets the next periodic check `delayMs` from now (replacing one set before). */
  private schedule(delayMs: number = this.periodMs()): void {
    if (!this.running) return;
    if (this.timer !== undefined) this.clock.clearTimer(this.timer);
    this.timer = this.clock.setTimer(() => {
      this.timer = undefined;
      const began = this.clock.now();
      // The next one is due a period from now whatever this one does (a check still running is
      // shared); once this one has ended, a period that its duration changed moves it.
      const period = this.periodMs();
      this.schedule(period);
      void this.periodic().finally(() => {
        if (this.timer !== undefined && this.periodMs() !== period) this.schedule(Math.max(0, this.periodMs() - (this.clock.now() - began)));
      });
    }, delayMs);
  }

  /** The periodic check stays off the hot path: while a batch is applied it waits (up to maxDeferMs). */
  private async periodic(): Promise<void> {
    const now = this.clock.now();
    if (this.source.busy()) {
      this.deferredSince ??= now;
      if (now - this.deferredSince < this.settings.maxDeferMs) return;
    }
    this.deferredSince = undefined;
    await this.checkNow('periodic check');
  }
}

/** A rule's identity including its target: a mapping moved to another client is a different rule. */
function ruleIdentity(r: RuleSpec): string {
  return `${keyString(r)}>${r.internalClient}:${r.internalPort}`;
}

/** The default check for a backend without its own: what `list()` reads back against the table. */
export async function checkByListing(firewall: Pick<MappingFirewall, 'list'>, expected: readonly RuleSpec[]): Promise<IntegrityReport> {
  const { add, remove } = differenceToApply(await firewall.list(), expected);
  const missing = [
    ...(add.length > 0
      ? [`${add.length} of ${expected.length} mapping(s) not installed (${add.slice(0, 3).map(keyString).join(', ')}${add.length > 3 ? ', ...' : ''})`]
      : []),
    ...(remove.length > 0 ? [`${remove.length} rule(s) installed that the table does not hold`] : []),
  ];
  return { missing };
}

/** The change set that turns `installed` into `desired`. */
export function differenceToApply(installed: readonly RuleSpec[], desired: readonly RuleSpec[]): ChangeSet {
  const installedIds = new Set(installed.map(ruleIdentity));
  const desiredIds = new Set(desired.map(ruleIdentity));
  return {
    remove: installed.filter((r) => !desiredIds.has(ruleIdentity(r))),
    add: desired.filter((r) => !installedIds.has(ruleIdentity(r))),
  };
}
