import type { FrontEndContext, PortMapping, Protocol, Requester } from 'upnpd';
import { answerFor, describeRefusal, refusalOf, type Refusal, type RefusalAnswer } from './answers.js';
import type { NatPmpOptions } from './options.js';

/** How many ports are tried for one request before answering "out of resources". */
const MAX_PORT_ATTEMPTS = 128;

/** What NAT-PMP and PCP ask of the mapping lifecycle, in their own terms. */
export interface MapAsk {
  readonly via: 'nat-pmp' | 'pcp';
  readonly client: string;
  readonly internalClient: string;
  readonly internalPort: number;
  readonly protocol: Protocol;
  readonly suggestedExternalPort: number;
  /** '' for any remote host, else the one remote peer allowed (PCP FILTER). */
  readonly remoteHost: string;
  /** Seconds asked for (not 0: that is a delete). */
  readonly lifetime: number;
  readonly ownerNonce?: string;
  /** PCP PREFER_FAILURE: the suggested port or nothing. */
  readonly exactPort: boolean;
}

export type Granted = { readonly ok: true; readonly mapping: PortMapping; readonly lifetime: number };
export type Refused = { readonly ok: false; readonly refusal: Refusal; readonly answer: RefusalAnswer };

/**
 * The part NAT-PMP and PCP share: admission (client limits, an external address), lifetime
 * clamps, and the calls into the mapping lifecycle, whose refusals become result codes in one
 * place (answers.ts).
 */
export class MappingRequests {
  constructor(
    private readonly context: FrontEndContext,
    private readonly options: NatPmpOptions,
  ) {}

  /** The lifetime granted for one asked (RFC 6887 §15): within [min, max] of the options. */
  clamp(lifetime: number): number {
    const { minSeconds, maxSeconds } = this.options.lifetime;
    return Math.min(maxSeconds, Math.max(minSeconds, lifetime));
  }

  /** Refused when the client sends state changes too fast (shared with UPnP: one bucket per client). */
  admit(client: string, what: string): Refused | undefined {
    const decision = this.context.limits.admitStateChange(client, what);
    return decision.allowed ? undefined : this.refused({ kind: 'rate-limited' }, client, what);
  }

  async map(ask: MapAsk): Promise<Granted | Refused> {
    const what = `${ask.via} map ${ask.protocol} ${ask.internalClient}:${ask.internalPort}`;
    if (this.context.external.externalAddress === undefined) return this.refused({ kind: 'no-external-address' }, ask.client, what);
    const lifetime = this.clamp(ask.lifetime);
    const requester: Requester = { address: ask.client, via: ask.via };
    const request = {
      remoteHost: ask.remoteHost,
      externalPort: ask.suggestedExternalPort || ask.internalPort,
      protocol: ask.protocol,
      internalClient: ask.internalClient,
      internalPort: ask.internalPort,
      enabled: true,
      description: `${ask.via === 'pcp' ? 'PCP' : 'NAT-PMP'} ${ask.internalClient}:${ask.internalPort}`,
      leaseSeconds: lifetime,
      ...(ask.ownerNonce === undefined ? {} : { ownerNonce: ask.ownerNonce }),
    };
    const portRange: readonly [number, number] = ask.exactPort ? [request.externalPort, request.externalPort] : this.options.portRange;
    try {
      const mapping = await this.context.mappings.addAny(request, requester, { portRange, maxAttempts: MAX_PORT_ATTEMPTS, freePortsOnly: true });
      return { ok: true, mapping, lifetime: this.lifetimeLeft(mapping, lifetime) };
    } catch (err) {
      return this.refused(refusalOf(err), ask.client, what);
    }
  }

  /** The internal client's mappings that match (to look before a change; the change itself re-checks inside the lifecycle). */
  find(internalClient: string, matches: (m: PortMapping) => boolean): PortMapping[] {
    return [...this.context.mappings.ofClient(internalClient)].filter(matches);
  }

  /** Deletes the internal client's mappings `matches` selects; a refusal of the whole (a nonce that does not own it) is answered. */
  async delete(client: string, via: string, internalClient: string, matches: (m: PortMapping) => boolean): Promise<PortMapping[] | Refused> {
    try {
      return await this.context.mappings.deleteMatching(matches, { address: client, via }, internalClient);
    } catch (err) {
      return this.refused(refusalOf(err), client, `${via} delete`);
    }
  }

  /**
   * Puts back mappings deleted for a change that was then refused (a PCP FILTER moved to a peer a
   * policy refuses): a refused request changes nothing. Each keeps its owner, nonce and the lease
   * it had left; one that cannot be put back is logged.
   */
  async putBack(mappings: readonly PortMapping[]): Promise<void> {
    for (const { expiresAt, createdBy, ...request } of mappings) {
      const leaseSeconds = expiresAt === null ? request.leaseSeconds : this.context.mappings.remainingSeconds({ expiresAt });
      await this.context.mappings.add({ ...request, leaseSeconds }, createdBy).catch((err: unknown) => {
        const what = `${request.protocol} ${request.externalPort} to ${request.internalClient}:${request.internalPort}`;
        this.context.logger.error({ err, client: createdBy.address }, `could not put back ${what} after a refused change: ${describeRefusal(refusalOf(err))}`);
      });
    }
  }

  /** What the client is told: the lease left (a mapping another protocol holds longer keeps its longer lease). */
  private lifetimeLeft(mapping: PortMapping, granted: number): number {
    if (mapping.expiresAt === null) return granted;
    return Math.max(granted, Math.min(this.options.lifetime.maxSeconds, this.context.mappings.remainingSeconds(mapping)));
  }

  /** What a lifecycle call threw (a pinhole refused, say), logged and answered in the one table. */
  refusedBy(err: unknown, client: string, what: string): Refused {
    return this.refused(refusalOf(err), client, what);
  }

  private refused(refusal: Refusal, client: string, what: string): Refused {
    const log = refusal.kind === 'internal-error' || refusal.kind === 'backend-failed' ? 'error' : 'debug';
    this.context.logger[log]({ client, request: what, refusal: refusal.kind }, `${what} from ${client} refused: ${describeRefusal(refusal)}`);
    return { ok: false, refusal, answer: answerFor(refusal) };
  }
}
