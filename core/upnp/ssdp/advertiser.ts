import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { systemClock, type Clock } from '../../clock.js';
import { UpnpdError, messageOf } from '../../errors.js';
import { ClientRateLimiter, type RateLimit } from '../../limits/rate-limiter.js';
import type { Refusals } from '../../limits/refusals.js';
import type { Logger } from '../../logger.js';
import { normalizeAddress, SubnetSet, type InterfaceAddress } from '../../net/network-info.js';
import { Ipv6Lan, isLinkLocalIpv6, parseIpv6, type Ipv6InterfaceAddress } from '../../net/ipv6.js';
import type { DeviceUdns } from '../identity.js';
import { parseMSearch, responseWindowSeconds } from './m-search.js';
import { buildAlive, buildByebye, buildSearchResponse, buildUpdate, type MessageContext } from './messages.js';
import { SSDP_IPV6_LINK_LOCAL_GROUP, SSDP_IPV6_SITE_LOCAL_GROUP, SSDP_MULTICAST_ADDRESS, SSDP_PORT } from './constants.js';
import { DEFAULT_REPLY_LIMITS, ReplyScheduler } from './reply-scheduler.js';
import { DEFAULT_CLIENT_LIMITS } from '../../limits/client-limits.js';
import { advertisedSet, answersFor, type AdvertisedSet, type NotificationTarget, type SearchAnswer } from './targets.js';

export interface SsdpAdvertiserOptions {
  /** LAN addresses to bind and answer on; their subnets are the only sources answered. */
  readonly interfaces: readonly InterfaceAddress[];
  /**
   * The LAN IPv6 addresses to serve as well (none when not given): ff02::c and ff05::c are joined
   * on their interfaces; sources must be on the LAN prefixes, or link-local on that interface.
   */
  readonly ipv6?: Ipv6Lan;
  /**
   * Description URL on an address. Answers to searches for an older version than `igdVersion`
   * (IGD:1 types on an IGD:2 daemon) ask with that version, for the URL of its view.
   */
  readonly location: (lan: { readonly address: string }, igdVersion?: 1 | 2) => string;
  readonly udns: DeviceUdns;
  /** Highest IGD version offered; searches for a lower version are answered with that version. */
  readonly igdVersion: 1 | 2;
  readonly bootId: number;
  readonly configId: number;
  /** Seconds between alive announcements (jittered downwards); at most half of max-age. */
  readonly notifyIntervalSeconds: number;
  /** CACHE-CONTROL max-age, at least 1800 (the default). */
  readonly maxAgeSeconds?: number;
  /** `<OS>/<ver> UPnP/1.1 upnpd/<ver>`. */
  readonly serverString: string;
  readonly logger: Logger;
  /** 1900 by default; tests use another. */
  readonly port?: number;
  readonly multicastAddress?: string;
  readonly clock?: Clock;
  /** M-SEARCHes answered per source (DEFAULT_CLIENT_LIMITS.mSearch when not given). */
  readonly mSearchRate?: RateLimit;
  /** Where searches refused by a bound are counted and logged. */
  readonly refusals?: Refusals;
}

/** UDA 1.1's default hop limit for SSDP multicast. */
const MULTICAST_TTL = 2;
const MIN_MAX_AGE_SECONDS = 1800;
/** Alive announcements come up to this fraction early, so that gateways booted together drift apart. */
const ANNOUNCE_JITTER = 0.2;

/** One LAN address: its socket receives unicast M-SEARCH sent to it and sends from it. */
interface LanEndpoint {
  readonly interface: string;
  /** The address bound (with its zone when link-local). */
  readonly address: string;
  /** The address LOCATION names (the interface's preferred one for IPv6; see preferredLocation). */
  readonly locationAddress: { readonly address: string };
  readonly socket: Socket;
  readonly context: MessageContext;
  /** The group NOTIFYs go to from this endpoint; undefined: another endpoint announces for its interface. */
  readonly notifyGroup: string | undefined;
  /** False when multicast cannot be sent on the interface: no NOTIFYs there, searches are still answered. */
  announces: boolean;
  /** The error of the last NOTIFY that could not be sent (logged once as a warning), until one is sent again. */
  notifyFailure?: string;
  /** For IPv6 endpoints: the address bound, to pick the endpoint of the requester's scope and prefix. */
  readonly ipv6?: Ipv6InterfaceAddress;
}

