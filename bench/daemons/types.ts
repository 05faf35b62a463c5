import type { Testbed } from '../../test/netns/topology.js';

/** What a daemon under test needs to know about the gateway it runs on. */
export interface GatewaySetup {
  readonly testbed: Testbed;
  /** A directory of the harness's own for config and state files. */
  readonly workDir: string;
  readonly httpPort: number;
  readonly stun: { readonly host: string; readonly port: number };
  /** The LAN hosts the load comes from (addresses of the LAN client's namespace). */
  readonly lanHosts: readonly string[];
  /** The IPv6 LAN hosts the pinhole load comes from (addresses of the LAN client's namespace). */
  readonly lanHosts6: readonly string[];
  /**
   * Lifts the daemon's per-client rate limit on state changes (upnpd's `limits.stateChanges`;
   * miniupnpd has none), for rows whose load comes from one or a few LAN addresses.
   */
  readonly raiseClientRateLimits?: boolean;
}

/** Mappings a daemon should find persisted when it starts (for the start-up figure). */
export interface PersistedMappings {
  readonly count: number;
  readonly firstPort: number;
  /** The LAN hosts that made them, in turn (mapping i to clients[i % length], to itself). */
  readonly clients: readonly string[];
}

export interface RunningDaemon {
  /** The daemon's own process (for VmRSS). */
  readonly pid: number;
  readonly descriptionUrl: string;
  /** What the daemon printed, or where to look, for error messages. */
  diagnostics(): string;
  /**
   * Stops it (SIGTERM, then SIGKILL) and removes what it left in the gateway's firewall and files.
   * Resolves with a remark when stopping took force (worth a line in the log, not a failure);
   * rejects when the daemon failed in a way that makes its figures suspect.
   */
  stop(): Promise<string | undefined>;
}

export type Persistence = { readonly supported: true } | { readonly supported: false; readonly reason: string };

/**
 * What a floor serves: constant answers (Node's floor: GetExternalIPAddress, and the entries of a
 * walk), or AddPortMapping's rules committed one mapping at a time (the x_tables floor).
 */
export type Floor = 'constant answers' | 'adds';

/** One of the daemons the benchmark compares, started the same way on the same gateway. */
export interface DaemonUnderTest {
  readonly name: string;
  readonly persistence: Persistence;
  /** A floor serves only what its phases measure, and only those run (Floor). */
  readonly floor?: Floor;
  /** Version line(s) for the results file. */
  version(): Promise<string>;
  /** Starts the daemon in the gateway namespace; resolves once its process runs (not yet serving). */
  start(gateway: GatewaySetup, persisted?: PersistedMappings): Promise<RunningDaemon>;
}
