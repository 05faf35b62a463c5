/** The control socket's file name inside the runtime directory. */
export const SOCKET_NAME = 'upnpd.sock';

/** One request per connection, one JSON line each way. */
export type ControlRequest =
  | { readonly command: 'status' }
  | { readonly command: 'list' }
  | { readonly command: 'delete'; readonly protocol: 'TCP' | 'UDP'; readonly externalPort: number; readonly remoteHost: string }
  | { readonly command: 'delete-pinhole'; readonly uniqueId: number }
  | { readonly command: 'purge'; readonly client?: string };

export type ControlResponse = { readonly ok: true; readonly result: unknown } | { readonly ok: false; readonly error: string };

/** A mapping as `upnpd list --json` prints it. */
export interface ListedMapping {
  readonly protocol: string;
  readonly externalPort: number;
  readonly internalClient: string;
  readonly internalPort: number;
  readonly remoteHost: string;
  readonly description: string;
  /** null for a permanent lease. */
  readonly leaseSecondsLeft: number | null;
  /** The front-end it came through (upnp-igd:1, upnp-igd:2, …). */
  readonly source: string;
  /** The address of the client that made it. */
  readonly createdBy: string;
}

/** An IPv6 pinhole as `upnpd list --json` prints it. */
export interface ListedPinhole {
  /** WANIPv6FirewallControl's UniqueID (what `upnpd delete pinhole ID` takes). */
  readonly uniqueId: number;
  /** '' for any remote host. */
  readonly remoteHost: string;
  /** 0 for any remote port. */
  readonly remotePort: number;
  readonly internalClient: string;
  readonly internalPort: number;
  readonly protocol: string;
  readonly leaseSecondsLeft: number;
  readonly source: string;
  readonly createdBy: string;
}

/** What list, delete and purge answer: the mappings and the pinholes (listed, or removed). */
export interface Listing {
  readonly mappings: readonly ListedMapping[];
  readonly pinholes: readonly ListedPinhole[];
}

/** Bounds of the control channel: it is local and owner-only, but still never unbounded. */
export const CONTROL_LIMITS = {
  maxRequestBytes: 4096,
  idleMs: 5_000,
  clientTimeoutMs: 10_000,
  /** The longest a command waits for a whole answer, however it trickles in. */
  clientDeadlineMs: 60_000,
  /** What a command reads at most: a list of the largest table is a few MB; more is not upnpd's answer. */
  maxReplyChars: 64 * 1024 * 1024,
} as const;
