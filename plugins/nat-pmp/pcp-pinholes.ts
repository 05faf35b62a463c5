import { isIPv4 } from 'node:net';
import type { FrontEndMappings, Pinhole, Requester } from 'upnpd';
import { PcpResult, type PcpRequest } from './codec.js';
import type { MappingRequests } from './mapping-requests.js';
import { PROTOCOLS, echoedOptions, sameAddress, type MapAnswer, type MapFamily, type MapRequest } from './pcp-handler.js';

/** The pinhole operations PCP uses (the same MappingService calls as WANIPv6FirewallControl). */
export type PinholeOperations = Pick<FrontEndMappings, 'pinholesSupported' | 'pinholes' | 'openPinhole' | 'closePinhole' | 'remainingSeconds'>;

/**
 * MAP for an IPv6 internal host (RFC 6887 §11, with no translation): a firewall pinhole in the one
 * table, through MappingService.openPinhole/closePinhole, so the core's rules hold as for UPnP (a
 * host opens pinholes only to its own global/ULA addresses; quotas, policies, persistence). The
 * assigned external address and port are the internal ones.
 *
 * The nonce of the MAP that opened a pinhole owns it (the pinhole's `ownerNonce`, kept in the state
 * file, so also after a restart): a renewal or delete with another nonce is NOT_AUTHORIZED. A
 * pinhole UPnP opened has no nonce: the first MAP of its host takes it over.
 */
export class Ipv6Map implements MapFamily {
  constructor(
    private readonly requests: MappingRequests,
    private readonly pinholes: PinholeOperations,
  ) {}

  async map(request: MapRequest, client: string, internalClient: string): Promise<MapAnswer> {
    const { map, options } = request;
    const protocol = PROTOCOLS[map.protocol];
    if (!protocol) return { refused: PcpResult.UNSUPP_PROTOCOL };
    if (map.internalPort === 0 && request.lifetime !== 0) return { refused: PcpResult.MALFORMED_REQUEST };
    // A backend without pinholes: the admin's choice, that will not change by asking again (long error lifetime).
    if (!this.pinholes.pinholesSupported) return { refused: PcpResult.NOT_AUTHORIZED };
    const remote = remotePeerOf(options.filters);
    if ('refused' in remote) return remote;
    const nonce = map.nonce.toString('hex');
    const requester: Requester = { address: client, via: 'pcp' };
    const held = (p: Pinhole) => sameAddress(p.internalClient, internalClient) && p.protocol === protocol;
    const echoed = echoedOptions(options);

    const limited = this.requests.admit(client, request.lifetime === 0 ? 'PCP pinhole delete' : 'PCP pinhole map');
    if (limited) return { refused: limited.answer.pcp };

    const matches = map.internalPort === 0 ? (p: Pinhole) => held(p) && p.ownerNonce === nonce : (p: Pinhole) => held(p) && p.internalPort === map.internalPort;
    const existing = [...this.pinholes.pinholes.values()].filter(matches);
    if (existing.some((p) => p.ownerNonce !== undefined && p.ownerNonce !== nonce)) return { refused: PcpResult.NOT_AUTHORIZED };

    if (request.lifetime === 0) {
      const closed = await this.close(existing, requester);
      if (closed) return closed;
      return { lifetime: 0, externalPort: map.internalPort, externalAddress: internalClient, options: echoed };
    }

    // No translation: the external address and port are the internal ones. Another one suggested is
    // not had; with PREFER_FAILURE that is a failure (RFC 6887 §13.2), else the internal ones are answered.
    const suggested = map.suggestedExternalAddress;
    const otherAddress = suggested !== '' && !sameAddress(suggested, internalClient);
    const otherPort = map.suggestedExternalPort !== 0 && map.suggestedExternalPort !== map.internalPort;
    if (options.preferFailure && (otherAddress || otherPort)) return { refused: PcpResult.CANNOT_PROVIDE_EXTERNAL };

    // A new FILTER replaces the old one: the pinhole to the old remote peer is closed.
    const moved = existing.filter((p) => !sameAddress(p.remoteHost, remote.remoteHost) || p.remotePort !== remote.remotePort);
    const closed = await this.close(moved, requester);
    if (closed) return closed;
    const leaseSeconds = this.requests.clamp(request.lifetime);
    const ask = { ...remote, internalClient, internalPort: map.internalPort, protocol, leaseSeconds, ownerNonce: nonce };
    try {
      await this.pinholes.openPinhole(ask, requester);
      return { lifetime: leaseSeconds, externalPort: map.internalPort, externalAddress: internalClient, options: echoed };
    } catch (err) {
      const refused = this.requests.refusedBy(err, client, `pcp pinhole ${protocol} [${internalClient}]:${map.internalPort}`).answer.pcp;
      // Refused: the pinhole stays as it was, to its old remote peer.
      await this.reopen(moved);
      return { refused };
    }
  }

  /** Opens again pinholes closed for a change that was then refused, each with its owner, nonce and the lease it had left. */
  private async reopen(pinholes: readonly Pinhole[]): Promise<void> {
    for (const { id, expiresAt, createdBy, ...request } of pinholes) {
      await this.pinholes.openPinhole({ ...request, leaseSeconds: this.pinholes.remainingSeconds({ expiresAt }) }, createdBy).catch((err: unknown) => {
        this.requests.refusedBy(err, createdBy.address, `pcp pinhole reopen ${id}`);
      });
    }
  }

  /** Closes pinholes one by one; the refusal of the first that cannot be closed, or undefined. */
  private async close(pinholes: readonly Pinhole[], requester: Requester): Promise<MapAnswer | undefined> {
    for (const pinhole of pinholes) {
      try {
        await this.pinholes.closePinhole(pinhole.id, requester);
      } catch (err) {
        return { refused: this.requests.refusedBy(err, requester.address, `pcp pinhole delete ${pinhole.id}`).answer.pcp };
      }
    }
    return undefined;
  }
}

/**
 * The pinhole's remote side for the FILTER options (RFC 6887 §13.3). A pinhole holds one remote
 * host (or any) and one remote port (or any): no FILTER → any; one FILTER with prefix 0 → "no
 * filter" (§13.3), any host and port, whatever port it names; prefix 128 → that host, its port;
 * several → EXCESSIVE_REMOTE_PEERS; another prefix length → UNSUPP_OPTION (a pinhole cannot hold a
 * prefix); an IPv4 peer → MALFORMED_OPTION.
 */
function remotePeerOf(filters: PcpRequest['options']['filters']): { remoteHost: string; remotePort: number } | { refused: PcpResult } {
  if (filters.length === 0) return { remoteHost: '', remotePort: 0 };
  if (filters.length > 1) return { refused: PcpResult.EXCESSIVE_REMOTE_PEERS };
  const [filter] = filters as [PcpRequest['options']['filters'][number]];
  if (filter.prefixLength === 0) return { remoteHost: '', remotePort: 0 };
  if (isIPv4(filter.remoteAddress)) return { refused: PcpResult.MALFORMED_OPTION };
  if (filter.prefixLength !== 128) return { refused: PcpResult.UNSUPP_OPTION };
  return { remoteHost: filter.remoteAddress, remotePort: filter.remotePort };
}
