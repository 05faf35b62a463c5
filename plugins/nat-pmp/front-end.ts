import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import {
  ClientRateLimiter,
  ClientSlots,
  SubnetSet,
  messageOf,
  type FrontEnd,
  type FrontEndContext,
  type InterfaceAddress,
  type Ipv6InterfaceAddress,
  type Ipv6Lan,
  type LanAddresses,
  type Logger,
} from 'upnpd';
import { ANNOUNCEMENTS, Announcer } from './announcer.js';
import { NAT_PMP_VERSION, asksForMapping, natPmpUnsupportedVersionResponse } from './codec.js';
import type { Epoch } from './epoch.js';
import { MappingRequests } from './mapping-requests.js';
import { NatPmpHandler } from './nat-pmp-handler.js';
import type { NatPmpOptions } from './options.js';
import { PcpHandler } from './pcp-handler.js';
import { Ipv6Map } from './pcp-pinholes.js';

/** In dry-run, NAT-PMP/PCP answer on loopback only, as UPnP does. */
const LOOPBACK: InterfaceAddress = { interface: 'lo', address: '127.0.0.1', prefixLength: 8 };

/** One socket per LAN address: Node's dgram cannot tell which local address a datagram was sent to. */
interface Listener {
  readonly lan: InterfaceAddress;
  readonly socket: Socket;
  /** The address as bound (a link-local one with its zone). */
  readonly bound: string;
  readonly ipv6: boolean;
}

/**
 * NAT-PMP (RFC 6886) and PCP (RFC 6887) on UDP 5351 of each LAN IPv4 address, and PCP alone on
 * each LAN IPv6 address (global/ULA and link-local), answering LAN sources only. Both act on the
 * one mapping table through the same lifecycle and policies as UPnP; PCP MAP for an IPv6 host opens
 * a pinhole (pcp-pinholes.ts).
 */
export class NatPmpFrontEnd implements FrontEnd {
  readonly name = 'nat-pmp';
  private readonly log: Logger;
  private served: readonly InterfaceAddress[] = [];
  private servedIpv6: readonly Ipv6InterfaceAddress[] = [];
  private lanSubnets = new SubnetSet([]);
  /** The LAN IPv6 side served now (the context's at start; updateLan changes it). */
  private lanIpv6: Ipv6Lan;
  private readonly natPmp: NatPmpHandler;
  private readonly pcp: PcpHandler;
  private readonly announcer: Announcer;
  private listeners: Listener[] = [];
  /** The listeners that send announcements (LAN addresses other than loopback, multicast interface set). */
  private announcing: Listener[] = [];
  private unsubscribe: (() => void) | undefined;
  /** Requests read per client (options.requestsPerClient); those beyond are dropped before they are parsed. */
  private readonly requestRate: ClientRateLimiter;
  /** Map and delete requests waiting for the mapping lifecycle (options.pending), per client; `pending` in all. */
  private readonly waiting: ClientSlots;
  private pending = 0;
  private readonly counts = { answered: 0, dropped: 0, notLan: 0, rateLimited: 0, busy: 0 };

  constructor(
    private readonly context: FrontEndContext,
    private readonly options: NatPmpOptions,
    private readonly epoch: Epoch,
  ) {
    this.log = context.logger.child({ component: 'nat-pmp' });
    this.lanIpv6 = context.lanIpv6;
    this.serve(context);
    const requests = new MappingRequests(context, options);
    const external = () => context.external.externalAddress;
    const seconds = () => epoch.seconds();
    this.natPmp = new NatPmpHandler(requests, external, seconds);
    this.pcp = new PcpHandler(requests, options, external, seconds, new Ipv6Map(requests, context.mappings));
    this.announcer = new Announcer(context.clock, () => this.announce());
    const reason = 'NAT-PMP/PCP requests per client (natPmp requestsPerClient)';
    this.requestRate = new ClientRateLimiter({ ...options.requestsPerClient, reason }, context.clock);
    this.waiting = new ClientSlots(options.pending.perClient);
  }

  async start(): Promise<void> {
    // Mappings kept before were lost, or none were kept: clients must learn it from a new epoch.
    if (this.context.restoredState !== 'intact') {
      await this.epoch.startAgain();
      if (this.context.restoredState === 'lost')
        this.log.warn('the mappings kept in the state directory were lost: the NAT-PMP/PCP epoch starts again, so clients map again');
    }
    await this.epoch.externalAddressIs(this.context.external.externalAddress);
    await this.listenOnServed();
    this.unsubscribe = this.context.external.onChange((current) => {
      void this.epoch.externalAddressIs(current).then(() => this.startAnnouncing());
    });
    this.startAnnouncing();
    this.logListening('');
  }

  /** Where it listens now; a warning when that is nowhere (each address that failed was logged as an error). */
  private logListening(why: string): void {
    const addresses = this.describe();
    const protocols = `NAT-PMP${this.options.pcp ? ' and PCP' : ''}`;
    if (addresses.length > 0) this.log.info({ addresses }, `${why}${protocols} listening on ${addresses.join(', ')}`);
    else this.log.warn({ addresses }, `${why}${protocols} listening on no address: no ${protocols.replace(' and ', ' or ')} request is answered`);
  }

