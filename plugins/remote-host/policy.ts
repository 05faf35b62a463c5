import {
  SubnetSet,
  UpnpError,
  UpnpErrorCode,
  type InterfaceAddress,
  type MappingRequest,
  type NetworkInfo,
  type Plugin,
  type PolicyContext,
  type RefusalReporter,
} from 'upnpd';

/** Where the gateway's own addresses come from. */
export interface GatewayAddresses {
  /** The LAN addresses of the start (`onLanAddressChange` brings the later ones). */
  readonly lan: readonly InterfaceAddress[];
  readonly network: NetworkInfo;
  readonly wan: string | undefined;
  readonly externalIp: string | undefined;
}

/**
 * A mapping's remote host (the one WAN peer it is restricted to) must be a WAN peer: not a LAN
 * address, not loopback, and not one of the gateway's own addresses (LAN, WAN, the reported
 * external one). Such a mapping could never match a packet from the WAN, or would open the
 * gateway to itself. Refused with 402 Invalid Args: the argument is wrong, and no other port
 * would help (AddAnyPortMapping does not retry).
 */
export class RemoteHostPolicy implements Plugin {
  readonly name = 'remote-host';
  readonly hooks: Plugin['hooks'] = {
    beforeMap: (request, context) => this.check(request, context),
    // The LAN served now, not the one of the start.
    onLanAddressChange: ({ current }) => {
      this.lanSubnets = new SubnetSet(current);
    },
  };
  private lanSubnets: SubnetSet;

  constructor(
    private readonly gateway: GatewayAddresses,
    private readonly refusals: RefusalReporter,
  ) {
    this.lanSubnets = new SubnetSet(gateway.lan);
  }

  private check(request: MappingRequest, { requester }: PolicyContext): void {
    const host = request.remoteHost;
    if (host === '') return;
    const rule = this.whyRefused(host);
    if (rule) throw this.refusals.refuse(rule, requester, new UpnpError(UpnpErrorCode.InvalidArgs, `NewRemoteHost ${host} is ${rule}`));
  }

  private whyRefused(host: string): string | undefined {
    if (host.startsWith('127.') || host === '0.0.0.0') return 'not a WAN host (loopback or unspecified)';
    if (this.lanSubnets.contains(host)) return 'a LAN address';
    // Read at request time: the WAN address may change while upnpd runs (DHCP, PPP).
    const own = [this.gateway.externalIp, ...(this.gateway.wan ? this.gateway.network.ipv4Addresses(this.gateway.wan).map((a) => a.address) : [])];
    if (own.includes(host)) return "the gateway's own address";
    return undefined;
  }
}
