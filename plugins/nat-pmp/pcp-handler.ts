import { isIPv4 } from 'node:net';
import { parseIpv6, type PortMapping, type Protocol } from 'upnpd';
import { errorLifetime, portUnavailable } from './answers.js';
import {
  IP_PROTOCOL,
  PcpOpcode,
  PcpOption,
  PcpResult,
  addressBytes,
  filterOptionData,
  mapResponseBody,
  parsePcp,
  pcpOption,
  pcpResponse,
  type PcpRequest,
} from './codec.js';
import type { MappingRequests } from './mapping-requests.js';
import type { NatPmpOptions } from './options.js';

export type MapRequest = PcpRequest & { readonly map: NonNullable<PcpRequest['map']> };

/** A MAP answered: the result, and on success what was assigned. */
export type MapAnswer =
  | { readonly lifetime: number; readonly externalPort: number; readonly externalAddress?: string; readonly options: readonly Buffer[] }
  | { readonly refused: PcpResult };

/**
 * MAP for one address family of the internal host: IPv4 (NAT: a port mapping, Ipv4Map) and IPv6
 * (a firewall pinhole, no translation, Ipv6Map in pcp-pinholes.ts).
 */
export interface MapFamily {
  map(request: MapRequest, client: string, internalClient: string): Promise<MapAnswer>;
}

export const PROTOCOLS: Readonly<Record<number, Protocol>> = { [IP_PROTOCOL.TCP]: 'TCP', [IP_PROTOCOL.UDP]: 'UDP' };

/** PCP version 2 (RFC 6887): ANNOUNCE and MAP. PEER is not served (UNSUPP_OPCODE). */
export class PcpHandler {
  private readonly families: { readonly ipv4: MapFamily; readonly ipv6?: MapFamily };

  constructor(
    requests: MappingRequests,
    private readonly options: NatPmpOptions,
    private readonly externalAddress: () => string | undefined,
    private readonly epoch: () => number,
    ipv6?: MapFamily,
  ) {
    this.families = { ipv4: new Ipv4Map(requests, externalAddress), ...(ipv6 ? { ipv6 } : {}) };
  }

  /** The answer to one request from `client`, or undefined when it is dropped. */
  async handle(packet: Buffer, client: string): Promise<Buffer | undefined> {
    const parsed = parsePcp(packet);
    if (parsed.kind === 'drop') return undefined;
    if (parsed.kind === 'error') return this.error(parsed.opcode, parsed.result, parsed.body);
    const request = parsed.request;
    // RFC 6887 §8.3: the client address field must be the packet's source (no NAT between them).
    if (!sameAddress(request.clientAddress, client)) return this.error(request.opcode, PcpResult.ADDRESS_MISMATCH, request.body);
    if (request.opcode === PcpOpcode.announce) return pcpResponse({ opcode: PcpOpcode.announce, result: PcpResult.SUCCESS, lifetime: 0, epoch: this.epoch() });
    return this.map(request as MapRequest, client);
  }

  /** RFC 6887 §14.1.3: the unsolicited ANNOUNCE sent to the LAN on start and on an external-address change. */
  announcement(): Buffer {
    return pcpResponse({ opcode: PcpOpcode.announce, result: PcpResult.SUCCESS, lifetime: 0, epoch: this.epoch() });
  }

  private async map(request: MapRequest, client: string): Promise<Buffer> {
    const thirdParty = request.options.thirdParty;
    // RFC 6887 §13.1: a THIRD_PARTY naming the sender itself MUST be MALFORMED_REQUEST (so that such
    // a request fails alike on servers that do and do not implement THIRD_PARTY).
    if (thirdParty !== undefined && sameAddress(thirdParty, client)) return this.error(request.opcode, PcpResult.MALFORMED_REQUEST, request.body);
    if (thirdParty !== undefined && !this.options.allowThirdParty) return this.error(request.opcode, PcpResult.NOT_AUTHORIZED, request.body);
    const internalClient = thirdParty ?? client;
    // MAP does not cross families: the internal host is of the sender's family (no IPv6 side: mismatch).
    const family = isIPv4(internalClient) ? this.families.ipv4 : this.families.ipv6;
    if (!family || isIPv4(internalClient) !== isIPv4(client)) return this.error(request.opcode, PcpResult.ADDRESS_MISMATCH, request.body);
    const answer = await family.map(request, client, internalClient);
    if ('refused' in answer) return this.error(request.opcode, answer.refused, request.body);
    return pcpResponse({
      opcode: PcpOpcode.map,
      result: PcpResult.SUCCESS,
      lifetime: answer.lifetime,
      epoch: this.epoch(),
      body: mapResponseBody(
        request.map,
        { externalPort: answer.externalPort, externalAddress: answer.externalAddress ?? this.externalAddress() ?? '0.0.0.0' },
        answer.options,
      ),
    });
  }

  /** RFC 6887 §8.3: an error answer echoes the opcode-specific part and options of the request. */
  private error(opcode: number, result: PcpResult, body: Buffer): Buffer {
    return pcpResponse({ opcode, result, lifetime: errorLifetime(result), epoch: this.epoch(), body });
  }
}

/** The options a successful MAP answer echoes (RFC 6887 §13: PREFER_FAILURE, FILTER, THIRD_PARTY as processed). */
export function echoedOptions(options: PcpRequest['options']): Buffer[] {
  return [
    ...(options.preferFailure ? [pcpOption(PcpOption.PREFER_FAILURE)] : []),
    ...options.filters.map((f) => pcpOption(PcpOption.FILTER, filterOptionData(f))),
    ...(options.thirdParty !== undefined ? [pcpOption(PcpOption.THIRD_PARTY, addressBytes(options.thirdParty))] : []),
  ];
}