/**
 * SSDP for the IGD, on the LAN interfaces only.
 *
 * Sockets: each LAN address has a socket bound to `address:port`, which
 * receives unicast M-SEARCH and sends everything for that LAN, so answers leave from the LAN
 * address and NOTIFYs leave on the LAN (multicast interface set, TTL 2). One more socket, bound to
 * the group address, joins the group on each LAN interface and receives multicast M-SEARCH; its
 * answer goes out through the endpoint of the LAN the requester is on. Linux delivers group traffic
 * to every socket bound to the group whichever interface it came in on, so the requester's subnet,
 * not the socket, says which LAN asked — and requesters outside the LAN subnets get nothing.
 *
 * Messages are written by `messages.ts`. A generic SSDP server would not do: binding 0.0.0.0
 * (or a unicast address, which never receives multicast), sending every message from every socket
 * or never setting the multicast interface would leak answers and NOTIFYs to the WAN, and the IGD
 * needs three UDNs, MX delay, version echo, request limits, jittered announcements and byebye
 * before alive.
 */
export class SsdpAdvertiser {
  /** Valid M-SEARCH queries received (for the metrics). */
  queries = 0;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly set: AdvertisedSet;
  private subnets: SubnetSet;
  private readonly replies: ReplyScheduler;
  private readonly searchRate: ClientRateLimiter;
  private readonly port: number;
  private readonly group: string;
  private readonly maxAgeSeconds: number;
  private endpoints: LanEndpoint[] = [];
  /** The group sockets: IPv4's, IPv6 link scope's per interface, IPv6 site scope's; each with the memberships it holds. */
  private ipv4Group: GroupSocket | undefined;
  private readonly linkGroups = new Map<string, GroupSocket>();
  private siteGroup: GroupSocket | undefined;
  /** The LAN served now (the options' at start; `update` changes them). */
  private interfaces: readonly InterfaceAddress[];
  private ipv6: Ipv6Lan | undefined;
  private bootId: number;
  private running = false;
  private announceTimer: unknown;
  private announcing: Promise<void> = Promise.resolve();

  constructor(private readonly options: SsdpAdvertiserOptions) {
    this.maxAgeSeconds = options.maxAgeSeconds ?? MIN_MAX_AGE_SECONDS;
    if (options.interfaces.length === 0) throw optionsError('needs at least one LAN address');
    if (new Set([options.udns.gateway, options.udns.wan, options.udns.wanConnection]).size !== 3) {
      throw optionsError('the three devices need distinct UDNs');
    }
    if (this.maxAgeSeconds < MIN_MAX_AGE_SECONDS) throw optionsError(`max-age must be at least ${MIN_MAX_AGE_SECONDS} seconds`);
    if (!(options.notifyIntervalSeconds > 0 && options.notifyIntervalSeconds <= this.maxAgeSeconds / 2)) {
      throw optionsError('the notify interval must be positive and at most half of max-age');
    }
    this.log = options.logger.child({ component: 'ssdp' });
    this.clock = options.clock ?? systemClock;
    this.set = advertisedSet(options.udns, options.igdVersion);
    this.interfaces = options.interfaces;
    this.ipv6 = options.ipv6;
    this.bootId = options.bootId;
    this.subnets = new SubnetSet(options.interfaces);
    this.replies = new ReplyScheduler(DEFAULT_REPLY_LIMITS, this.clock, Math.random, (source) =>
      options.refusals?.refuse('m-search-queue', source, 'pending M-SEARCH replies: share of the queue given to a smaller holder'),
    );
    this.searchRate = new ClientRateLimiter(options.mSearchRate ?? DEFAULT_CLIENT_LIMITS.mSearch, this.clock);
    this.port = options.port ?? SSDP_PORT;
    this.group = options.multicastAddress ?? SSDP_MULTICAST_ADDRESS;
  }

