import {
  SubnetSet,
  UpnpError,
  UpnpErrorCode,
  broadcastAddress,
  networkAddress,
  type InterfaceAddress,
  type MappingRequest,
  type Plugin,
  type PolicyContext,
  type RefusalReporter,
} from 'upnpd';

/**
 * A mapping's internal client must be a host of a LAN subnet: not outside it, not its network or
 * broadcast address, and not the gateway's own LAN address. Otherwise a LAN host could turn the
 * gateway into a relay to anywhere (a WAN port forwarded to an internet host: UPnProxy), or expose
 * the router itself. It holds whatever `secureMode` says: secure mode decides whose mappings a
 * client may make (only its own), this decides which hosts a mapping may lead to at all. The LAN is
 * the one served now: it follows a LAN address change (`onLanAddressChange`).
 *
 * Loopback is the one exception to "not the gateway": on 127.0.0.0/8 the client and the gateway
 * are the same host by construction, so 127.0.0.1 may map to 127.0.0.1 (a developer running
 * `upnpc -a 127.0.0.1 ...` against a dry-run upnpd on a laptop). On a real LAN interface the
 * gateway's address is always refused.
 *
 * Refusals are 606 Action not authorized, except through WANIPConnection:1, whose AddPortMapping
 * has no 606 and where clients expect 718 ConflictInMappingEntry (NAT-PMP/PCP: NOT_AUTHORIZED).
 */
export class LanTargetPolicy implements Plugin {
  readonly name = 'lan-target';
  readonly order = 'pre' as const;
  readonly hooks: Plugin['hooks'] = {
    beforeMap: (request, context) => this.check(request, context),
    onLanAddressChange: ({ current }) => this.serve(current),
  };
  private lanSubnets!: SubnetSet;
  private gatewayAddresses!: ReadonlySet<string>;

  constructor(
    lan: readonly InterfaceAddress[],
    private readonly refusals: RefusalReporter,
  ) {
    this.serve(lan);
  }

  /** The LAN these addresses make: their subnets, and the gateway's own addresses in them. */
  private serve(lan: readonly InterfaceAddress[]): void {
    this.lanSubnets = new SubnetSet(lan);
    this.gatewayAddresses = new Set(lan.map((a) => a.address));
  }

  private check(request: MappingRequest, { requester }: PolicyContext): void {
    const problem = this.whyNotOnLan(request.internalClient);
    if (!problem) return;
    const code = requester.via === 'upnp-igd:1' ? UpnpErrorCode.ConflictInMappingEntry : UpnpErrorCode.NotAuthorized;
    throw this.refusals.refuse(problem.rule, requester, new UpnpError(code, problem.message));
  }

  /** The rule a mapping to `internalClient` breaks (short, for counters) and the message, if it breaks one. */
  private whyNotOnLan(internalClient: string): { rule: string; message: string } | undefined {
    const subnet = this.lanSubnets.find(internalClient);
    if (!subnet) return { rule: 'not in a LAN subnet', message: `${internalClient} is not in a LAN subnet` };
    if (subnet.prefixLength <= 30) {
      const special = [networkAddress(subnet.address, subnet.prefixLength), broadcastAddress(subnet.address, subnet.prefixLength)];
      if (special.includes(internalClient))
        return { rule: 'network or broadcast address', message: `${internalClient} is the network or broadcast address of its subnet` };
    }
    if (this.gatewayAddresses.has(internalClient) && !internalClient.startsWith('127.'))
      return { rule: 'the gateway', message: `${internalClient} is the gateway itself` };
    return undefined;
  }
}
