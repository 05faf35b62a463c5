import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { isIPv4, type Socket } from 'node:net';
import { messageOf } from '../../errors.js';
import { DEFAULT_CLIENT_LIMITS } from '../../limits/client-limits.js';
import { ClientSlots } from '../../limits/client-slots.js';
import { FairShare } from '../../limits/fair-share.js';
import type { Refusals } from '../../limits/refusals.js';
import type { Logger } from '../../logger.js';
import { Ipv6Lan, parseIpv6, type Ipv6InterfaceAddress } from '../../net/ipv6.js';
import { SubnetSet, normalizeAddress, type InterfaceAddress } from '../../net/network-info.js';
import { IdleConnections } from './idle-connections.js';
import { PipelinedRequests, type Expectation, type PipelineBounds } from './pipelined-requests.js';
import { UpnpServerResponse, sendReply, statusReply } from './reply.js';
import type { RequestHandler } from './routes.js';

export interface HttpLimits {
  /** All request headers together (larger: 431). */
  readonly maxHeaderBytes: number;
  /** Headers beyond this count are ignored. */
  readonly maxHeaderCount: number;
  /** Request body (larger: 413). */
  readonly maxBodyBytes: number;
  /**
   * Open connections per listening address; an idle connection costs a few KB. With
   * `maxConnectionsPerClient` at 8, sixteen addresses at their maximum fill it: then a client
   * holding at least two fewer than the biggest holder takes the place of that holder's oldest
   * connection (FairShare), any other new connection is closed at once.
   */
  readonly maxConnections: number;
  /**
   * Open connections per client (source address), all listening addresses together: well below
   * `maxConnections`, so one host holding its maximum of idle or slow connections cannot keep
   * another from being served. A connection over it is closed at once, before anything is read.
   */
  readonly maxConnectionsPerClient: number;
  /** Time to receive all headers of a request (slowloris). */
  readonly headersTimeoutMs: number;
  /** Time to receive a whole request. */
  readonly requestTimeoutMs: number;
  /** A connection with no traffic for this long is closed. */
  readonly idleTimeoutMs: number;
  /** How long an idle keep-alive connection waits for its next request. */
  readonly keepAliveTimeoutMs: number;
}

export const DEFAULT_HTTP_LIMITS: HttpLimits = {
  maxHeaderBytes: 8 * 1024,
  maxHeaderCount: 32,
  maxBodyBytes: 16 * 1024,
  maxConnections: 128,
  maxConnectionsPerClient: DEFAULT_CLIENT_LIMITS.connectionsPerClient,
  headersTimeoutMs: 5_000,
  requestTimeoutMs: 10_000,
  idleTimeoutMs: 10_000,
  keepAliveTimeoutMs: 5_000,
};

/**
 * How pipelined requests are served (PipelinedRequests). No UPnP client pipelines. Sixteen waiting
 * per connection: each request and its response are about 2 KB of heap, and 128 connections
 * keeping 128 waiting each (a round of 128 pipelined requests, the next once they are answered)
 * held 40 MB live and the daemon's resident size grew by 150 MB; with 16, by no more than a flood
 * of one request per connection grows it.
 */
const PIPELINE_BOUNDS: PipelineBounds = { perTurn: 8, perConnection: 16 };

export interface UpnpHttpServerOptions {
  /** The LAN addresses to listen on; their subnets are the only peers served. */
  readonly lan: readonly InterfaceAddress[];
  /**
   * The LAN IPv6 addresses to listen on as well (link-local ones with their zone); peers must be
   * on their on-link prefixes, or link-local on a LAN interface. None when not given.
   */
  readonly lanIpv6?: Ipv6Lan;
  /** 0: any free port (then the same port on every address). */
  readonly port: number;
  /**
   * With `port` 0: the port to try first (that of the previous start, so that the URLs clients
   * cached stay valid across a LAN address change); any free port when it is taken.
   */
  readonly preferredPort?: number;
  readonly serverString: string;
  readonly logger: Logger;
  readonly handler: RequestHandler;
  readonly limits?: Partial<HttpLimits>;
  /** Where refused connections are counted and logged. */
  readonly refusals?: Refusals;
}