  /** Binds, says byebye then alive on every LAN, and answers searches until `stop`. */
  async start(): Promise<void> {
    if (this.running || this.endpoints.length > 0) throw new UpnpdError('UPNPD_ERR_SSDP_STATE', 'SSDP advertiser already started');
    try {
      await this.syncSockets(true);
    } catch (err) {
      await this.closeSockets();
      throw new UpnpdError('UPNPD_ERR_SSDP_BIND', `SSDP cannot bind port ${this.port}: ${messageOf(err)}`, { cause: err });
    }
    this.running = true;
    // IGD:2 requires the byebye first, so control points drop what they cached of our last boot.
    this.announcing = this.announce('byebye').then(() => this.announce('alive'));
    await this.announcing;
    if (this.running) this.scheduleAnnouncement();
  }

  /** Says byebye and closes the sockets; safe after a failed or partial start, and twice. */
  async stop(): Promise<void> {
    if (this.running) {
      this.running = false;
      this.clock.clearTimer(this.announceTimer);
      this.replies.cancelAll();
      await this.announcing;
      await this.announce('byebye');
    }
    await this.closeSockets();
  }

  /**
   * A LAN address was added or removed while running: sockets are opened for the addresses added
   * and closed for those removed, group memberships follow, and the others keep answering. The
   * device announces `bootId` from now on (UDA 1.1 §1.2: its set of LOCATIONs changed): where it
   * announced before, ssdp:update with NEXTBOOTID first, then alive; where it did not (a new
   * address, or a new announcer for an interface), byebye then alive, as at start.
   */
  async update(interfaces: readonly InterfaceAddress[], ipv6: Ipv6Lan | undefined, bootId: number): Promise<void> {
    if (interfaces.length === 0) throw optionsError('needs at least one LAN address');
    this.interfaces = interfaces;
    this.ipv6 = ipv6;
    this.subnets = new SubnetSet(interfaces);
    if (!this.running) {
      this.bootId = bootId;
      return;
    }
    // A round still being sent finishes with the BOOTID it began with (and may schedule the next: cleared after it).
    await this.announcing;
    this.clock.clearTimer(this.announceTimer);
    const previousBootId = this.bootId;
    const announcedBefore = new Set(this.endpoints.filter(announces).map(channelOf));
    this.bootId = bootId;
    await this.syncSockets(false);
    const announcing = this.endpoints.filter(announces);
    const staying = announcing.filter((e) => announcedBefore.has(channelOf(e)));
    const joining = announcing.filter((e) => !announcedBefore.has(channelOf(e)));
    this.announcing = Promise.all([
      this.announceFrom(staying, (target, context) => buildUpdate(target, { ...context, bootId: previousBootId }, bootId)),
      this.announceFrom(joining, buildByebye),
    ]).then(() => this.announce('alive'));
    await this.announcing;
    if (this.running) this.scheduleAnnouncement();
  }

