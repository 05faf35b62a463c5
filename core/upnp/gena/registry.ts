import type { Clock } from '../../clock.js';
import type { Logger } from '../../logger.js';
import type { Subscription } from './subscription.js';

interface Entry {
  readonly subscription: Subscription;
  expiryTimer: unknown;
}

/** The live subscriptions by SID, each with its expiry timer. Removing one stops its deliveries. */
export class SubscriptionRegistry {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  get(sid: string): Subscription | undefined {
    return this.entries.get(sid)?.subscription;
  }

  /** How many subscriptions a peer holds. Linear, but the registry's size is capped. */
  countFrom(peer: string): number {
    let count = 0;
    for (const { subscription } of this.entries.values()) if (subscription.peer === peer) count += 1;
    return count;
  }

  forEventPath(eventPath: string): Subscription[] {
    return [...this.entries.values()].map((e) => e.subscription).filter((s) => s.eventPath === eventPath);
  }

  add(subscription: Subscription, timeoutSeconds: number): void {
    this.entries.set(subscription.sid, { subscription, expiryTimer: this.expireAfter(subscription.sid, timeoutSeconds) });
  }

  /** Restarts the expiry timer; false when the SID is not live. */
  renew(sid: string, timeoutSeconds: number): boolean {
    const entry = this.entries.get(sid);
    if (!entry) return false;
    this.clock.clearTimer(entry.expiryTimer);
    entry.expiryTimer = this.expireAfter(sid, timeoutSeconds);
    return true;
  }

  remove(sid: string): Subscription | undefined {
    const entry = this.entries.get(sid);
    if (!entry) return undefined;
    this.entries.delete(sid);
    this.clock.clearTimer(entry.expiryTimer);
    entry.subscription.cancel();
    return entry.subscription;
  }

  /** Removes every subscription; returns them so the caller can wait for deliveries in flight. */
  clear(): Subscription[] {
    return [...this.entries.keys()].flatMap((sid) => this.remove(sid) ?? []);
  }

  private expireAfter(sid: string, timeoutSeconds: number): unknown {
    return this.clock.setTimer(() => {
      if (this.remove(sid)) this.logger.debug({ sid }, 'subscription expired');
    }, timeoutSeconds * 1000);
  }
}