/**
 * The one HTTP server for descriptions, control and events, hardened for a hostile LAN: it listens
 * on LAN addresses only, refuses peers outside the LAN subnets (403), refuses a Host that is not
 * our address and port (DNS rebinding), bounds headers, bodies, connections and time, and never
 * sends a chunked response.
 */
export class UpnpHttpServer {
  readonly limits: HttpLimits;
  /** One server per address listened on, by the host it is bound to (a link-local one with its zone). */
  private readonly servers = new Map<string, Server>();
  private lan: readonly InterfaceAddress[];
  private lanSubnets: SubnetSet;
  private lanIpv6: Ipv6Lan;
  private readonly connections: ClientSlots;
  private readonly idle: IdleConnections;
  private readonly pipelined = new PipelinedRequests(
    PIPELINE_BOUNDS,
    (req, res, expect) => void this.serve(req, res, expect),
    (socket) => {
      const client = normalizeAddress(socket.remoteAddress ?? '');
      this.options.refusals?.refuse('pipelined-requests', client, `more than ${PIPELINE_BOUNDS.perConnection} requests pipelined on a connection`);
    },
  );
  private boundPort = 0;

  constructor(private readonly options: UpnpHttpServerOptions) {
    this.limits = { ...DEFAULT_HTTP_LIMITS, ...options.limits };
    this.lan = options.lan;
    this.lanSubnets = new SubnetSet(options.lan);
    this.lanIpv6 = options.lanIpv6 ?? new Ipv6Lan([]);
    this.connections = new ClientSlots(this.limits.maxConnectionsPerClient);
    this.idle = new IdleConnections(this.limits.idleTimeoutMs);
  }

  /** The port listened on (known after start). */
  get port(): number {
    return this.boundPort;
  }

