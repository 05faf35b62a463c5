import { inject, injectable } from 'tsyringe';
import {
  CLOCK,
  LOGGER,
  REFUSALS,
  RefusalReporter,
  UpnpError,
  UpnpErrorCode,
  type Clock,
  type Logger,
  type MappingRequest,
  type Plugin,
  type PolicyContext,
  type PortMapping,
  type RefusalRegistry,
} from 'upnpd';

/**
 * Secure mode: a client may map ports only to itself and delete only mappings that point at
 * itself — on every state-changing action, including DeletePortMappingRange (the core skips the
 * mappings this refuses). Which hosts a mapping may lead to at all (a host of the LAN, not the
 * gateway) is the lan-target policy's, which holds with secure mode off too.
 *
 * Refusals of a mapping are 606 Action not authorized, except through WANIPConnection:1, whose
 * AddPortMapping has no 606 and where clients expect 718 ConflictInMappingEntry.
 */
@injectable()
export class SecureModePolicy implements Plugin {
  readonly name = 'secure-mode';
  readonly order = 'pre' as const;
  readonly hooks: Plugin['hooks'];
  private readonly refusals: RefusalReporter;

  constructor(@inject(REFUSALS) registry: RefusalRegistry, @inject(LOGGER) logger: Logger, @inject(CLOCK) clock: Clock) {
    this.refusals = new RefusalReporter('secure-mode', registry, logger, clock);
    this.hooks = {
      beforeMap: (request, context) => this.checkMap(request, context),
      beforeUnmap: (mapping, context) => this.checkUnmap(mapping, context),
    };
  }

  private checkMap(request: MappingRequest, { requester }: PolicyContext): void {
    if (request.internalClient === requester.address) return;
    const code = requester.via === 'upnp-igd:1' ? UpnpErrorCode.ConflictInMappingEntry : UpnpErrorCode.NotAuthorized;
    const error = new UpnpError(code, `${requester.address} may map ports only to itself, not to ${request.internalClient}`);
    throw this.refusals.refuse('another host', requester, error);
  }

  private checkUnmap(mapping: PortMapping, { requester }: PolicyContext): void {
    if (mapping.internalClient !== requester.address) {
      const error = new UpnpError(UpnpErrorCode.NotAuthorized, `${requester.address} may not delete a mapping to ${mapping.internalClient}`);
      throw this.refusals.refuse("another client's mapping", requester, error);
    }
  }
}
