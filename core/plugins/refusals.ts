import type { DependencyContainer } from 'tsyringe';
import { systemClock, type Clock } from '../clock.js';
import type { UpnpError } from '../errors.js';
import { silentLogger, type Logger } from '../logger.js';
import type { Requester } from '../mapping/types.js';
import { CLOCK, LOGGER, REFUSALS } from './tokens.js';

/** How often refusals are logged: a client refused in a loop must not flood the log. */
export const REFUSAL_LOG_LIMITS = {
  /** At most this many refusals are logged per policy per window; the rest are counted. */
  perWindow: 10,
  windowMs: 60_000,
  reason: 'a hostile LAN host can be refused thousands of times a minute; the log keeps the first few and a count',
} as const;

/**
 * Refusals counted by policy and rule (for the metrics front-end of the operations issue, and tests).
 * One registry per daemon (the REFUSALS token); front-ends and policies increment it.
 */
/** One refusal, as listeners (the notifications plugin) hear of it. */
export interface Refusal {
  readonly policy: string;
  readonly rule: string;
  readonly client: string;
  readonly via: string;
  readonly upnpCode: number;
  readonly message: string;
}

export class RefusalRegistry {
  private readonly counts = new Map<string, Map<string, number>>();
  private readonly listeners = new Set<(refusal: Refusal) => void>();

  /** Calls `listener` for every refusal from now on; returns a function that stops it. */
  onRefusal(listener: (refusal: Refusal) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Tells the listeners (a listener's failure is its own: it never reaches the policy). */
  announce(refusal: Refusal): void {
    for (const listener of this.listeners) {
      try {
        listener(refusal);
      } catch {
        // a notification must never fail a request
      }
    }
  }

  count(policy: string, rule: string): void {
    let byRule = this.counts.get(policy);
    if (!byRule) this.counts.set(policy, (byRule = new Map<string, number>()));
    byRule.set(rule, (byRule.get(rule) ?? 0) + 1);
  }

  /** `{ policy: { rule: count } }`, a copy. */
  snapshot(): Record<string, Record<string, number>> {
    return Object.fromEntries([...this.counts].map(([policy, byRule]) => [policy, Object.fromEntries(byRule)]));
  }
}

/**
 * What a policy calls when it refuses: counts the refusal under the policy and the rule, logs it
 * (rate-limited, at info: a refusal is the policy working, not a fault) with the client and the
 * rule, and returns the error to throw. A policy hook may run more than once per request (see
 * Hooks.beforeMap), so a count is an upper bound of refused requests.
 */
export class RefusalReporter {
  private windowStart = -Infinity;
  private loggedInWindow = 0;
  private suppressed = 0;

  constructor(
    readonly policy: string,
    private readonly registry: RefusalRegistry,
    private readonly logger: Logger,
    private readonly clock: Pick<Clock, 'now'>,
    private readonly limits: { readonly perWindow: number; readonly windowMs: number } = REFUSAL_LOG_LIMITS,
  ) {}

  refuse(rule: string, requester: Requester, error: UpnpError): UpnpError {
    this.registry.count(this.policy, rule);
    this.registry.announce({ policy: this.policy, rule, client: requester.address, via: requester.via, upnpCode: error.upnpCode, message: error.message });
    const now = this.clock.now();
    if (now - this.windowStart >= this.limits.windowMs) {
      this.windowStart = now;
      this.loggedInWindow = 0;
    }
    if (this.loggedInWindow >= this.limits.perWindow) {
      this.suppressed++;
      return error;
    }
    this.loggedInWindow++;
    const suppressed = this.suppressed;
    this.suppressed = 0;
    this.logger.info(
      { policy: this.policy, rule, client: requester.address, via: requester.via, upnpCode: error.upnpCode, ...(suppressed > 0 && { notLogged: suppressed }) },
      `${this.policy}: refused ${requester.address} (${rule}): ${error.message}${suppressed > 0 ? ` (${suppressed} earlier refusal(s) not logged)` : ''}`,
    );
    return error;
  }
}

/**
 * A policy plugin's reporter, from its container: its logger, the daemon's clock and registry
 * (a fresh registry and the system clock where none is registered, as in a unit test).
 */
export function refusalReporter(container: DependencyContainer, policy: string): RefusalReporter {
  const registry = container.isRegistered(REFUSALS, true) ? container.resolve(REFUSALS) : new RefusalRegistry();
  const clock = container.isRegistered(CLOCK, true) ? container.resolve(CLOCK) : systemClock;
  const logger = container.isRegistered(LOGGER, true) ? container.resolve(LOGGER) : silentLogger;
  return new RefusalReporter(policy, registry, logger, clock);
}
