import type { Clock } from '../clock.js';
import type { Logger } from '../logger.js';
import { ClientRateLimiter, type RateDecision, type RateLimit } from './rate-limiter.js';
import { Refusals, type RefusalCounts } from './refusals.js';

/**
 * The per-client bounds that protect the process and keep one LAN host from starving another. A
 * client is a source IP address. Each can be changed in the config (`limits.*`, README).
 */
export interface ClientLimitSettings {
  /**
   * Connections one client may hold open to the HTTP server at once, well below the total, so that
   * a host holding its maximum of idle or slow connections leaves room for the others. Real
   * clients use one or two (miniupnpc, libtorrent: one per request).
   */
  readonly connectionsPerClient: number;
  /**
   * Requests that change state (AddPortMapping, AddAnyPortMapping, DeletePortMapping,
   * DeletePortMappingRange, the other Set/Request actions, SUBSCRIBE): each is a backend
   * transaction and state-file write, so a host flooding them would take the gateway's time from
   * everyone. Real clients send a handful at start and one per mapping per renewal; the burst
   * lets a client (re)create a full quota of mappings at once. 32 a second is about 1 % of what
   * upnpd handles on a small 2-core gateway (bench: ~2,800 adds and deletes a second), so even
   * ten flooding addresses leave the gateway to the others. Read-only actions are not limited,
   * so a table walk is never slowed.
   */
  readonly stateChanges: RateLimit;
  /**
   * M-SEARCHes answered per source. Clients send each search two or three times for a few
   * search targets; a flood (SSDP amplification, or starving others' discovery) is refused.
   */
  readonly mSearch: RateLimit;
}

export const DEFAULT_CLIENT_LIMITS: ClientLimitSettings = {
  connectionsPerClient: 8,
  stateChanges: { burst: 64, perSecond: 32, reason: 'state-changing requests per client (limits.stateChanges)' },
  mSearch: { burst: 20, perSecond: 5, reason: 'M-SEARCHes per source (limits.mSearch)' },
};

type Rate = Pick<RateLimit, 'burst' | 'perSecond'>;

/** The settings from the config's `limits` key, each limit keeping its reason. */
export function clientLimitSettings(configured: { connectionsPerClient: number; stateChanges: Rate; mSearch: Rate }): ClientLimitSettings {
  return {
    connectionsPerClient: configured.connectionsPerClient,
    stateChanges: { ...DEFAULT_CLIENT_LIMITS.stateChanges, ...configured.stateChanges },
    mSearch: { ...DEFAULT_CLIENT_LIMITS.mSearch, ...configured.mSearch },
  };
}

/** Counters of what the bounds refused, for the metrics to come. */
export interface LimitStats {
  readonly refused: RefusalCounts;
  /** Clients whose state-change rate is being tracked. */
  readonly trackedClients: number;
}

/**
 * The bounds shared by every protocol front-end (UPnP today, NAT-PMP/PCP later): one
 * state-change bucket per client whatever protocol it speaks, one refusal log and counters.
 */
export class ClientLimits {
  readonly refusals: Refusals;
  private readonly stateChanges: ClientRateLimiter;

  constructor(
    readonly settings: ClientLimitSettings,
    logger: Logger,
    clock: Clock,
  ) {
    this.refusals = new Refusals(logger.child({ component: 'limits' }), clock);
    this.stateChanges = new ClientRateLimiter(settings.stateChanges, clock);
  }

  /** Admits one state-changing request of `client` (`what` is logged), or records its refusal. */
  admitStateChange(client: string, what: string): RateDecision {
    const decision = this.stateChanges.take(client);
    if (!decision.allowed) this.refusals.refuse('state-change-rate', client, this.settings.stateChanges.reason, { request: what });
    return decision;
  }

  stats(): LimitStats {
    return { refused: this.refusals.counted, trackedClients: this.stateChanges.trackedClients };
  }
}
