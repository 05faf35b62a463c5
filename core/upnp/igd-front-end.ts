import type { Clock } from '../clock.js';
import type { ResolvedConfig } from '../config/schema.js';
import type { FrontEnd, LanAddresses } from '../front-end.js';
import type { Logger } from '../logger.js';
import type { MappingService } from '../mapping/service.js';
import type { ExternalAddressChangeEvent } from '../mapping/types.js';
import type { InterfaceAddress, NetworkInfo } from '../net/network-info.js';
import { urlHost, type Ipv6Lan } from '../net/ipv6.js';
import { DescriptionDocuments } from './description/documents.js';
import { DEFAULT_DESCRIPTION_PATH, endpointsOf, igdViews, type IgdVersion, type IgdView } from './description/igd-views.js';
import { renderPresentationPage } from './description/presentation.js';
import { EventService, type EventedService } from './gena/event-service.js';
import { readBody, BodyTooLargeError } from './http/body.js';
import { XML_CONTENT_TYPE, retryLaterReply, sendReply, statusReply } from './http/reply.js';
import { RouteTable } from './http/routes.js';
import { UpnpHttpServer, type HttpLimits } from './http/server.js';
import { serverString, upnpdVersion } from './http/server-string.js';
import { udnsForLan, type DeviceUdns } from './identity.js';
import { SoapControl, type ControlEndpoint } from './soap/control.js';
import { igdControlEndpoints } from './soap/igd-services.js';
import { WanConnection } from '../net/wan-connection.js';
import { SsdpAdvertiser } from './ssdp/advertiser.js';
import { clockBootId } from '../boot-id.js';
import { ClientLimits, clientLimitSettings } from '../limits/client-limits.js';

export interface UpnpIgdFrontEndOptions {
  readonly config: ResolvedConfig;
  readonly logger: Logger;
  readonly mappings: MappingService;
  readonly network: NetworkInfo;
  readonly clock: Clock;
  /** The LAN addresses to serve (loopback in dry-run unless --lan was given). */
  readonly lan: readonly InterfaceAddress[];
  /** The LAN IPv6 addresses to serve as well (none when not given). */
  readonly lanIpv6?: Ipv6Lan;
  /** With `httpPort` 0: the HTTP port to try first (that of the front-end this one replaces). */
  readonly preferredHttpPort?: number;
  /** SSDP port; 1900 unless a test needs another. */
  readonly ssdpPort?: number;
  /** BOOTID.UPNP.ORG for this start (persisted with a state directory); from the clock when not given. */
  readonly bootId?: number;
  /** The BOOTID to announce after a LAN change (persisted with a state directory); one more than the last when not given. */
  readonly nextBootId?: () => Promise<number>;
  readonly httpLimits?: Partial<HttpLimits>;
  /** The per-client bounds shared with the other front-ends; built from `config.limits` when not given. */
  readonly limits?: ClientLimits;
  /**
   * The external address, watched by the daemon and shared with the other front-ends. Without it
   * the front-end watches one of its own (tests) and tells `onExternalAddressChange`.
   */
  readonly wan?: WanConnection;
  /** With a WAN watcher of its own: told when the external address changes after start ('' while there is none). */
  readonly onExternalAddressChange?: (event: ExternalAddressChangeEvent) => void;
}

/** Evented variables that change with the mapping table, and with the external address. */
const MAPPING_VARIABLES = ['PortMappingNumberOfEntries', 'SystemUpdateID'];
const CONNECTION_VARIABLES = ['ExternalIPAddress', 'ConnectionStatus', 'PhysicalLinkStatus'];

/**
 * The UPnP Internet Gateway Device: SSDP, descriptions, SOAP control and GENA eventing on the LAN
 * addresses, all acting on the one MappingService. With `upnp.igdVersion: 'both'` (the default)
 * it serves an IGD:2 and an IGD:1 view of the same gateway (see IgdView).
 */
export class UpnpIgdFrontEnd implements FrontEnd {
  readonly name = 'upnp-igd';
  private readonly log: Logger;
  private readonly views: readonly IgdView[];
  private readonly udns: DeviceUdns;
  private readonly documents: DescriptionDocuments;
  private readonly wan: WanConnection;
  private readonly ownsWan: boolean;
  private readonly events: EventService;
  private readonly http: UpnpHttpServer;
  private readonly serverString: string;
  private readonly evented: ReadonlyArray<{ readonly service: EventedService; readonly control: ControlEndpoint }>;
  private advertiser: SsdpAdvertiser | undefined;
  private readonly control: SoapControl;
  private announcedBootId: number | undefined;
  /** The LAN served now (the options' at start; updateLan changes it). */
  private lan: readonly InterfaceAddress[];
  private lanIpv6: Ipv6Lan | undefined;

  /** The HTTP port listened on (once started). */
  get httpPort(): number {
    return this.http.port;
  }

