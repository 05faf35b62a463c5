import { isIPv4 } from 'node:net';
import { z } from 'zod';
import { DEFAULT_CLIENT_LIMITS } from '../limits/client-limits.js';
import { LOG_LEVELS } from '../logger.js';
import { INTERFACE_NAME } from '../net/network-info.js';
import { isPluginSpec, type AnyPluginSpec } from '../plugins/types.js';

const port = z.number().int().min(1).max(65535);
export const interfaceName = z.string().regex(INTERFACE_NAME, 'must be a network interface name (at most 15 characters)');
const ipv4 = z.string().refine((v) => isIPv4(v), 'must be an IPv4 address');

const pluginEntry = z.custom<AnyPluginSpec | false | null | undefined | 0 | ''>(
  (v) => v === false || v === null || v === undefined || v === 0 || v === '' || isPluginSpec(v),
  'must be a plugin factory call such as iptables({...}), or a falsy value',
);

export const leaseSchema = z
  .object({
    defaultSeconds: z.number().int().min(1).max(604800).default(3600),
    maxSeconds: z.number().int().min(1).max(604800).default(604800),
    allowPermanent: z.boolean().default(true),
  })
  .strict();

/** How the mapping state in `stateDir` is kept. */
export const stateSchema = z
  .object({
    /**
     * When the state cannot be written (disk full, read-only, I/O error): 'refuse' answers new
     * mappings 501 until it can again (what a client is told stays true after a restart);
     * 'best-effort' grants them, kept in memory only until a write works.
     */
    onWriteFailure: z.enum(['refuse', 'best-effort']).default('refuse'),
  })
  .strict();

/** UPnP IGD front-end settings. */
export const upnpSchema = z
  .object({
    /** Serve UPnP IGD (SSDP, descriptions, SOAP, GENA). Off for a NAT-PMP/PCP-only gateway. */
    enabled: z.boolean().default(true),
    /** Which IGD version the description advertises ('both' serves IGD:2 and an IGD:1 view). */
    igdVersion: z.union([z.literal(1), z.literal(2), z.literal('both')]).default('both'),
    friendlyName: z.string().min(1).max(64).default('upnpd Internet Gateway'),
    /** Seconds between SSDP alive announcements (jittered). */
    notifyIntervalSeconds: z.number().int().min(10).max(900).default(300),
    /** Ports AddAnyPortMapping may pick. */
    addAnyPortRange: z.tuple([port, port]).default([1024, 65535]),
    /** GENA: most subscriptions one client may hold. */
    maxSubscriptionsPerClient: z.number().int().min(1).max(1000).default(8),
  })
  .strict();

/** A token bucket's settings (`burst` at once, then `perSecond`) with these defaults: every per-client rate limit's schema, the plugins' included. */
export const rateLimitSchema = (defaults: { burst: number; perSecond: number }) =>
  z
    .object({
      burst: z.number().int().min(1).max(100_000).default(defaults.burst),
      perSecond: z.number().positive().max(100_000).default(defaults.perSecond),
    })
    .strict();

/** Per-client resource bounds (a client is a source IP address); see core/limits/client-limits.ts. */
export const limitsSchema = z
  .object({
    /** HTTP connections one client may hold open at once. */
    connectionsPerClient: z.number().int().min(1).max(1024).default(DEFAULT_CLIENT_LIMITS.connectionsPerClient),
    /** Token bucket for state-changing requests (add/delete mappings, SUBSCRIBE) per client. */
    stateChanges: rateLimitSchema(DEFAULT_CLIENT_LIMITS.stateChanges).default(rateLimitSchema(DEFAULT_CLIENT_LIMITS.stateChanges).parse({})),
    /** Token bucket for M-SEARCHes per source. */
    mSearch: rateLimitSchema(DEFAULT_CLIENT_LIMITS.mSearch).default(rateLimitSchema(DEFAULT_CLIENT_LIMITS.mSearch).parse({})),
  })
  .strict();

