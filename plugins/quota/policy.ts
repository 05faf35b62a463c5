import { ClientQuotaError, UpnpError, UpnpErrorCode, type Plugin, type QuotaErrorCode, type RefusalReporter, type Requester } from 'upnpd';

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

/** What a quota counts: the table's mappings and IPv6 pinholes, as they stand inside the change. */
interface Entries {
  readonly size: number;
  values(): Iterable<{ readonly createdBy: Requester }>;
  /** How many entries `address` created, where the table counts them itself (the mapping table does). */
  heldBy?(address: string): number;
}

/**
 * Per-client and global quotas, counted from the table as it stands inside the change (a policy
 * may run more than once per request, so it keeps no count of its own). Mappings and IPv6
 * pinholes share the budget: each is a rule in the firewall and an entry in the table. A renewal
 * (the same key or pinhole, already held by this client) never counts against the quota. A
 * mapping is refused with 728 NoPortMapsAvailable (which AddAnyPortMapping does not retry on
 * another port), a pinhole with 701 PinholeSpaceExhausted; a per-client refusal is a
 * ClientQuotaError, which PCP answers with USER_EX_QUOTA.
 */
export class QuotaPolicy implements Plugin {
  readonly name = 'quota';
  readonly hooks: Plugin['hooks'] = {
    beforeMap: (_request, { requester, existing, mappings, pinholes }) =>
      this.check(requester, existing, [mappings, ...(pinholes ? [pinholes] : [])], UpnpErrorCode.NoPortMapsAvailable),
    beforePinhole: (_request, { requester, existing, pinholes, mappings }) =>
      this.check(requester, existing, [mappings ?? EMPTY, pinholes], UpnpErrorCode.PinholeSpaceExhausted),
  };

  constructor(
    private options: QuotaOptions,
    private readonly refusals: RefusalReporter,
  ) {}

  reconfigure(options: unknown): void {
    this.options = options as QuotaOptions;
  }

  private check(requester: Requester, existing: { readonly createdBy: Requester } | undefined, tables: readonly Entries[], code: QuotaErrorCode): void {
    const size = tables.reduce((sum, t) => sum + t.size, 0);
    // `existing` is what the request renews or replaces: it adds nothing.
    if (size - (existing ? 1 : 0) >= this.options.total) {
      throw this.refusals.refuse(
        `total ${this.options.total}`,
        requester,
        new UpnpError(code, `the gateway holds its maximum of ${this.options.total} entries`),
      );
    }
    if (existing?.createdBy.address === requester.address) return;
    // Counted as the tables stand inside the change; the mapping table counts per client in O(1)
    // (a restore asks this of every mapping), the few pinholes are walked.
    const held = tables.reduce((sum, table) => sum + heldIn(table, requester.address), 0);
    if (held >= this.options.perClient) {
      throw this.refusals.refuse(
        `perClient ${this.options.perClient}`,
        requester,
        new ClientQuotaError(code, `${requester.address} holds its maximum of ${this.options.perClient} mappings and pinholes`),
      );
    }
  }
}

const EMPTY: Entries = { size: 0, values: () => [] };

function heldIn(table: Entries, address: string): number {
  if (table.heldBy) return table.heldBy(address);
  let held = 0;
  for (const e of table.values()) if (e.createdBy.address === address) held++;
  return held;
}
