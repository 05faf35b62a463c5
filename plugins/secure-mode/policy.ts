import { inject, injectable } from 'tsyringe';
import {
  CLOCK,
  LAN_ADDRESSES,
  LOGGER,
  REFUSALS,
  RefusalReporter,
  SubnetSet,
  UpnpError,
  UpnpErrorCode,
  broadcastAddress,
  networkAddress,
  type Clock,
  type InterfaceAddress,
  type Logger,
  type MappingRequest,
  type Plugin,
  type PolicyContext,
  type PortMapping,
  type RefusalRegistry,
  type Requester,
} from 'upnpd';

/**
 * Secure mode: a client may map ports only to itself and delete only mappings that point at
 * itself — on every state-changing action, including DeletePortMappingRange (the core skips the
 * mappings this refuses). The internal client must also be a host of a LAN subnet: not outside
 * it, not its network or broadcast address, and not the gateway's own LAN address. The LAN is the
 * one served now: it follows a LAN address change (`onLanAddressChange`).
 *
 * Loopback is the one exception to "not the gateway": on 127.0.0.0/8 the client and the gateway
 * are the same host by construction, so 127.0.0.1 may map to 127.0.0.1 (a developer running
 * `upnpc -a 127.0.0.1 ...` against a dry-run upnpd on a laptop). On a real LAN interface the
 * gateway's address is always refused, so no LAN client can expose the router itself.
 *
 * Refusals of a mapping are 606 Action not authorized, except through WANIPConnection:1, whose
 * AddPortMapping has no 606 and where clients expect 718 ConflictInMappingEntry.
 */
@injectable()
export class SecureModePolicy implements Plugin {
  readonly name = 'secure-mode';
  readonly order = 'pre' as const;
  readonly hooks: Plugin['hooks'];
  private lanSubnets!: SubnetSet;
  private gatewayAddresses!: ReadonlySet<string>;
  private readonly refusals: RefusalReporter;

  constructor(
    @inject(LAN_ADDRESSES) lan: readonly InterfaceAddress[],
    @inject(REFUSALS) registry: RefusalRegistry,
    @inject(LOGGER) logger: Logger,
    @inject(CLOCK) clock: Clock,
  ) {
    this.refusals = new RefusalReporter('secure-mode', registry, logger, clock);
    this.serve(lan);
    this.hooks = {
      beforeMap: (request, context) => this.checkMap(request, context),
      beforeUnmap: (mapping, context) => this.checkUnmap(mapping, context),
      onLanAddressChange: ({ current }) => this.serve(current),
    };
  }

  /** The LAN these addresses make: their subnets, and the gateway's own addresses in them. */
  private serve(lan: readonly InterfaceAddress[]): void {
    this.lanSubnets = new SubnetSet(lan);
    this.gatewayAddresses = new Set(lan.map((a) => a.address));
  }

  private checkMap(request: MappingRequest, { requester }: PolicyContext): void {
    const problem = this.whyNotMappable(request.internalClient, requester);
    if (problem) {
      const code = requester.via === 'upnp-igd:1' ? UpnpErrorCode.ConflictInMappingEntry : UpnpErrorCode.NotAuthorized;
      throw this.refusals.refuse(problem.rule, requester, new UpnpError(code, problem.message));
    }
  }

  private checkUnmap(mapping: PortMapping, { requester }: PolicyContext): void {
    if (mapping.internalClient !== requester.address) {
      const error = new UpnpError(UpnpErrorCode.NotAuthorized, `${requester.address} may not delete a mapping to ${mapping.internalClient}`);
      throw this.refusals.refuse("another client's mapping", requester, error);
    }
  }

  /** The rule a mapping breaks (short, for counters) and the message, if it breaks one. */
  private whyNotMappable(internalClient: string, requester: Requester): { rule: string; message: string } | undefined {
    if (internalClient !== requester.address)
      return { rule: 'another host', message: `${requester.address} may map ports only to itself, not to ${internalClient}` };
    const subnet = this.lanSubnets.find(internalClient);
    if (!subnet) return { rule: 'not in a LAN subnet', message: `${internalClient} is not in a LAN subnet` };
    if (subnet.prefixLength <= 30) {
      const special = [networkAddress(subnet.address, subnet.prefixLength), broadcastAddress(subnet.address, subnet.prefixLength)];
      if (special.includes(internalClient))
        return { rule: 'network or broadcast address', message: `${internalClient} is the network or broadcast address of its subnet` };
    }
    if (this.gatewayAddresses.has(internalClient) && !isLoopback(internalClient))
      return { rule: 'the gateway', message: `${internalClient} is the gateway itself` };
    return undefined;
  }
}

function isLoopback(address: string): boolean {
  return address.startsWith('127.');
}
