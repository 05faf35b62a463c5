import { protocolOf, type PortMapping } from 'upnpd';
import { NatPmpResult, natPmpErrorResponse, natPmpExternalAddressResponse, natPmpMapResponse, parseNatPmp, type NatPmpRequest } from './codec.js';
import type { MappingRequests } from './mapping-requests.js';

type MapRequest = Extract<NatPmpRequest, { kind: 'map' }>;

/** NAT-PMP version 0 (RFC 6886): the external address, and UDP/TCP mappings. */
export class NatPmpHandler {
  constructor(
    private readonly requests: MappingRequests,
    private readonly externalAddress: () => string | undefined,
    private readonly epoch: () => number,
  ) {}

  /** The answer to one request from `client`, or undefined when it is dropped. */
  async handle(packet: Buffer, client: string): Promise<Buffer | undefined> {
    const request = parseNatPmp(packet);
    switch (request.kind) {
      case 'malformed':
      case 'response':
        return undefined;
      case 'unsupported-opcode':
        return natPmpErrorResponse(request.opcode, NatPmpResult.unsupportedOpcode, this.epoch());
      case 'external-address':
        return this.externalAddressResponse();
      case 'map':
        return request.lifetime === 0 ? this.delete(request, client) : this.map(request, client);
    }
  }

  /** RFC 6886 §3.2: what a client asks for, and what an announcement says. */
  externalAddressResponse(): Buffer {
    const address = this.externalAddress();
    return natPmpExternalAddressResponse(address === undefined ? NatPmpResult.networkFailure : NatPmpResult.success, this.epoch(), address);
  }

  private async map(request: MapRequest, client: string): Promise<Buffer> {
    const refuse = (result: NatPmpResult) =>
      natPmpMapResponse(request.protocol, result, this.epoch(), { internalPort: request.internalPort, externalPort: 0, lifetime: 0 });
    // Port 0 with a lifetime names no port to map (only a delete may use it).
    if (request.internalPort === 0) return refuse(NatPmpResult.notAuthorized);
    const limited = this.requests.admit(client, 'NAT-PMP map');
    if (limited) return refuse(limited.answer.natPmp);
    const outcome = await this.requests.map({
      via: 'nat-pmp',
      client,
      internalClient: client,
      internalPort: request.internalPort,
      protocol: request.protocol,
      suggestedExternalPort: request.suggestedExternalPort,
      remoteHost: '',
      lifetime: request.lifetime,
      exactPort: false,
    });
    if (!outcome.ok) return refuse(outcome.answer.natPmp);
    return natPmpMapResponse(request.protocol, NatPmpResult.success, this.epoch(), {
      internalPort: request.internalPort,
      externalPort: outcome.mapping.externalPort,
      lifetime: outcome.lifetime,
    });
  }

  /**
   * RFC 6886 §3.4: lifetime 0 deletes the client's mapping of that internal port (made through
   * any protocol: the one mapping a client shares between UPnP and NAT-PMP goes); internal port 0
   * as well deletes all of the client's NAT-PMP mappings of that protocol. Deleting what does not
   * exist succeeds. The answer has external port 0 and lifetime 0.
   */
  private async delete(request: MapRequest, client: string): Promise<Buffer> {
    const answer = (result: NatPmpResult) =>
      natPmpMapResponse(request.protocol, result, this.epoch(), { internalPort: request.internalPort, externalPort: 0, lifetime: 0 });
    const limited = this.requests.admit(client, 'NAT-PMP delete');
    if (limited) return answer(limited.answer.natPmp);
    const ofClient = (m: PortMapping) => m.internalClient === client && m.protocol === request.protocol;
    const matches =
      request.internalPort === 0
        ? (m: PortMapping) => ofClient(m) && protocolOf(m.createdBy.via) === 'nat-pmp'
        : (m: PortMapping) => ofClient(m) && m.internalPort === request.internalPort && m.remoteHost === '';
    const outcome = await this.requests.delete(client, 'nat-pmp', client, matches);
    return answer(Array.isArray(outcome) ? NatPmpResult.success : outcome.answer.natPmp);
  }
}
