/** The control socket's file name inside the runtime directory. */
export const SOCKET_NAME = 'upnpd.sock';

/** One request per connection, one JSON line each way. */
export type ControlRequest =
  | { readonly command: 'status' }
  | { readonly command: 'list' }
  | { readonly command: 'delete'; readonly protocol: 'TCP' | 'UDP'; readonly externalPort: number; readonly remoteHost: string }
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

/** Bounds of the control channel: it is local and owner-only, but still never unbounded. */
export const CONTROL_LIMITS = { maxRequestBytes: 4096, idleMs: 5_000, clientTimeoutMs: 10_000 } as const;
