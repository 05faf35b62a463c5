import type { Clock } from '../clock.js';
import type { Logger } from '../logger.js';

/** What a bound refused; the compiler keeps the counters complete. */
export type RefusalKind =
  'connections-per-client' | 'pipelined-requests' | 'state-change-rate' | 'm-search-rate' | 'm-search-queue' | 'datagram-rate' | 'datagrams-pending';

const KINDS = {
  'connections-per-client': 1,
  'pipelined-requests': 1,
  'state-change-rate': 1,
  'm-search-rate': 1,
  'm-search-queue': 1,
  'datagram-rate': 1,
  'datagrams-pending': 1,
} as const satisfies Record<RefusalKind, 1>;

/** Refusals counted since start, by kind, for the metrics to come. */
export type RefusalCounts = Readonly<Record<RefusalKind, number>>;

/** How refusals are logged: a flood must not become a flood of log lines. */
export const REFUSAL_LOG_LIMITS = {
  /** One line per client and kind at most this often; the line says how many were not logged. */
  perClientIntervalMs: 10_000,
  /** Lines for all clients together per interval (a flood from many addresses). */
  maxLinesPerInterval: 20,
  /** (client, kind) pairs remembered between lines; beyond it the memory is reset. */
  maxTracked: 1024,
} as const;

interface LogState {
  loggedAt: number;
  suppressed: number;
}

/**
 * Counts every refusal by a resource bound and logs it at warn level, rate-limited: the first
 * refusal of a client for a kind is logged, the next ones at most once per interval with the
 * number left out.
 */
export class Refusals {
  private readonly counts: Record<RefusalKind, number> = Object.fromEntries(Object.keys(KINDS).map((k) => [k, 0])) as Record<RefusalKind, number>;
  private readonly logged = new Map<string, LogState>();
  private intervalStart = Number.NEGATIVE_INFINITY;
  private linesThisInterval = 0;

  constructor(
    private readonly logger: Logger,
    private readonly clock: Clock,
  ) {}

  /** Records a refusal of `client` by `kind`; `reason` names the limit that refused it. */
  refuse(kind: RefusalKind, client: string, reason: string, details: Record<string, unknown> = {}): void {
    this.counts[kind]++;
    const now = this.clock.now();
    const key = `${kind} ${client}`;
    const state = this.logged.get(key);
    if (state && now - state.loggedAt < REFUSAL_LOG_LIMITS.perClientIntervalMs) {
      state.suppressed++;
      return;
    }
    if (now - this.intervalStart >= REFUSAL_LOG_LIMITS.perClientIntervalMs) {
      this.intervalStart = now;
      this.linesThisInterval = 0;
    }
    if (this.linesThisInterval >= REFUSAL_LOG_LIMITS.maxLinesPerInterval) {
      if (state) state.suppressed++;
      return;
    }
    this.linesThisInterval++;
    if (!state && this.logged.size >= REFUSAL_LOG_LIMITS.maxTracked) this.logged.clear();
    this.logger.warn({ client, refusal: kind, limit: reason, notLoggedBefore: state?.suppressed ?? 0, ...details }, `refused ${client}: ${reason}`);
    this.logged.set(key, { loggedAt: now, suppressed: 0 });
  }

  get counted(): RefusalCounts {
    return { ...this.counts };
  }
}