  /** The BOOTID.UPNP.ORG announced (once started). */
  get bootId(): number | undefined {
    return this.announcedBootId;
  }
  private systemUpdateId = 1;
  private readonly unsubscribes: Array<() => void> = [];
  readonly limits: ClientLimits;

  constructor(private readonly options: UpnpIgdFrontEndOptions) {
    const { config, mappings, network, clock, lan } = options;
    this.log = options.logger.child({ component: 'upnp-igd' });
    this.limits = options.limits ?? new ClientLimits(clientLimitSettings(config.limits), options.logger, clock);
    this.views = igdViews(config.upnp.igdVersion);
    this.lan = lan;
    this.lanIpv6 = options.lanIpv6;
    this.udns = udnsForLan(lan);
    const version = upnpdVersion();
    this.serverString = serverString(version);
    this.documents = new DescriptionDocuments(this.views, { udns: this.udns, friendlyName: config.upnp.friendlyName, modelNumber: version });
    this.ownsWan = options.wan === undefined;
    this.wan = options.wan ?? new WanConnection({ externalIp: config.externalIp, wan: config.wan, network, clock, logger: this.log });
    this.events = new EventService({
      logger: options.logger,
      maxSubscriptionsPerClient: config.upnp.maxSubscriptionsPerClient,
      serverString: this.serverString,
    });

    const controls = this.views.flatMap((view) =>
      igdControlEndpoints(view, {
        mappings,
        wan: this.wan,
        network,
        wanInterface: config.wan,
        addAnyPortRange: config.upnp.addAnyPortRange,
        udns: this.udns,
        systemUpdateId: () => this.systemUpdateId,
      }),
    );
    this.evented = controls.map((control) => ({
      control,
      service: { eventPath: control.endpoint.eventPath, serviceType: control.endpoint.service.serviceType, variables: control.variables },
    }));
    const routes = new RouteTable();
    this.addDescriptionRoutes(routes);
    this.control = new SoapControl(controls, this.log, (peer, action) => this.limits.admitStateChange(peer, action));
    this.addControlRoutes(routes, this.control);
    for (const { service } of this.evented) {
      routes.add(service.eventPath, ['SUBSCRIBE', 'UNSUBSCRIBE'], (req, res, peer) => {
        const decision = req.method === 'SUBSCRIBE' ? this.limits.admitStateChange(peer, 'SUBSCRIBE') : undefined;
        if (decision && !decision.allowed) return sendReply(res, retryLaterReply(decision.retryAfterMs));
        return this.events.handle(req, res, service, peer);
      });
    }
    this.http = new UpnpHttpServer({
      lan,
      lanIpv6: options.lanIpv6,
      port: config.httpPort,
      preferredPort: options.preferredHttpPort,
      serverString: this.serverString,
      logger: this.log,
      handler: routes.dispatch,
      limits: { maxConnectionsPerClient: this.limits.settings.connectionsPerClient, ...options.httpLimits },
      refusals: this.limits.refusals,
    });
  }

  async start(): Promise<void> {
    const { config, mappings } = this.options;
    if (this.ownsWan) this.wan.start();
    this.unsubscribes.push(
      mappings.onChange(() => {
        this.systemUpdateId = (this.systemUpdateId % 0xffffffff) + 1;
        this.publish(MAPPING_VARIABLES);
      }),
      this.wan.onChange((current, previous) => {
        this.publish(CONNECTION_VARIABLES);
        this.options.onExternalAddressChange?.({ previous: previous ?? '', current: current ?? '' });
      }),
    );
    await this.http.start();
    this.advertiser = new SsdpAdvertiser({
      interfaces: this.lan,
      ipv6: this.lanIpv6,
      location: (address, igdVersion?: IgdVersion) => this.descriptionUrl(address, igdVersion),
      udns: this.udns,
      igdVersion: this.views[0]!.version,
      bootId: (this.announcedBootId = this.options.bootId ?? clockBootId()),
      configId: this.documents.configId,
      notifyIntervalSeconds: config.upnp.notifyIntervalSeconds,
      serverString: this.serverString,
      logger: this.options.logger,
      port: this.options.ssdpPort,
      mSearchRate: this.limits.settings.mSearch,
      refusals: this.limits.refusals,
    });
    await this.advertiser.start();
    this.log.info({ urls: this.describe(), configId: this.documents.configId }, 'UPnP IGD listening');
  }

