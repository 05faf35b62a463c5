import type { Clock } from '../../clock.js';
import { FairShare } from '../../limits/fair-share.js';
import type { Logger } from '../../logger.js';
import type { Subscription } from './subscription.js';

interface Entry {
  readonly subscription: Subscription;
  expiryTimer: unknown;
}

/**
 * The live subscriptions by SID, each with its expiry timer. Removing one stops its deliveries. At
 * most `maxSubscriptions` live at once; when full, a subscriber holding at least two fewer than the
 * biggest holder takes the place of that holder's oldest subscription (FairShare), so one host
 * subscribing from many addresses cannot keep another host from its events.
 */
export class SubscriptionRegistry {
  private readonly entries = new Map<string, Entry>();
  private readonly shares: FairShare<string>;

  constructor(
    private readonly clock: Clock,
    private readonly logger: Logger,
    maxSubscriptions: number,
  ) {
    this.shares = new FairShare(maxSubscriptions);
  }

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

  /** Adds `subscription` unless the registry is full and no holder has two more than its peer; says which subscription gave way, if one did. */
  add(subscription: Subscription, timeoutSeconds: number): { added: boolean; displaced?: Subscription } {
    const share = this.shares.add(subscription.peer, subscription.sid);
    if (!share.admitted) return { added: false };
    const displaced = share.evicted === undefined ? undefined : this.remove(share.evicted);
    this.entries.set(subscription.sid, { subscription, expiryTimer: this.expireAfter(subscription.sid, timeoutSeconds) });
    return displaced ? { added: true, displaced } : { added: true };
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
    this.shares.delete(entry.subscription.peer, sid);
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