  /**
   * Opens what the LAN served now needs and closes what it no longer does; sockets of addresses
   * that stay are kept. With `strict` (the start), an IPv4 address that cannot be bound is an
   * error; otherwise (and always for IPv6) it is left out with a warning.
   */
  private async syncSockets(strict: boolean): Promise<void> {
    const ipv6 = this.ipv6?.addresses ?? [];
    const wanted = [
      ...this.interfaces.map((lan) => ({ iface: lan.interface, address: lan.address, location: lan, ipv6: undefined })),
      ...ipv6.map((lan) => ({
        iface: lan.interface,
        address: lan.linkLocal ? `${lan.address}%${lan.interface}` : lan.address,
        location: preferredLocation(lan.interface, ipv6),
        ipv6: lan,
      })),
    ];
    const kept = new Map(this.endpoints.map((e) => [e.address, e.socket]));
    const gone = this.endpoints.filter((e) => !wanted.some((w) => w.address === e.address));
    await Promise.all(gone.map((e) => new Promise<void>((resolve) => closeQuietly(e.socket, resolve))));
    const endpoints: LanEndpoint[] = [];
    let failure: Error | undefined;
    for (const w of wanted) {
      let socket = kept.get(w.address);
      if (!socket) {
        try {
          socket = await this.bindEndpoint(w.ipv6 ? 'udp6' : 'udp4', w.address);
        } catch (err) {
          if (strict && !w.ipv6) failure ??= err as Error;
          else
            this.log.warn(
              { interface: w.iface, address: w.address, err: messageOf(err) },
              `SSDP cannot listen on ${w.address}: ${messageOf(err)}; not served there`,
            );
          continue;
        }
      }
      endpoints.push(this.endpointOn(w.iface, w.address, w.location, w.ipv6, socket));
    }
    this.endpoints = endpoints;
    if (failure !== undefined) throw failure;

    this.ipv4Group = await this.syncGroup(
      this.ipv4Group,
      { type: 'udp4', bound: this.group, group: this.group },
      (source) => {
        const lan = this.subnets.find(source);
        return lan && this.endpoints.find((e) => !e.ipv6 && e.address === lan.address);
      },
      endpoints.filter((e) => !e.ipv6).map((e) => [e.interface, e.address] as const),
    );
    const interfaces = ipv6.length > 0 ? (this.ipv6?.interfaces ?? []) : [];
    for (const iface of new Set([...this.linkGroups.keys(), ...interfaces])) {
      // Bound with the interface's zone: the socket takes only what arrives on that interface.
      const socket = await this.syncGroup(
        this.linkGroups.get(iface),
        { type: 'udp6', bound: `${SSDP_IPV6_LINK_LOCAL_GROUP}%${iface}`, group: SSDP_IPV6_LINK_LOCAL_GROUP },
        (source) => (this.ipv6?.interfaceOf(source) === iface ? this.ipv6ReplyEndpoint(iface, source) : undefined),
        interfaces.includes(iface) ? [[iface, `::%${iface}`]] : [],
      );
      if (socket) this.linkGroups.set(iface, socket);
      else this.linkGroups.delete(iface);
    }
    // Site-local scope: what miniupnpc asks when nothing answers on ff02::c. One socket for every
    // LAN interface: the requester's prefix (or zone) says which LAN asked.
    this.siteGroup = await this.syncGroup(
      this.siteGroup,
      { type: 'udp6', bound: SSDP_IPV6_SITE_LOCAL_GROUP, group: SSDP_IPV6_SITE_LOCAL_GROUP },
      (source) => {
        const iface = this.ipv6?.interfaceOf(source);
        return iface === undefined ? undefined : this.ipv6ReplyEndpoint(iface, source);
      },
      interfaces.map((iface) => [iface, `::%${iface}`] as const),
    );
  }

  /**
   * A socket bound to a group, joined on `interfaces` (memberships no longer wanted are dropped),
   * that answers through the endpoint `endpointFor` picks for a source (none: ignored). Closed when
   * no interface wants it; undefined when it cannot be bound (then only unicast M-SEARCH is answered).
   */
  private async syncGroup(
    current: GroupSocket | undefined,
    where: { readonly type: 'udp4' | 'udp6'; readonly bound: string; readonly group: string },
    endpointFor: (source: string) => LanEndpoint | undefined,
    interfaces: ReadonlyArray<readonly [name: string, address: string]>,
  ): Promise<GroupSocket | undefined> {
    if (interfaces.length === 0) {
      if (current) await new Promise<void>((resolve) => closeQuietly(current.socket, resolve));
      return undefined;
    }
    let group = current;
    if (!group) {
      const socket = this.newSocket(where.type, (datagram, peer) => this.receive(datagram, peer, 'multicast', endpointFor));
      try {
        await bind(socket, where.bound, this.port);
      } catch (err) {
        closeQuietly(socket);
        this.log.warn({ group: where.bound, err: messageOf(err) }, 'cannot receive multicast M-SEARCH there; answering unicast M-SEARCH only');
        return undefined;
      }
      group = { socket, joined: new Set() };
    }
    const wanted = new Set(interfaces.map(([, address]) => address));
    for (const address of [...group.joined].filter((a) => !wanted.has(a))) {
      group.joined.delete(address);
      try {
        group.socket.dropMembership(where.group, address);
      } catch (err) {
        // The address is gone already, and the membership with it.
        this.log.debug({ group: where.group, address, err: messageOf(err) }, 'SSDP group left with its address');
      }
    }
    for (const [name, address] of interfaces) {
      if (group.joined.has(address)) continue;
      try {
        group.socket.addMembership(where.group, address);
        group.joined.add(address);
      } catch (err) {
        this.log.warn({ interface: name, group: where.group, err: messageOf(err) }, 'cannot join the SSDP group; answering unicast M-SEARCH only');
      }
    }
    return group;
  }