  /**
   * Listens on every LAN address, IPv4 then IPv6: the first picks the port (if 0), the others use
   * the same one. A link-local address is bound with its zone, so only its interface reaches it.
   */
  async start(): Promise<void> {
    if (this.lan.length === 0) throw new Error('no LAN address to listen on');
    const hosts = this.lan.map((a) => a.address);
    const preferred = this.options.port === 0 ? this.options.preferredPort : undefined;
    try {
      await this.listenOn(hosts, preferred ?? this.options.port);
    } catch (err) {
      if (preferred === undefined || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
      this.options.logger.info({ port: preferred }, `HTTP port ${preferred} is taken now: listening on another`);
      await this.listenOn(hosts, 0);
    }
    await this.listenOnIpv6(this.lanIpv6);
  }

  /**
   * Serves these LAN addresses from now on, on the same port: listens on the ones added, closes
   * the servers (and their connections) of the ones removed; the others go on answering untouched.
   * An address that cannot be bound is left out with a warning.
   */
  async update(lan: readonly InterfaceAddress[], lanIpv6: Ipv6Lan): Promise<void> {
    const wanted = new Set([...lan.map((a) => a.address), ...lanIpv6.addresses.map(ipv6Host)]);
    // The peers and Host headers accepted change first: a request to an address that goes is refused from now on.
    this.lan = lan;
    this.lanSubnets = new SubnetSet(lan);
    this.lanIpv6 = lanIpv6;
    await Promise.all([...this.servers].filter(([host]) => !wanted.has(host)).map(([host, server]) => this.close(host, server)));
    for (const a of lan) if (!this.servers.has(a.address)) await this.listenOrWarn(a.address);
    await this.listenOnIpv6(lanIpv6);
  }

  /** IPv6 comes on top of IPv4: an address that cannot be bound (gone since it was read, its port taken) is left out with a warning. */
  private async listenOnIpv6(lanIpv6: Ipv6Lan): Promise<void> {
    for (const a of lanIpv6.addresses) if (!this.servers.has(ipv6Host(a))) await this.listenOrWarn(ipv6Host(a));
  }

  private async listenOrWarn(host: string): Promise<void> {
    const server = this.createServer();
    try {
      await listen(server, host, this.boundPort);
      this.servers.set(host, server);
    } catch (err) {
      this.options.logger.warn(
        { address: host, port: this.boundPort, err: messageOf(err) },
        `HTTP cannot listen on ${host}: ${messageOf(err)}; not served there`,
      );
    }
  }

  private async listenOn(hosts: readonly string[], port: number): Promise<void> {
    this.boundPort = 0;
    try {
      for (const host of hosts) {
        const server = this.createServer();
        this.servers.set(host, server);
        await listen(server, host, this.boundPort || port);
        this.boundPort = (server.address() as { port: number }).port;
      }
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  /** Stops listening and closes every connection, idle or not. */
  async stop(): Promise<void> {
    this.idle.stop();
    await Promise.all([...this.servers].map(([host, server]) => this.close(host, server)));
  }

  private close(host: string, server: Server): Promise<void> {
    this.servers.delete(host);
    return new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  private createServer(): Server {
    const limits = this.limits;
    const serverHeader = this.options.serverString;
    const server = createServer({
      // Every response carries our SERVER header, sent by sendReply with the others.
      ServerResponse: class<Request extends IncomingMessage = IncomingMessage> extends UpnpServerResponse<Request> {
        override get serverHeader(): string {
          return serverHeader;
        }
      },
      maxHeaderSize: limits.maxHeaderBytes,
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      // How often Node checks the two timeouts above; its default (30 s) would let slow clients linger.
      connectionsCheckingInterval: Math.min(1_000, limits.headersTimeoutMs),
      // An HTTP/1.1 request without Host is refused by `refusal`: answered by Node, it would never
      // come here, and neither would the 2000 such requests behind it in one read (PipelinedRequests).
      requireHostHeader: false,
    });
    server.maxHeadersCount = limits.maxHeaderCount;
    // Not `server.maxConnections`: Node would close every connection past it, a host holding fewer
    // than the others included; `shares` keeps the total and gives room to such a host.
    const shares = new FairShare<Socket>(limits.maxConnections);
    // No `server.timeout` (a timer per connection): `this.idle` closes idle connections.
    server.on('connection', (socket: Socket) => this.admit(socket, shares));
    server.on('request', (req: IncomingMessage, res: ServerResponse) => this.receive(req, res, undefined));
    // Answering `Expect: 100-continue` ourselves lets an oversized or refused request get its final status first.
    server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => this.receive(req, res, 'continue'));
    // Any other expectation is answered 417 (RFC 9110 §10.1.1) here too, pipelined ones bounded with the others.
    server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => this.receive(req, res, 'unmet'));
    return server;
  }

  /**
   * Counts the connection against its client's share, or closes it at once: no byte is read from or
   * written to a host already holding its share, and nothing waits on it. (A 503 would have to
   * wait for the request it answers, which a slow or idle connection never finishes sending.)
   */
  private admit(socket: Socket, shares: FairShare<Socket>): void {
    const client = normalizeAddress(socket.remoteAddress ?? '');
    if (!this.connections.acquire(client)) {
      this.options.refusals?.refuse('connections-per-client', client, `more than ${this.limits.maxConnectionsPerClient} HTTP connections per client`);
      socket.destroy();
      return;
    }
    const share = shares.add(client, socket);
    if (!share.admitted) {
      this.connections.release(client);
      this.options.refusals?.refuse('connections-per-client', client, `all ${shares.total} HTTP connections of this address held, none by a bigger holder`);
      socket.destroy();
      return;
    }
    if (share.evicted) {
      const holder = normalizeAddress(share.evicted.remoteAddress ?? '');
      this.options.refusals?.refuse('connections-per-client', holder, 'HTTP connections: its oldest closed for a client holding fewer');
      share.evicted.destroy();
    }
    this.idle.add(socket);
    socket.once('close', () => {
      this.connections.release(client);
      shares.delete(client, socket);
      this.idle.delete(socket);
    });
  }

  /** Serves a request now, or later when it is pipelined behind one not yet answered (PipelinedRequests). */
  private receive(req: IncomingMessage, res: ServerResponse, expect: Expectation): void {
    if (PipelinedRequests.waits(res)) this.pipelined.defer(req, res, expect);
    else void this.serve(req, res, expect);
  }

  private async serve(req: IncomingMessage, res: ServerResponse, expect: Expectation): Promise<void> {
    const peer = normalizeAddress(req.socket.remoteAddress ?? '');
    const refusal = this.refusal(req, peer) ?? (expect === 'unmet' ? 417 : undefined);
    if (refusal) {
      this.options.logger.debug({ peer, method: req.method, url: req.url, status: refusal }, 'HTTP request refused');
      return sendReply(res, statusReply(refusal, { close: true }));
    }
    if (expect === 'continue') res.writeContinue();
    try {
      await this.options.handler(req, res, peer);
    } catch (err) {
      this.options.logger.error({ err, peer, method: req.method, url: req.url }, `HTTP request failed: ${messageOf(err)}`);
      if (!res.headersSent) sendReply(res, statusReply(500, { close: true }));
      else res.destroy();
    }
  }

  /** The status that refuses this request before any handler sees it, or undefined. */
  private refusal(req: IncomingMessage, peer: string): number | undefined {
    if (!this.lanSubnets.contains(peer) && !this.lanIpv6.contains(peer)) return 403;
    const host = req.headers.host;
    if (host !== undefined) {
      const target = parseHost(host);
      // Node keeps the first of several Host lines; RFC 9112 §3.2 wants the request refused (400).
      if (!target || hostLines(req.rawHeaders) > 1) return 400;
      if (!this.isOurs(target)) return 403;
    }
    // RFC 9112 §3.2: a request without Host is refused (400); HTTP/1.0 may omit it.
    else if (req.httpVersion !== '1.0') return 400;
    // A browser names the page that sent the request: only a page served by us may (design §10,
    // Filet-O-Firewall). `null` (a sandboxed or file: page) is from elsewhere too.
    const origin = req.headers.origin;
    if (origin !== undefined) {
      const target = origin.startsWith('http://') ? parseHost(origin.slice('http://'.length)) : undefined;
      if (!target || !this.isOurs(target)) return 403;
    }
    const length = req.headers['content-length'];
    if (length !== undefined && Number(length) > this.limits.maxBodyBytes) return 413;
    return undefined;
  }

  /** Whether a Host or Origin names one of our addresses and our port. */
  private isOurs(target: NonNullable<ReturnType<typeof parseHost>>): boolean {
    const ourAddress = target.ipv6 ? this.lanIpv6.isOwnAddress(target.address) : this.lan.some((a) => a.address === target.address);
    return ourAddress && (target.port ?? 80) === this.boundPort;
  }
}

/**
 * `a.b.c.d[:port]`, `[2001:db8::1][:port]`, or with a zone as RFC 6874 writes it
 * (`[fe80::1%25eth0]`, also the raw `%eth0` some clients send). The zone names an interface of
 * the client, so it is not compared. Names are refused (a name in Host is how DNS rebinding looks).
 */
export function parseHost(host: string): { address: string; ipv6: boolean; port: number | undefined } | undefined {
  const match = /^(?:([\d.]+)|\[([0-9A-Fa-f:.]+)(?:%(?:25)?[\w.@:-]{1,15})?\])(?::(\d{1,5}))?$/.exec(host.trim());
  if (!match) return undefined;
  const port = match[3] === undefined ? undefined : Number(match[3]);
  if (match[1] !== undefined) return isIPv4(match[1]) ? { address: match[1], ipv6: false, port } : undefined;
  return parseIpv6(match[2]!) ? { address: match[2]!, ipv6: true, port } : undefined;
}

/** How many Host lines a request has (its raw headers: name, value, name, value...). */
function hostLines(rawHeaders: readonly string[]): number {
  let count = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) if (rawHeaders[i]!.length === 4 && rawHeaders[i]!.toLowerCase() === 'host') count++;
  return count;
}

/** The host an IPv6 address is listened on: a link-local one with its zone, so only its interface reaches it. */
function ipv6Host(a: Ipv6InterfaceAddress): string {
  return a.linkLocal ? `${a.address}%${a.interface}` : a.address;
}

function listen(server: Server, address: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.listen({ host: address, port, exclusive: true }, () => {
      server.off('error', onError);
      resolve();
    });
  });
}
