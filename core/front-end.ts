import type { Clock } from './clock.js';
import type { ResolvedConfig } from './config/schema.js';
import type { ClientLimits } from './limits/client-limits.js';
import type { Logger } from './logger.js';
import type { MappingService } from './mapping/service.js';
import type { RestoredState } from './mapping/state-file.js';
import type { Ipv6Lan } from './net/ipv6.js';
import type { InterfaceAddress } from './net/network-info.js';

/**
 * A protocol front-end (UPnP IGD, NAT-PMP/PCP). Every front-end changes mappings only through the
 * MappingService, so all of them share the same lifecycle, table and `beforeMap` policies.
 */
export interface FrontEnd {
  readonly name: string;
  start(): Promise<void>;
  /** Stops answering; must be safe to call after a failed or partial start. */
  stop(): Promise<void>;
  /** Where a developer can point a client, printed at start (e.g. the description URL). */
  describe?(): string[];
  /** What the operations status shows of this front-end (e.g. the external address it reports). */
  status?(): Readonly<Record<string, unknown>>;
  /**
   * Optional: the LAN addresses changed while running (one added when its duplicate address
   * detection ended, one removed, a renumbering). Serve `lan` from now on in place: listen on the
   * addresses added, stop listening on those removed, and keep the others answering without a
   * break. Resolves false when it cannot (the daemon then stops it and builds it again with the
   * factory, as it does for a front-end without this method).
   */
  updateLan?(lan: LanAddresses): Promise<boolean>;
}

/** The LAN addresses a front-end serves (FrontEndContext's `lan` and `lanIpv6`). */
export interface LanAddresses {
  readonly lan: readonly InterfaceAddress[];
  readonly lanIpv6: Ipv6Lan;
}

/**
 * The mapping lifecycle as a front-end uses it: the same operations the UPnP front-end calls.
 * Every change runs the `beforeMap`/`beforeUnmap` policies and is journalled before it resolves;
 * a refusal rejects with a UpnpError (its code says why: 606 not authorized, 728 no port, ...).
 */
export type FrontEndMappings = Pick<
  MappingService,
  | 'add'
  | 'addAny'
  | 'delete'
  | 'deleteMatching'
  | 'get'
  | 'values'
  | 'ofClient'
  | 'size'
  | 'onChange'
  | 'remainingSeconds'
  // IPv6 pinholes (PCP MAP for an IPv6 internal host): the same operations WANIPv6FirewallControl calls.
  | 'pinholesSupported'
  | 'pinholes'
  | 'openPinhole'
  | 'closePinhole'
>;

/** The gateway's external IPv4 address, watched once by the daemon for every front-end. */
export interface ExternalAddress {
  /** The current address; undefined while there is none (new mappings should then be refused). */
  readonly externalAddress: string | undefined;
  /** Calls `listener` when the address appears, changes or goes away. Returns a function that unsubscribes. */
  onChange(listener: (current: string | undefined, previous: string | undefined) => void): () => void;
}

/** What the daemon gives a front-end plugin when it builds it (after provisioning, and after each LAN change). */
export interface FrontEndContext {
  readonly mappings: FrontEndMappings;
  /** The LAN addresses to serve (loopback in dry-run unless --lan was given); their subnets are "the LAN". */
  readonly lan: readonly InterfaceAddress[];
  /**
   * The LAN IPv6 side served (addresses, link-local with their interface, prefixes): a front-end
   * listening on it answers a peer only when `interfaceOf(peer)` is the interface it listens on.
   */
  readonly lanIpv6: Ipv6Lan;
  /** Per-client bounds shared by every front-end: one state-change bucket per client, whatever protocol it speaks. */
  readonly limits: ClientLimits;
  readonly external: ExternalAddress;
  readonly clock: Clock;
  readonly logger: Logger;
  /** The daemon's config (`dryRun`, `stateDir`, ...). */
  readonly config: ResolvedConfig;
  /**
   * What the start found of the mappings kept in the state directory: `intact`, `none` (no state
   * directory, or nothing kept: a first start) or `lost` (a file could not be read and was set
   * aside). A protocol that tells its clients when the gateway lost their mappings (the NAT-PMP/PCP
   * epoch) starts that again unless it is `intact`.
   */
  readonly restoredState: RestoredState;
}

/**
 * The front-end slot of a plugin (`Plugin.frontEnd`): the daemon calls it once the plugins are
 * provisioned and the saved mappings restored, then starts what it returns. When the LAN addresses
 * change, the running front-end's `updateLan` serves the new ones; without it (or when it resolves
 * false) the front-end is stopped and the factory is called again with the new ones.
 */
export type FrontEndFactory = (context: FrontEndContext) => FrontEnd;