  /** A socket on one LAN address: it receives unicast M-SEARCH sent there, and sends for that address. */
  private async bindEndpoint(type: 'udp4' | 'udp6', address: string): Promise<Socket> {
    const socket = this.newSocket(type, (datagram, peer) =>
      this.receive(datagram, peer, 'unicast', (source) => {
        const endpoint = this.endpoints.find((e) => e.socket === socket);
        return endpoint && this.isLanSource(source, endpoint) ? endpoint : undefined;
      }),
    );
    try {
      await bind(socket, address, this.port);
    } catch (err) {
      closeQuietly(socket);
      throw err;
    }
    this.log.info({ address, port: this.port }, 'SSDP listening');
    return socket;
  }

  private endpointOn(
    iface: string,
    address: string,
    locationAddress: { readonly address: string },
    ipv6: Ipv6InterfaceAddress | undefined,
    socket: Socket,
  ): LanEndpoint {
    const notifyGroup = ipv6 ? (this.announcerFor(iface) === ipv6 ? `${SSDP_IPV6_LINK_LOCAL_GROUP}%${iface}` : undefined) : this.group;
    const endpoint: LanEndpoint = {
      interface: iface,
      address,
      locationAddress,
      socket,
      context: this.messageContext(locationAddress, ipv6 ? `[${SSDP_IPV6_LINK_LOCAL_GROUP.toUpperCase()}]:${this.port}` : `${this.group}:${this.port}`),
      notifyGroup,
      announces: false,
      ipv6,
    };
    if (notifyGroup !== undefined) {
      try {
        // Linux already sends multicast from a socket bound to an interface address out of that
        // interface; naming it keeps NOTIFYs off the default route (the WAN) without relying on that.
        socket.setMulticastInterface(ipv6 ? `::%${iface}` : address);
        socket.setMulticastTTL(MULTICAST_TTL);
        endpoint.announces = true;
      } catch (err) {
        this.log.warn({ interface: iface, err: messageOf(err) }, 'cannot send multicast; not announcing on this interface');
      }
    }
    return endpoint;
  }

  /** Whether a unicast M-SEARCH from `source` to `endpoint` comes from its LAN (IPv4 subnets; IPv6: that interface). */
  private isLanSource(source: string, endpoint: LanEndpoint): boolean {
    return endpoint.ipv6 ? this.ipv6?.interfaceOf(source) === endpoint.interface : this.subnets.contains(source);
  }

  /** The IPv6 address of an interface whose endpoint sends its NOTIFYs: the link-local one (ff02::c is link scope), else the first. */
  private announcerFor(iface: string): Ipv6InterfaceAddress | undefined {
    const addresses = this.ipv6?.addresses.filter((a) => a.interface === iface) ?? [];
    return addresses.find((a) => a.linkLocal) ?? addresses[0];
  }

  /**
   * The endpoint of `iface` that answers an IPv6 source: from an address of the source's scope
   * (link-local to link-local; a global or ULA source from the address of its prefix), so that the
   * answer's source is one the requester can reach back.
   */
  private ipv6ReplyEndpoint(iface: string, source: string): LanEndpoint | undefined {
    const candidates = this.endpoints.filter((e) => e.ipv6 && e.interface === iface);
    const parsed = parseIpv6(source);
    if (!parsed) return undefined;
    if (isLinkLocalIpv6(parsed.value)) return candidates.find((e) => e.ipv6!.linkLocal) ?? candidates[0];
    const onPrefix = candidates.find((e) => !e.ipv6!.linkLocal && new Ipv6Lan([e.ipv6!]).contains(source));
    return onPrefix ?? candidates.find((e) => !e.ipv6!.linkLocal) ?? candidates[0];
  }

  private newSocket(type: 'udp4' | 'udp6', onMessage: (datagram: Buffer, peer: RemoteInfo) => void): Socket {
    const socket = createSocket({ type, reuseAddr: true, ipv6Only: type === 'udp6' });
    // An error handler is mandatory (an 'error' event without one kills the process); it only logs.
    socket.on('error', (err) => this.log.warn({ err: messageOf(err) }, 'SSDP socket error'));
    socket.on('message', onMessage);
    return socket;
  }