  /**
   * Serves changed LAN addresses in place: HTTP listens on the addresses added and closes those
   * removed, the others answering all along; SSDP follows with the next BOOTID (its LOCATIONs
   * changed: ssdp:update, then alive). When the LAN interfaces themselves changed, the UDNs (made
   * from them) would change too: that is another device, so false (the daemon starts it again).
   */
  async updateLan({ lan, lanIpv6 }: LanAddresses): Promise<boolean> {
    const udns = udnsForLan(lan);
    if (udns.gateway !== this.udns.gateway || !this.advertiser) return false;
    this.lan = lan;
    this.lanIpv6 = lanIpv6;
    await this.http.update(lan, lanIpv6);
    const bootId = this.options.nextBootId ? await this.options.nextBootId() : (this.announcedBootId ?? 0) + 1;
    this.log.info({ bootId, urls: this.describe() }, `LAN addresses changed (UPnP IGD): re-announcing with BOOTID ${bootId}`);
    await this.advertiser.update(lan, lanIpv6, bootId);
    this.announcedBootId = bootId;
    return true;
  }

  async stop(): Promise<void> {
    await this.advertiser?.stop();
    this.advertiser = undefined;
    for (const unsubscribe of this.unsubscribes.splice(0)) unsubscribe();
    if (this.ownsWan) this.wan.stop();
    await this.events.close();
    await this.http.stop();
  }

  /** The description URL on each LAN address. */
  status(): Readonly<Record<string, unknown>> {
    return {
      externalAddress: this.wan.externalAddress ?? null,
      urls: this.describe(),
      requests: Object.fromEntries(this.control.answered),
      subscriptions: this.events.subscriptions,
      ssdpQueries: this.advertiser?.queries ?? 0,
    };
  }

  /** The description URL on each LAN address, IPv4 first, then IPv6 (link-local ones without their zone). */
  describe(): string[] {
    return [...this.lan, ...(this.lanIpv6?.addresses ?? [])].map((address) => this.descriptionUrl(address));
  }

  /**
   * Where a client finds the description: the default path, or the view of a given IGD version
   * (so that an SSDP answer to an IGD:1 search can point at the IGD:1 view).
   */
  private descriptionUrl(lan: { readonly address: string }, igdVersion?: IgdVersion): string {
    const view = igdVersion === undefined ? undefined : this.views.find((v) => v.version === igdVersion);
    return `http://${urlHost(lan.address)}:${this.http.port}${view?.descriptionPath ?? DEFAULT_DESCRIPTION_PATH}`;
  }

  private addDescriptionRoutes(routes: RouteTable): void {
    const paths = new Set([DEFAULT_DESCRIPTION_PATH, ...this.views.flatMap((v) => [v.descriptionPath, ...endpointsOf(v).map((e) => e.scpdPath)])]);
    for (const path of paths) {
      routes.add(path, ['GET', 'HEAD'], (req, res) => {
        const document = this.documents.find(path, req.headers['user-agent']);
        sendReply(res, document === undefined ? statusReply(404) : { status: 200, headers: { 'Content-Type': XML_CONTENT_TYPE }, body: document });
      });
    }
    const page = renderPresentationPage(this.options.config.upnp.friendlyName, DEFAULT_DESCRIPTION_PATH);
    routes.add('/', ['GET', 'HEAD'], (_req, res) => sendReply(res, { status: 200, headers: { 'Content-Type': 'text/html; charset=utf-8' }, body: page }));
  }

  private addControlRoutes(routes: RouteTable, soap: SoapControl): void {
    for (const path of soap.paths) {
      routes.add(path, ['POST'], async (req, res, peer) => {
        // A control request is XML; a form or text/plain POST is what a browser can send without asking (design §10).
        if (!isXmlContentType(req.headers['content-type'])) return sendReply(res, statusReply(415, { close: true }));
        let body: string;
        try {
          body = await readBody(req, this.http.limits.maxBodyBytes);
        } catch (err) {
          // Anything else means the client went away: nobody to answer.
          if (err instanceof BodyTooLargeError) sendReply(res, statusReply(413, { close: true }));
          return;
        }
        const soapAction = req.headers['soapaction'];
        sendReply(res, await soap.handle(path, typeof soapAction === 'string' ? soapAction : undefined, body, peer));
      });
    }
  }

  /** Sends the current values of `names` to the subscribers of every service that has them. */
  private publish(names: readonly string[]): void {
    for (const { service, control } of this.evented) {
      const variables = control.variables();
      const changed = Object.fromEntries(names.filter((n) => Object.hasOwn(variables, n)).map((n) => [n, variables[n]!]));
      if (Object.keys(changed).length > 0) this.events.publish(service, changed);
    }
  }
}

/**
 * Whether a request's Content-Type allows an XML body: `text/xml` (what clients send, with or
 * without a charset), `application/xml`, any `+xml` type; none at all is allowed too (a client
 * that leaves it out still sends SOAP). Refused: the types an HTML form or a plain fetch can send.
 */
function isXmlContentType(header: string | undefined): boolean {
  if (header === undefined || header.trim() === '') return true;
  // Up to the first ';' or blank: a client that forgets the ';' before its charset is still read.
  const mediaType = header.trim().split(/[;\s]/, 1)[0]!.toLowerCase();
  return mediaType === 'text/xml' || mediaType === 'application/xml' || /^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+\+xml$/.test(mediaType);
}
