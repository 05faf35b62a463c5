import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { systemClock, type Clock } from '../../clock.js';
import { UpnpdError, messageOf } from '../../errors.js';
import { ClientRateLimiter, type RateLimit } from '../../limits/rate-limiter.js';
import type { Refusals } from '../../limits/refusals.js';
import type { Logger } from '../../logger.js';
import { normalizeAddress, SubnetSet, type InterfaceAddress } from '../../net/network-info.js';
import type { DeviceUdns } from '../identity.js';
import { parseMSearch, responseWindowSeconds } from './m-search.js';
import { buildAlive, buildByebye, buildSearchResponse, type MessageContext } from './messages.js';
import { SSDP_MULTICAST_ADDRESS, SSDP_PORT } from './constants.js';
import { DEFAULT_REPLY_LIMITS, ReplyScheduler } from './reply-scheduler.js';
import { DEFAULT_CLIENT_LIMITS } from '../../limits/client-limits.js';
import { advertisedSet, answersFor, type AdvertisedSet, type SearchAnswer } from './targets.js';

export interface SsdpAdvertiserOptions {
  /** LAN addresses to bind and answer on; their subnets are the only sources answered. */
  readonly interfaces: readonly InterfaceAddress[];
  /**
   * Description URL on that interface. Answers to searches for an older version than `igdVersion`
   * (IGD:1 types on an IGD:2 daemon) ask with that version, for the URL of its view.
   */
  readonly location: (lan: InterfaceAddress, igdVersion?: 1 | 2) => string;
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

/** One LAN address: its socket sends every answer and NOTIFY for that LAN, from that address. */
interface LanEndpoint {
  readonly lan: InterfaceAddress;
  readonly socket: Socket;
  readonly context: MessageContext;
  /** False when multicast cannot be sent on the interface: no NOTIFYs there, searches are still answered. */
  announces: boolean;
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
  private readonly subnets: SubnetSet;
  private readonly replies: ReplyScheduler;
  private readonly searchRate: ClientRateLimiter;
  private readonly port: number;
  private readonly group: string;
  private readonly maxAgeSeconds: number;
  private endpoints: LanEndpoint[] = [];
  private groupSocket: Socket | undefined;
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
      await this.openSockets();
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

  private async openSockets(): Promise<void> {
    const opened = await Promise.allSettled(this.options.interfaces.map((lan) => this.openEndpoint(lan)));
    for (const result of opened) if (result.status === 'fulfilled') this.endpoints.push(result.value);
    const failed = opened.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;

    const groupSocket = this.newSocket((datagram, peer) => this.receive(datagram, peer, 'multicast'));
    this.groupSocket = groupSocket;
    try {
      await bind(groupSocket, this.group, this.port);
    } catch (err) {
      this.log.warn({ err: messageOf(err) }, 'cannot receive multicast M-SEARCH; answering unicast M-SEARCH only');
      return;
    }
    for (const endpoint of this.endpoints) {
      try {
        groupSocket.addMembership(this.group, endpoint.lan.address);
      } catch (err) {
        this.log.warn({ interface: endpoint.lan.interface, err: messageOf(err) }, 'cannot join the SSDP group; answering unicast M-SEARCH only');
      }
    }
  }

  private async openEndpoint(lan: InterfaceAddress): Promise<LanEndpoint> {
    const socket = this.newSocket((datagram, peer) => this.receive(datagram, peer, 'unicast', endpoint));
    const endpoint: LanEndpoint = { lan, socket, context: this.messageContext(lan), announces: false };
    try {
      await bind(socket, lan.address, this.port);
    } catch (err) {
      closeQuietly(socket);
      throw err;
    }
    try {
      // Linux already sends multicast from a socket bound to an interface address out of that
      // interface; naming it keeps NOTIFYs off the default route (the WAN) without relying on that.
      socket.setMulticastInterface(lan.address);
      socket.setMulticastTTL(MULTICAST_TTL);
      endpoint.announces = true;
    } catch (err) {
      this.log.warn({ interface: lan.interface, err: messageOf(err) }, 'cannot send multicast; not announcing on this interface');
    }
    this.log.info({ interface: lan.interface, address: lan.address, port: this.port, announces: endpoint.announces }, 'SSDP listening');
    return endpoint;
  }

  private newSocket(onMessage: (datagram: Buffer, peer: RemoteInfo) => void): Socket {
    const socket = createSocket({ type: 'udp4', reuseAddr: true });
    // An error handler is mandatory (an 'error' event without one kills the process); it only logs.
    socket.on('error', (err) => this.log.warn({ err: messageOf(err) }, 'SSDP socket error'));
    socket.on('message', onMessage);
    return socket;
  }

  private async closeSockets(): Promise<void> {
    const sockets = [...this.endpoints.map((e) => e.socket), ...(this.groupSocket ? [this.groupSocket] : [])];
    this.endpoints = [];
    this.groupSocket = undefined;
    await Promise.all(sockets.map((s) => new Promise<void>((resolve) => closeQuietly(s, resolve))));
  }

  private messageContext(lan: InterfaceAddress): MessageContext {
    return {
      location: this.options.location(lan),
      serverString: this.options.serverString,
      maxAgeSeconds: this.maxAgeSeconds,
      bootId: this.options.bootId,
      configId: this.options.configId,
      host: `${this.group}:${this.port}`,
      searchPort: this.port === SSDP_PORT ? undefined : this.port,
    };
  }

  /**
   * A datagram on the group socket (multicast) or on a LAN address (unicast, `receivedOn`). A
   * multicast search is answered from the LAN the requester is on, a unicast one from the address
   * it was sent to.
   */
  private receive(datagram: Buffer, peer: RemoteInfo, delivery: 'multicast' | 'unicast', receivedOn?: LanEndpoint): void {
    if (!this.running) return;
    const source = normalizeAddress(peer.address);
    const lan = this.subnets.find(source);
    const endpoint = lan && (receivedOn ?? this.endpoints.find((e) => e.lan === lan));
    if (!endpoint) {
      this.log.debug({ source }, 'SSDP datagram from outside the LAN subnets ignored');
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

  private searchResponse(endpoint: LanEndpoint, answer: SearchAnswer): string {
    const context =
      answer.igdVersion === undefined ? endpoint.context : { ...endpoint.context, location: this.options.location(endpoint.lan, answer.igdVersion) };
    return buildSearchResponse(answer, context, new Date());
  }

  private async announce(kind: 'alive' | 'byebye'): Promise<void> {
    const build = kind === 'alive' ? buildAlive : buildByebye;
    const paced = this.endpoints
      .filter((e) => e.announces)
      .map(async (endpoint) => {
        for (const [i, target] of this.set.targets.entries()) {
          if (i > 0) await this.sleep(DEFAULT_REPLY_LIMITS.spacingMs);
          await this.send(endpoint, build(target, endpoint.context), this.port, this.group);
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

  /** Sends one datagram; failures are logged, never thrown (this runs from timers). */
  private send(endpoint: LanEndpoint, message: string, port: number, address: string): Promise<void> {
    return new Promise((resolve) => {
      const done = (err?: Error | null) => {
        if (err) this.log.warn({ interface: endpoint.lan.interface, to: `${address}:${port}`, err: messageOf(err) }, 'SSDP send failed');
        resolve();
      };
      try {
        endpoint.socket.send(Buffer.from(message, 'latin1'), port, address, done);
      } catch (err) {
        done(err as Error);
      }
    });
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.clock.setTimer(resolve, ms));
  }
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