  private async closeSockets(): Promise<void> {
    const groups = [this.ipv4Group, ...this.linkGroups.values(), this.siteGroup].filter((g) => g !== undefined);
    const sockets = [...this.endpoints.map((e) => e.socket), ...groups.map((g) => g.socket)];
    this.endpoints = [];
    this.ipv4Group = undefined;
    this.linkGroups.clear();
    this.siteGroup = undefined;
    await Promise.all(sockets.map((s) => new Promise<void>((resolve) => closeQuietly(s, resolve))));
  }

  private messageContext(locationAddress: { readonly address: string }, host: string): MessageContext {
    return {
      location: this.options.location(locationAddress),
      serverString: this.options.serverString,
      maxAgeSeconds: this.maxAgeSeconds,
      bootId: this.bootId,
      configId: this.options.configId,
      host,
      searchPort: this.port === SSDP_PORT ? undefined : this.port,
    };
  }

  /**
   * A datagram on a group socket (multicast) or on a LAN address (unicast). `endpointFor` says
   * which endpoint answers the source: none when the source is not on the LAN the socket serves
   * (outside the IPv4 subnets, the IPv6 prefixes, or link-local on another interface).
   */
  private receive(datagram: Buffer, peer: RemoteInfo, delivery: 'multicast' | 'unicast', endpointFor: (source: string) => LanEndpoint | undefined): void {
    if (!this.running) return;
    const source = normalizeAddress(peer.address);
    const endpoint = endpointFor(source);
    if (!endpoint) {
      this.log.debug({ source }, 'SSDP datagram from outside the LAN ignored');
      return;
    }
    if (peer.port === 0) return;
    const parsed = parseMSearch(datagram);
    if (!parsed.ok) {
      this.log.trace({ source, reason: parsed.reason }, 'SSDP datagram ignored');
      return;
    }
    const { searchTarget, mx } = parsed.request;
    const windowSeconds = responseWindowSeconds(mx, delivery);
    if (windowSeconds === undefined) {
      this.log.debug({ source, mx }, 'multicast M-SEARCH without a valid MX ignored');
      return;
    }
    const answers = answersFor(searchTarget, this.set);
    this.queries++;
    if (answers.length === 0) return;
    if (!this.searchRate.take(source).allowed) {
      this.options.refusals?.refuse('m-search-rate', source, this.searchRate.limit.reason);
      return;
    }
    const outcome = this.replies.schedule({
      key: `${source}:${peer.port} ${delivery} ${searchTarget}`,
      source,
      count: answers.length,
      windowMs: windowSeconds * 1000,
      send: (i) => void this.send(endpoint, this.searchResponse(endpoint, answers[i]!), peer.port, source),
    });
    if (outcome === 'too-many-pending') {
      this.options.refusals?.refuse('m-search-queue', source, 'pending M-SEARCH replies: this source holds its share of the queue');
    }
    this.log.debug({ source, st: searchTarget, mx, delivery, outcome }, 'M-SEARCH');
  }

  /**
   * A search for an older IGD version gets the URL of that view, except over IPv6: control points
   * that search over IPv6 are the ones that need WANIPv6FirewallControl (IGD:2 view only), and
   * miniupnpc asks for IGD:1 first and keeps the first answer; the clients that break on IGD:2
   * (Windows, consoles) search over IPv4, which keeps pointing them at the IGD:1 view.
   */
  private searchResponse(endpoint: LanEndpoint, answer: SearchAnswer): string {
    const context =
      answer.igdVersion === undefined || endpoint.ipv6
        ? endpoint.context
        : { ...endpoint.context, location: this.options.location(endpoint.locationAddress, answer.igdVersion) };
    return buildSearchResponse(answer, context, new Date());
  }

  private announce(kind: 'alive' | 'byebye'): Promise<void> {
    return this.announceFrom(this.endpoints.filter(announces), kind === 'alive' ? buildAlive : buildByebye);
  }