  /**
   * Serves changed LAN addresses in place: a socket for each address added, none left on those
   * removed, the others answering all along. A new IPv4 address is announced from (the epoch goes
   * on: the mappings did not change).
   */
  updateLan(lan: LanAddresses): Promise<boolean> {
    this.serve(lan);
    const wanted = new Set(this.addresses().map((a) => a.bound));
    const gone = this.listeners.filter((l) => !wanted.has(l.bound));
    this.listeners = this.listeners.filter((l) => wanted.has(l.bound));
    this.announcing = this.announcing.filter((l) => wanted.has(l.bound));
    return Promise.all(gone.map(({ socket }) => new Promise<void>((resolve) => socket.close(() => resolve()))))
      .then(() => this.listenOnServed())
      .then((added) => {
        if (added.some((l) => !l.ipv6)) this.startAnnouncing();
        this.logListening('LAN addresses changed: ');
        return true;
      });
  }

  /** Which of the LAN addresses given are served (loopback only in dry-run; IPv6 only with PCP). */
  private serve({ lan, lanIpv6 }: LanAddresses): void {
    const { dryRun, lanFromCommandLine } = this.context.config;
    this.served = dryRun && lanFromCommandLine ? [LOOPBACK] : lan.filter((a) => !dryRun || a.address.startsWith('127.'));
    // IPv6 in dry-run: ::1 only, as IPv4 keeps to loopback.
    this.servedIpv6 = this.options.pcp ? lanIpv6.addresses.filter((a) => !dryRun || a.address === '::1') : [];
    this.lanSubnets = new SubnetSet(this.served);
    this.lanIpv6 = lanIpv6;
  }

  private addresses(): Array<{ lan: InterfaceAddress; bound: string; ipv6: boolean }> {
    return [
      ...this.served.map((lan) => ({ lan, bound: lan.address, ipv6: false })),
      ...this.servedIpv6.map((a) => ({ lan: a, bound: a.linkLocal ? `${a.address}%${a.interface}` : a.address, ipv6: true })),
    ];
  }

  /** Listens on each address served that has no socket yet; returns the listeners added. */
  private async listenOnServed(): Promise<Listener[]> {
    const added: Listener[] = [];
    for (const { lan, bound, ipv6 } of this.addresses()) {
      if (this.listeners.some((l) => l.bound === bound)) continue;
      // One address that cannot be bound (another NAT-PMP server holds it, an IPv6 address gone) leaves the others served.
      await this.listen(lan, bound, ipv6).then(
        (listener) => {
          this.listeners.push(listener);
          added.push(listener);
        },
        (err: unknown) => this.log.error({ err, address: bound }, `NAT-PMP/PCP cannot listen on ${bound} port ${this.options.port}: ${messageOf(err)}`),
      );
    }
    return added;
  }

  async stop(): Promise<void> {
    this.announcer.stop();
    this.announcing = [];
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    await Promise.all(this.listeners.splice(0).map(({ socket }) => new Promise<void>((resolve) => socket.close(() => resolve()))));
  }

  describe(): string[] {
    // URLs the daemon parses (for its own ports): WHATWG URLs have no IPv6 zone, so a link-local one is the fragment.
    return this.listeners.map(({ lan, bound, socket, ipv6 }) => {
      const port = socket.address().port;
      if (!ipv6) return `udp://${bound}:${port}`;
      return bound.includes('%') ? `udp://[${lan.address}]:${port}#${lan.interface}` : `udp://[${bound}]:${port}`;
    });
  }

  status(): Readonly<Record<string, unknown>> {
    return { addresses: this.describe(), epoch: this.epoch.seconds(), pcp: this.options.pcp, ...this.counts, pending: this.pending };
  }

  private listen(lan: InterfaceAddress, bound: string, ipv6: boolean): Promise<Listener> {
    return new Promise((resolve, reject) => {
      const socket = createSocket({ type: ipv6 ? 'udp6' : 'udp4', ...(ipv6 ? { ipv6Only: true } : {}) });
      socket.once('error', (err) => {
        socket.close();
        reject(err);
      });
      const listener: Listener = { lan, socket, bound, ipv6 };
      socket.on('message', (packet, peer) => this.receive(listener, packet, peer));
      socket.bind(this.options.port, bound, () => {
        socket.removeAllListeners('error');
        socket.on('error', (err) => this.log.warn({ err, address: bound }, `NAT-PMP socket on ${bound}: ${messageOf(err)}`));
        resolve(listener);
      });
    });
  }

