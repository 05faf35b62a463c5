import { UpnpError, UpnpErrorCode, type MappingRequest, type Plugin, type PolicyContext, type Protocol, type RefusalReporter } from 'upnpd';
import type { ListeningSockets } from './sockets.js';

export interface ReservedPortsOptions {
  /** External ports below this are refused (1024: the privileged ports). 0 allows them. */
  readonly below: number;
  /** Refuse external ports the gateway itself listens on (read from the kernel at each request). */
  readonly listening: boolean;
}

/** Ports upnpd itself uses, always reserved: SSDP, and NAT-PMP/PCP for the future front-end. */
export const UPNPD_PORTS: readonly { readonly protocol: Protocol; readonly port: number; readonly what: string }[] = [
  { protocol: 'UDP', port: 1900, what: 'SSDP' },
  { protocol: 'UDP', port: 5351, what: 'NAT-PMP/PCP' },
  { protocol: 'UDP', port: 5350, what: 'NAT-PMP/PCP announcements' },
];

/**
 * Refuses external ports that would take traffic away from the gateway itself: the privileged
 * ports (below 1024 by default), ports a gateway service listens on (ssh on 22, DNS on 53, a web
 * UI: a mapping would send WAN traffic for them to the LAN client instead), and upnpd's own ports
 * (its HTTP port, SSDP 1900/udp, NAT-PMP 5350-5351/udp).
 *
 * The fault is 718 ConflictInMappingEntry in both IGD versions: the port is taken (by the
 * gateway), which is what 718 says; IGD:1's AddPortMapping has no 606; clients (libtorrent,
 * miniupnpc users) answer 718 by trying another port; and AddAnyPortMapping moves on to another
 * port on 718.
 */
export class ReservedPortsPolicy implements Plugin {
  readonly name = 'reserved-ports';
  readonly hooks: Plugin['hooks'] = { beforeMap: (request, context) => this.check(request, context) };

  constructor(
    private options: ReservedPortsOptions,
    /** upnpd's HTTP port, when fixed by the config (with port 0 the listening check finds it). */
    private readonly httpPort: number,
    private readonly sockets: ListeningSockets,
    private readonly refusals: RefusalReporter,
  ) {}

  reconfigure(options: unknown): void {
    this.options = options as ReservedPortsOptions;
  }

  private async check(request: MappingRequest, { requester }: PolicyContext): Promise<void> {
    const rule = await this.whyReserved(request.protocol, request.externalPort);
    if (rule) {
      throw this.refusals.refuse(
        rule,
        requester,
        new UpnpError(UpnpErrorCode.ConflictInMappingEntry, `external ${request.protocol} port ${request.externalPort} is reserved (${rule})`),
      );
    }
  }

  private async whyReserved(protocol: Protocol, port: number): Promise<string | undefined> {
    const own = UPNPD_PORTS.find((p) => p.protocol === protocol && p.port === port);
    if (own) return `upnpd's ${own.what} port`;
    if (protocol === 'TCP' && port === this.httpPort) return "upnpd's HTTP port";
    if (port < this.options.below) return `below ${this.options.below}`;
    if (this.options.listening && (await this.sockets.isListening(protocol, port))) return 'the gateway listens on it';
    return undefined;
  }
}