/** Reconciliation: how often upnpd checks that its firewall rules are still installed. */
export const reconcileSchema = z
  .object({
    /** Seconds between two cheap integrity checks of the firewall (a repair follows when something is missing). */
    intervalSeconds: z.number().min(0.1).max(3600).default(2),
    /**
     * The largest share of the time the periodic checks may take: a large table (a check reads all
     * of it) is checked less often than every intervalSeconds. Firewall events are checked at once.
     */
    maxCheckShare: z.number().gt(0).max(1).default(0.01),
  })
  .strict();

export const configSchema = z
  .object({
    /** LAN interfaces upnpd serves (SSDP, HTTP). */
    lan: z.array(interfaceName).default([]),
    /**
     * Serve SSDP and HTTP also on the IPv6 addresses of the LAN interfaces (link-local, ULA,
     * global); false: IPv4 only. An interface without IPv6 is served over IPv4 as before.
     */
    ipv6: z.boolean().default(true),
    /** WAN interface: external address and counters come from it; DNAT rules match it. */
    wan: interfaceName.optional(),
    /** External IPv4 address to report instead of the WAN interface's own. */
    externalIp: ipv4.optional(),
    /** The firewall backend, by name: a shipped one (iptables, nftables, dry-run) or one listed in `plugins`. */
    backend: z
      .string()
      .regex(/^[\w.-]{1,64}$/, 'must be a backend name such as "nftables"')
      .optional(),
    /** Touch no firewall: log what the backend would do, listen on loopback unless --lan is given. */
    dryRun: z.boolean().default(false),
    /** HTTP port for descriptions, control and events (0: any free port). */
    httpPort: z.number().int().min(0).max(65535).default(0),
    /** Where the mappings are kept across restarts (`mappings.json` and `mappings.journal`); without it they live in memory only. */
    stateDir: z.string().min(1).optional(),
    /** Where the control socket upnpd.sock goes (`upnpd status`, `list`, `delete`, `purge`). */
    runtimeDir: z.string().min(1).default('/run/upnpd'),
    /** The admin HTTP listener (metrics, status page): off unless `listen` is set; loopback only unless allowed. */
    admin: z
      .object({
        listen: z
          .string()
          .regex(/^(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]):\d{1,5}$/, 'must be ADDRESS:PORT, e.g. 127.0.0.1:9191')
          .optional(),
        /** Serve on an address other than loopback (the page can delete mappings: put it behind your own access control). */
        allowNonLoopback: z.boolean().default(false),
      })
      .strict()
      .default({ allowNonLoopback: false }),
    state: stateSchema.default(stateSchema.parse({})),
    logLevel: z.enum(LOG_LEVELS).default('info'),
    /** A client may map only to itself and delete only its own mappings. */
    secureMode: z.boolean().default(true),
    /** Serve NAT-PMP and PCP on UDP 5351 (the natPmp plugin, added with its defaults unless listed). */
    natPmp: z.boolean().default(true),
    /** Leave the firewall rules in place at shutdown. */
    keepRulesOnShutdown: z.boolean().default(false),
    lease: leaseSchema.default(leaseSchema.parse({})),
    upnp: upnpSchema.default(upnpSchema.parse({})),
    limits: limitsSchema.default(limitsSchema.parse({})),
    reconcile: reconcileSchema.default(reconcileSchema.parse({})),
    plugins: z.array(pluginEntry).default([]),
  })
  .strict();

export type UserConfig = z.input<typeof configSchema>;
export type ParsedConfig = z.output<typeof configSchema>;

/** The configuration the daemon runs with. `source` names where it came from, for messages. */
export interface ResolvedConfig extends Omit<ParsedConfig, 'plugins'> {
  readonly source: string;
  /** True when LAN interfaces were named on the command line (dry-run then uses them). */
  readonly lanFromCommandLine: boolean;
  /** The keys set by a command-line flag, with the flag (e.g. `{ backend: '--backend' }`), so that messages name it. */
  readonly flags?: Readonly<Partial<Record<keyof UserConfig, string>>>;
  readonly plugins: readonly AnyPluginSpec[];
  /** For messages: the index in the file's `plugins` of each of `plugins` (falsy entries are left out of it). */
  readonly pluginIndexes?: readonly number[];
}

/** Typed identity helper for upnpd.config.js. */
export function defineConfig(config: UserConfig): UserConfig {
  return config;
}