  /** What is dropped is dropped here, at once and cheaply: a flood is read no slower than it must be. */
  private receive(listener: Listener, packet: Buffer, peer: RemoteInfo): void {
    // Never anything from outside the LAN (a WAN host sending to the LAN address through the gateway).
    // IPv6: a peer on a LAN prefix or link-local, on the interface of the address it was sent to.
    const lan = listener.ipv6 ? this.lanIpv6.interfaceOf(peer.address) === listener.lan.interface : this.lanSubnets.contains(peer.address);
    if (!lan) {
      this.counts.notLan += 1;
      return;
    }
    // RFC 6887 §8.3: requests from a client that overloads the server may be silently discarded
    // (the client retries). Answering each would cost the daemon its time with everyone else and
    // send a LAN host whose address is spoofed one answer per packet.
    if (!this.requestRate.take(peer.address).allowed) {
      this.counts.rateLimited += 1;
      this.context.limits.refusals.refuse('datagram-rate', peer.address, this.requestRate.limit.reason);
      return;
    }
    // RFC 6887 §8.3 again, for an overload by all clients: past the requests that may wait for the
    // mapping lifecycle, those that would are dropped too, so that a stalled lifecycle holds a
    // bounded number of them. Those answered at once (the external address, errors) wait for nothing.
    if (!asksForMapping(packet)) {
      void this.respond(listener, packet, peer);
      return;
    }
    if (this.pending >= this.options.pending.total || !this.waiting.acquire(peer.address)) {
      this.counts.busy += 1;
      this.context.limits.refusals.refuse('datagrams-pending', peer.address, 'NAT-PMP/PCP requests waiting for the mapping lifecycle (natPmp pending)');
      return;
    }
    this.pending += 1;
    void this.respond(listener, packet, peer).finally(() => {
      this.pending -= 1;
      this.waiting.release(peer.address);
    });
  }

  private async respond(listener: Listener, packet: Buffer, peer: RemoteInfo): Promise<void> {
    let answer: Buffer | undefined;
    try {
      answer = await this.answer(packet, peer.address, listener.ipv6);
    } catch (err) {
      this.log.error({ err, client: peer.address }, `NAT-PMP/PCP request from ${peer.address} failed: ${messageOf(err)}`);
      return;
    }
    if (!answer) {
      this.counts.dropped += 1;
      return;
    }
    const unsent = (err: unknown) => this.log.debug({ err, client: peer.address }, `could not answer ${peer.address}: ${messageOf(err)}`);
    try {
      listener.socket.send(answer, peer.port, peer.address, (err) => err && unsent(err));
      this.counts.answered += 1;
    } catch (err) {
      // The socket closed while the request waited (a LAN change, shutdown): the change is made,
      // the client asks again and is answered from the new socket.
      unsent(err);
    }
  }

  private answer(packet: Buffer, client: string, ipv6: boolean): Promise<Buffer | undefined> | Buffer | undefined {
    if (packet.length === 0) return undefined;
    // NAT-PMP is IPv4-only (RFC 6886): version 0 over IPv6 is dropped, it has nothing to tell an IPv6 host.
    if (packet[0] === NAT_PMP_VERSION) return ipv6 ? undefined : this.natPmp.handle(packet, client);
    if (this.options.pcp) return this.pcp.handle(packet, client);
    // Without PCP, any other version is one NAT-PMP does not support (RFC 6886 §3.5); but one with
    // the top bit of its second octet set is a response (PCP's R bit, RFC 6887 §8.3), never answered:
    // answering it could keep two servers answering each other.
    if (packet.length < 2 || (packet[1]! & 0x80) !== 0) return undefined;
    return natPmpUnsupportedVersionResponse(this.epoch.seconds());
  }

  /** One round of announcements: NAT-PMP's external address, then PCP's ANNOUNCE, from each LAN address that announces. */
  private announce(): void {
    const packets = [this.natPmp.externalAddressResponse(), ...(this.options.pcp ? [this.pcp.announcement()] : [])];
    for (const { lan, socket } of this.announcing) {
      for (const packet of packets) {
        socket.send(packet, ANNOUNCEMENTS.port, ANNOUNCEMENTS.group, (err) => {
          if (err) this.log.debug({ err, address: lan.address }, `announcement from ${lan.address} not sent: ${messageOf(err)}`);
        });
      }
    }
  }

  private startAnnouncing(): void {
    // Dry-run announces nothing off the host; nor is there anything to announce without an address.
    if (!this.options.announce || this.context.config.dryRun || this.context.external.externalAddress === undefined) return;
    this.announcing = this.listeners.filter(({ lan, socket, ipv6 }) => {
      // No announcements over IPv6 (yet): NAT-PMP's do not exist there and PCP's go to ff02::1.
      if (ipv6) return false;
      // Loopback has no one to tell; and a socket whose multicast interface cannot be set would
      // send by the default route, perhaps off the LAN: neither announces.
      if (lan.address.startsWith('127.')) return false;
      try {
        socket.setMulticastInterface(lan.address);
        socket.setMulticastTTL(1);
        socket.setMulticastLoopback(false);
        return true;
      } catch (err) {
        this.log.warn({ err, address: lan.address }, `not announcing from ${lan.address}: ${messageOf(err)}`);
        return false;
      }
    });
    if (this.announcing.length > 0) this.announcer.start();
  }
}
