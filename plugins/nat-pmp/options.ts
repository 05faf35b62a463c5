import { z } from 'upnpd';

const port = z.number().int().min(1).max(65535);

/** RFC 6887 §15: lifetimes a server should grant, at least 120 s, at most 24 h. */
export const DEFAULT_LIFETIME = { minSeconds: 120, maxSeconds: 86_400 } as const;

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
    /** The server port: 5351 (RFC 6886). Another only for tests. */
    port: z.number().int().min(0).max(65535).default(5351),
  })
  .strict();

export type NatPmpOptions = z.output<typeof natPmpOptionsSchema>;