  /** One NOTIFY per target from each endpoint to its group, paced. */
  private async announceFrom(endpoints: readonly LanEndpoint[], build: (target: NotificationTarget, context: MessageContext) => string): Promise<void> {
    const paced = endpoints.map(async (endpoint) => {
      for (const [i, target] of this.set.targets.entries()) {
        if (i > 0) await this.sleep(DEFAULT_REPLY_LIMITS.spacingMs);
        await this.send(endpoint, build(target, endpoint.context), this.port, endpoint.notifyGroup!, 'notify');
      }
    });
    await Promise.all(paced);
  }

  private scheduleAnnouncement(): void {
    const delayMs = this.options.notifyIntervalSeconds * 1000 * (1 - ANNOUNCE_JITTER * Math.random());
    this.announceTimer = this.clock.setTimer(() => {
      this.announcing = this.announce('alive').then(() => {
        if (this.running) this.scheduleAnnouncement();
      });
    }, delayMs);
  }

  /**
   * Sends one datagram; failures are logged, never thrown (this runs from timers). A NOTIFY that
   * fails as the last one on the endpoint did (IPv6 multicast on a loopback without MULTICAST,
   * every few minutes for days) is logged at debug level: a warning once, and a note when they pass.
   */
  private send(endpoint: LanEndpoint, message: string, port: number, address: string, kind: 'notify' | 'answer' = 'answer'): Promise<void> {
    return new Promise((resolve) => {
      const done = (err?: Error | null) => {
        if (kind === 'notify') this.noteNotifySent(endpoint, `${address}:${port}`, err);
        else if (err) this.log.warn({ interface: endpoint.interface, to: `${address}:${port}`, err: messageOf(err) }, 'SSDP send failed');
        resolve();
      };
      try {
        endpoint.socket.send(Buffer.from(message, 'latin1'), port, address, done);
      } catch (err) {
        done(err as Error);
      }
    });
  }

  private noteNotifySent(endpoint: LanEndpoint, to: string, err: Error | null | undefined): void {
    const where = { interface: endpoint.interface, address: endpoint.address, to };
    if (!err) {
      if (endpoint.notifyFailure !== undefined) this.log.info(where, `SSDP NOTIFY from ${endpoint.address} sent again`);
      endpoint.notifyFailure = undefined;
      return;
    }
    const failure = messageOf(err);
    if (failure === endpoint.notifyFailure) {
      this.log.debug({ ...where, err: failure }, 'SSDP NOTIFY failed again');
      return;
    }
    endpoint.notifyFailure = failure;
    this.log.warn({ ...where, err: failure }, `SSDP NOTIFY from ${endpoint.address} failed (${failure}); the same failure again is logged at debug level`);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.clock.setTimer(resolve, ms));
  }
}

/**
 * The address an interface's IPv6 LOCATION names: a ULA (stable when the delegated prefix
 * changes), else a global address, else the link-local one (written without zone: see urlHost).
 * One address per interface, the same in NOTIFYs and answers.
 */
export function preferredLocation(iface: string, addresses: readonly Ipv6InterfaceAddress[]): Ipv6InterfaceAddress {
  const own = addresses.filter((a) => a.interface === iface);
  const isUla = (a: Ipv6InterfaceAddress) => parseIpv6(a.address)!.value >> 121n === 0x7en;
  return own.find((a) => !a.linkLocal && isUla(a)) ?? own.find((a) => !a.linkLocal) ?? own[0]!;
}

/** A socket bound to an SSDP group and the interface addresses it joined the group on. */
interface GroupSocket {
  readonly socket: Socket;
  readonly joined: Set<string>;
}

function announces(endpoint: LanEndpoint): boolean {
  return endpoint.announces && endpoint.notifyGroup !== undefined;
}

/** Where an endpoint's NOTIFYs reach: its IPv4 address's LAN, or the IPv6 group of its interface. */
function channelOf(endpoint: LanEndpoint): string {
  return endpoint.ipv6 ? endpoint.notifyGroup! : endpoint.address;
}

function bind(socket: Socket, address: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind({ address, port }, () => {
      socket.off('error', reject);
      resolve();
    });
  });
}

function closeQuietly(socket: Socket, done?: () => void): void {
  try {
    socket.close(done);
  } catch {
    // Already closed.
    done?.();
  }
}

function optionsError(message: string): UpnpdError {
  return new UpnpdError('UPNPD_ERR_SSDP_OPTIONS', `SSDP advertiser: ${message}`);
}