/** Whether two address texts name the same address (IPv6: whatever the spelling, the zone ignored). */
export function sameAddress(a: string, b: string): boolean {
  if (a === b) return true;
  const [x, y] = [parseIpv6(a), parseIpv6(b)];
  return x !== undefined && y !== undefined && x.value === y.value;
}

/** MAP for an IPv4 internal host: a port mapping in the one table, owned by the request's nonce. */
class Ipv4Map implements MapFamily {
  constructor(
    private readonly requests: MappingRequests,
    private readonly externalAddress: () => string | undefined,
  ) {}

  async map(request: MapRequest, client: string, internalClient: string): Promise<MapAnswer> {
    const { map, options } = request;
    const protocol = PROTOCOLS[map.protocol];
    // Protocol 0 ("all protocols") and others than TCP/UDP are not mapped.
    if (!protocol) return { refused: PcpResult.UNSUPP_PROTOCOL };
    if (map.internalPort === 0 && request.lifetime !== 0) return { refused: PcpResult.MALFORMED_REQUEST };
    const remote = remoteHostOf(options.filters);
    if ('refused' in remote) return remote;
    const nonce = map.nonce.toString('hex');
    const held = (m: PortMapping) => m.internalClient === internalClient && m.protocol === protocol;
    const echoed = echoedOptions(options);

    const limited = this.requests.admit(client, request.lifetime === 0 ? 'PCP delete' : 'PCP map');
    if (limited) return { refused: limited.answer.pcp };

    if (request.lifetime === 0) {
      // Delete: the mapping of that internal port (port 0: all of this nonce's), if this nonce owns it.
      const matches =
        map.internalPort === 0 ? (m: PortMapping) => held(m) && m.ownerNonce === nonce : (m: PortMapping) => held(m) && m.internalPort === map.internalPort;
      const owned = this.requests.find(internalClient, matches);
      if (owned.some((m) => m.ownerNonce !== undefined && m.ownerNonce !== nonce)) return { refused: PcpResult.NOT_AUTHORIZED };
      const outcome = await this.requests.delete(client, 'pcp', internalClient, (m) => matches(m) && (m.ownerNonce === undefined || m.ownerNonce === nonce));
      if (!Array.isArray(outcome)) return { refused: outcome.answer.pcp };
      return { lifetime: 0, externalPort: owned[0]?.externalPort ?? map.suggestedExternalPort, options: echoed };
    }

    const external = this.externalAddress();
    if (map.suggestedExternalAddress !== '' && map.suggestedExternalAddress !== external && options.preferFailure) {
      return { refused: PcpResult.CANNOT_PROVIDE_EXTERNAL };
    }
    const existing = this.requests.find(internalClient, (m) => held(m) && m.internalPort === map.internalPort);
    if (existing.some((m) => m.ownerNonce !== undefined && m.ownerNonce !== nonce)) return { refused: PcpResult.NOT_AUTHORIZED };
    // A new FILTER replaces the old one: the mapping moves to the new remote host.
    const moved = existing.filter((m) => m.remoteHost !== remote.remoteHost && m.ownerNonce === nonce);
    if (moved.length > 0) {
      const outcome = await this.requests.delete(client, 'pcp', internalClient, (m) => moved.includes(m));
      if (!Array.isArray(outcome)) return { refused: outcome.answer.pcp };
    }
    const outcome = await this.requests.map({
      via: 'pcp',
      client,
      internalClient,
      internalPort: map.internalPort,
      protocol,
      suggestedExternalPort: map.suggestedExternalPort,
      remoteHost: remote.remoteHost,
      lifetime: request.lifetime,
      ownerNonce: nonce,
      exactPort: options.preferFailure && map.suggestedExternalPort !== 0,
    });
    if (!outcome.ok) {
      // Refused: the mapping stays as it was, to its old remote host.
      await this.requests.putBack(moved);
      // PREFER_FAILURE: the suggested port is taken or refused (RFC 6887 §13.2).
      return { refused: options.preferFailure && portUnavailable(outcome.refusal) ? PcpResult.CANNOT_PROVIDE_EXTERNAL : outcome.answer.pcp };
    }
    return { lifetime: outcome.lifetime, externalPort: outcome.mapping.externalPort, options: echoed };
  }
}

/**
 * The table's remote host for the FILTER options (RFC 6887 §13.3). The table holds one remote
 * host per mapping and no remote port, so: no FILTER or prefix 0 → any host; one FILTER for one
 * IPv4 peer (prefix 128, port 0) → that host; several → EXCESSIVE_REMOTE_PEERS; a shorter prefix
 * or a remote port → UNSUPP_OPTION (we cannot enforce it, and will not pretend to); an IPv6 peer
 * for an IPv4 mapping → MALFORMED_OPTION.
 */
function remoteHostOf(filters: PcpRequest['options']['filters']): { remoteHost: string } | { refused: PcpResult } {
  if (filters.length === 0) return { remoteHost: '' };
  if (filters.length > 1) return { refused: PcpResult.EXCESSIVE_REMOTE_PEERS };
  const [filter] = filters as [PcpRequest['options']['filters'][number]];
  if (filter.prefixLength === 0) return { remoteHost: '' };
  if (!isIPv4(filter.remoteAddress)) return { refused: PcpResult.MALFORMED_OPTION };
  if (filter.prefixLength !== 128 || filter.remotePort !== 0) return { refused: PcpResult.UNSUPP_OPTION };
  return { remoteHost: filter.remoteAddress };
}
