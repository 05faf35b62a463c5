import { rateLimitSchema, z } from 'upnpd';

const port = z.number().int().min(1).max(65535);

/** RFC 6887 §15: lifetimes a server should grant, at least 120 s, at most 24 h. */
export const DEFAULT_LIFETIME = { minSeconds: 120, maxSeconds: 86_400 } as const;

/**
 * Requests read per client (source address) before any is parsed or answered: a token bucket,
 * beyond which a request is dropped unanswered. RFC 6887 §8.3 lets a server overloaded by requests
 * from one client silently discard them, as clients retry (RFC 6886 §3.1: from 250 ms, doubling;
 * RFC 6887 §8.1.1: from 3 s). A real client sends a handful at start and one per mapping per
 * renewal (a BitTorrent client: the external address, TCP and UDP for each port); the burst is
 * twice the state-change one (limits.stateChanges), so a client mapping a full burst at once is
 * answered, and a refused state change is still answered "out of resources" up to this rate.
 * Beyond it, a flood costs the daemon a read and a lookup a packet, and a host whose address a
 * flooder spoofs receives at most this many answers a second.
 */
export const DEFAULT_REQUEST_RATE = { burst: 128, perSecond: 64 } as const;

/**
 * Map and delete requests waiting for the mapping lifecycle at once, per client and in all. They
 * wait behind every change queued before them (a firewall transaction, a state-file write): while
 * the lifecycle stalls (a firewall holding its lock, slow flash), requests still read would
 * otherwise pile up without bound, as UPnP's cannot (a connection holds one request; 128
 * connections per address). A real client waits for each answer before the next request
 * (libnatpmp, libtorrent, Tailscale); the per-client bound is the request burst, so one host
 * mapping all of it at once waits in full, and the total leaves room for eight such hosts.
 */
export const DEFAULT_PENDING = { perClient: 128, total: 1024 } as const;

const requestRate = rateLimitSchema(DEFAULT_REQUEST_RATE);

/** The natPmp plugin's options (README "NAT-PMP and PCP"). */
export const natPmpOptionsSchema = z
  .object({
    /** Serve PCP (version 2) besides NAT-PMP (version 0) on the same port. */
    pcp: z.boolean().default(true),
    /** Lifetimes granted to NAT-PMP and PCP mappings are clamped to this range (UPnP's lease rules are separate). */
    lifetime: z
      .object({
        minSeconds: z.number().int().min(1).max(604_800).default(DEFAULT_LIFETIME.minSeconds),
        maxSeconds: z.number().int().min(1).max(604_800).default(DEFAULT_LIFETIME.maxSeconds),
      })
      .strict()
      .refine((l) => l.minSeconds <= l.maxSeconds, { message: 'minSeconds must not be greater than maxSeconds' })
      .default({ minSeconds: DEFAULT_LIFETIME.minSeconds, maxSeconds: DEFAULT_LIFETIME.maxSeconds }),
    /** Ports offered when the one asked for is taken. */
    portRange: z
      .tuple([port, port])
      .refine(([low, high]) => low <= high, { message: 'the first port must not be greater than the second' })
      .default([1024, 65535]),
    /** PCP THIRD_PARTY (a host mapping for another one) is refused unless this is true; secure mode still applies. */
    allowThirdParty: z.boolean().default(false),
    /** Announce the external address on start and when it changes (RFC 6886 §3.2.1). Never in dry-run. */
    announce: z.boolean().default(true),
    /** Token bucket of requests read per client; beyond it they are dropped unanswered (DEFAULT_REQUEST_RATE). */
    requestsPerClient: requestRate.default(requestRate.parse({})),
    /** Requests waiting for the mapping lifecycle, per client and in all; beyond, they are dropped unanswered (DEFAULT_PENDING). */
    pending: z
      .object({
        perClient: z.number().int().min(1).max(100_000).default(DEFAULT_PENDING.perClient),
        total: z.number().int().min(1).max(1_000_000).default(DEFAULT_PENDING.total),
      })
      .strict()
      .refine((p) => p.perClient <= p.total, { message: 'perClient must not be greater than total' })
      .default({ ...DEFAULT_PENDING }),
    /** The server port: 5351 (RFC 6886). Another only for tests. */
    port: z.number().int().min(0).max(65535).default(5351),
  })
  .strict();

export type NatPmpOptions = z.output<typeof natPmpOptionsSchema>;
