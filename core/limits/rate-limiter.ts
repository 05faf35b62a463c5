import type { Clock } from '../clock.js';

/** A token bucket: `burst` requests at once, then `perSecond` on average. */
export interface RateLimit {
  readonly burst: number;
  readonly perSecond: number;
  /** Why the limit exists; logged with every refusal it causes. */
  readonly reason: string;
}

export type RateDecision = { readonly allowed: true } | { readonly allowed: false; readonly retryAfterMs: number };

interface Bucket {
  tokens: number;
  /** Clock time the tokens were counted at. */
  at: number;
}

/** Clients tracked at most; a LAN has far fewer hosts, so this only bounds memory against spoofed sources. */
export const MAX_TRACKED_CLIENTS = 4096;

const ALLOWED: RateDecision = { allowed: true };

/**
 * One token bucket per client (a client is a source IP address). Shared by every front-end that
 * passes it the same client key, so a host cannot get twice the rate by speaking two protocols.
 * Memory stays bounded: beyond MAX_TRACKED_CLIENTS, the client idle the longest is forgotten (most
 * often a full bucket: nothing to remember), in O(1). Not the first one seen: sources arriving one
 * after another (PCP over IPv6 or UDP from many addresses) would then reset a flooding host's empty
 * bucket, and a walk of every bucket for each new source cost a millisecond a packet.
 */
export class ClientRateLimiter {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    readonly limit: RateLimit,
    private readonly clock: Clock,
    private readonly maxClients = MAX_TRACKED_CLIENTS,
  ) {
    if (!(limit.burst >= 1 && limit.perSecond > 0)) throw new Error(`rate limit "${limit.reason}": burst must be ≥ 1 and perSecond > 0`);
  }

  /** Takes one token for `client`, or says how long until one is there. */
  take(client: string): RateDecision {
    const now = this.clock.now();
    const bucket = this.refilled(client, now);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return ALLOWED;
    }
    return { allowed: false, retryAfterMs: Math.ceil(((1 - bucket.tokens) * 1000) / this.limit.perSecond) };
  }

  get trackedClients(): number {
    return this.buckets.size;
  }

  private refilled(client: string, now: number): Bucket {
    const bucket = this.buckets.get(client);
    if (bucket) {
      bucket.tokens = Math.min(this.limit.burst, bucket.tokens + ((now - bucket.at) / 1000) * this.limit.perSecond);
      bucket.at = now;
      // Moved to the end: the Map's order is then the order of last use, the idlest first.
      this.buckets.delete(client);
      this.buckets.set(client, bucket);
      return bucket;
    }
    if (this.buckets.size >= this.maxClients) this.buckets.delete(this.buckets.keys().next().value!);
    const fresh = { tokens: this.limit.burst, at: now };
    this.buckets.set(client, fresh);
    return fresh;
  }
}
