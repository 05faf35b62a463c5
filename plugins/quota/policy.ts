import { UpnpError, UpnpErrorCode, type MappingRequest, type Plugin, type PolicyContext, type RefusalReporter } from 'upnpd';

/**
 * Default quotas. A client is a source IP address. What clients need: a game console or a torrent
 * client maps 1–4 ports, a host running several such programs a few dozen at most. What a gateway
 * holds: each mapping is a DNAT and a forward rule (iptables) and a table entry of about 1 KB with
 * its 256-byte description; 4096 of them keep upnpd's memory and its state file small (a few MB)
 * and iptables' linear rule walk short, while 32 busy LAN hosts still fit at the per-client limit.
 */
export const DEFAULT_QUOTAS = {
  perClient: 128,
  total: 4096,
} as const;

export interface QuotaOptions {
  /** Most mappings one client (requester address) may hold. */
  readonly perClient: number;
  /** Most mappings the gateway holds in all. */
  readonly total: number;
}

/**
 * Per-client and global mapping quotas, counted from the table as it stands inside the change
 * (a policy may run more than once per request, so it keeps no count of its own). A renewal (the
 * same key, already held by this client) never counts against the quota. Refused with 728
 * NoPortMapsAvailable, which AddAnyPortMapping does not retry on another port.
 */
export class QuotaPolicy implements Plugin {
  readonly name = 'quota';
  readonly hooks: Plugin['hooks'] = { beforeMap: (request, context) => this.check(request, context) };

  constructor(
    private options: QuotaOptions,
    private readonly refusals: RefusalReporter,
  ) {}

  reconfigure(options: unknown): void {
    this.options = options as QuotaOptions;
  }

  private check(_request: MappingRequest, { requester, existing, mappings }: PolicyContext): void {
    // `existing` is the mapping under the request's key: replacing it adds nothing.
    const replaced = existing;
    if (mappings.size - (replaced ? 1 : 0) >= this.options.total) {
      throw this.refusals.refuse(
        `total ${this.options.total}`,
        requester,
        new UpnpError(UpnpErrorCode.NoPortMapsAvailable, `the gateway holds its maximum of ${this.options.total} mappings`),
      );
    }
    if (replaced?.createdBy.address === requester.address) return;
    // Counted by the table as it stands inside the change, in O(1): a restore asks this of every mapping.
    if (mappings.heldBy(requester.address) >= this.options.perClient) {
      throw this.refusals.refuse(
        `perClient ${this.options.perClient}`,
        requester,
        new UpnpError(UpnpErrorCode.NoPortMapsAvailable, `${requester.address} holds its maximum of ${this.options.perClient} mappings`),
      );
    }
  }
}
