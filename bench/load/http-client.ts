import { type Socket, connect } from 'node:net';
import type { ConnectionMode } from './protocol.js';

/** Largest response the generator reads (a GetListOfPortMappings page of 1000 entries is ~400 KB). */
const MAX_RESPONSE_BYTES = 8 * 1024 * 1024;
const MAX_HEADER_BYTES = 16 * 1024;
const REQUEST_TIMEOUT_MS = 10_000;
const HEADER_END = Buffer.from('\r\n\r\n', 'latin1');

export interface HttpResponse {
  readonly status: number;
  readonly body: string;
}

/** A complete response, and whether the connection may carry the next request. */
type ReadResponse = HttpResponse & { readonly keepAlive: boolean };

interface ResponseHead {
  readonly status: number;
  readonly contentLength: number | undefined;
  readonly keepAlive: boolean;
  readonly bodyStart: number;
}

export interface HttpRequest {
  readonly method: 'GET' | 'POST';
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string;
}

/**
 * The generator's HTTP/1.1 client. It writes Host and, for a POST, Content-Length itself; one
 * request per connection at a time, the connection kept for the next request when the server keeps
 * it open (upnpd) and a new one per request when it closes it (miniupnpd). Written on `net` rather
 * than `node:http` because the listing phases are one client's requests one after another, so
 * whatever the generator spends per request is part of the figure: `node:http`'s client and agent
 * cost about as much per request as the daemon under test.
 * Responses must carry Content-Length or end with the connection (neither daemon sends chunked).
 */
export class HttpClient {
  private readonly idle = new Map<string, Socket[]>();
  private readonly open = new Set<Socket>();

  /**
   * `localAddress`: the source address of every connection (one LAN host among many), or the default.
   * `connection`: 'close' is miniupnpc's way (a new connection per request, each sent with
   * `Connection: Close`); 'keep-alive' keeps a connection while the server keeps it open.
   */
  constructor(
    private readonly localAddress?: string,
    private readonly connection: ConnectionMode = 'keep-alive',
  ) {}

  async request(url: URL, request: HttpRequest): Promise<HttpResponse> {
    const origin = `${url.hostname}:${url.port || 80}`;
    if (this.connection === 'close') {
      return this.exchange(url, origin, this.connect(url), { ...request, headers: { ...request.headers, Connection: 'Close' } });
    }
    const reused = this.idle.get(origin)?.pop();
    try {
      return await this.exchange(url, origin, reused ?? this.connect(url), request);
    } catch (err) {
      // A kept connection the server closed while it was idle: try once more on a new one.
      if (reused && err instanceof ClosedBeforeResponse) return this.exchange(url, origin, this.connect(url), request);
      throw err;
    }
  }

  close(): void {
    for (const socket of this.open) socket.destroy();
    this.open.clear();
    this.idle.clear();
  }

  private connect(url: URL): Socket {
    // An IPv6 literal's hostname keeps its brackets in a URL; net.connect wants the bare address.
    const socket = connect({ host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port: Number(url.port || 80), noDelay: true, localAddress: this.localAddress });
    this.open.add(socket);
    socket.on('close', () => {
      this.open.delete(socket);
      for (const sockets of this.idle.values()) {
        const at = sockets.indexOf(socket);
        if (at >= 0) sockets.splice(at, 1);
      }
    });
    // Errors are reported to the exchange in progress; an idle socket's error just closes it.
    socket.on('error', () => {});
    return socket;
  }

  private exchange(url: URL, origin: string, socket: Socket, request: HttpRequest): Promise<HttpResponse> {
    return new Promise((resolve, reject) => {
      const reader = new ResponseReader();
      const timer = setTimeout(() => fail(new Error(`${url.href}: no response within ${REQUEST_TIMEOUT_MS} ms`)), REQUEST_TIMEOUT_MS);
      const cleanUp = () => {
        clearTimeout(timer);
        socket.off('data', onData);
        socket.off('end', onEnd);
        socket.off('close', onEnd);
        socket.off('error', fail);
      };
      const fail = (err: Error) => {
        cleanUp();
        socket.destroy();
        reject(err);
      };
      const finish = (response: ReadResponse) => {
        cleanUp();
        if (response.keepAlive && this.connection === 'keep-alive' && !socket.destroyed) this.keepIdle(origin, socket);
        else socket.destroy();
        resolve({ status: response.status, body: response.body });
      };
      const onData = (chunk: Buffer) => {
        try {
          const response = reader.push(chunk);
          if (response) finish(response);
        } catch (err) {
          fail(err instanceof Error ? err : new Error(String(err)));
        }
      };
      const onEnd = () => {
        try {
          const response = reader.end();
          if (response) finish(response);
          else fail(reader.started ? new Error(`${url.href}: connection closed in the middle of a response`) : new ClosedBeforeResponse(url));
        } catch (err) {
          fail(err instanceof Error ? err : new Error(String(err)));
        }
      };
      socket.on('data', onData);
      socket.on('end', onEnd);
      socket.on('close', onEnd);
      socket.on('error', fail);
      socket.write(requestText(url, request));
    });
  }

  private keepIdle(origin: string, socket: Socket): void {
    let sockets = this.idle.get(origin);
    if (!sockets) this.idle.set(origin, (sockets = []));
    sockets.push(socket);
  }
}

class ClosedBeforeResponse extends Error {
  constructor(url: URL) {
    super(`${url.href}: connection closed before a response`);
  }
}

function requestText(url: URL, { method, headers = {}, body = '' }: HttpRequest): string {
  let text = `${method} ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\n`;
  for (const [name, value] of Object.entries(headers)) text += `${name}: ${value}\r\n`;
  if (method === 'POST') text += `Content-Length: ${Buffer.byteLength(body)}\r\n`;
  return `${text}\r\n${body}`;
}

/** Reads one HTTP/1.x response from the chunks of a connection. */
export class ResponseReader {
  private buffered: Buffer[] = [];
  private size = 0;
  private head: ResponseHead | undefined;
  started = false;

  /** The complete response, or undefined while more is to come. */
  push(chunk: Buffer): ReadResponse | undefined {
    this.started = true;
    this.buffered.push(chunk);
    this.size += chunk.length;
    if (this.size > MAX_RESPONSE_BYTES) throw new Error(`response larger than ${MAX_RESPONSE_BYTES} bytes`);
    if (!this.head) {
      const data = this.joined();
      const end = data.indexOf(HEADER_END);
      if (end < 0) {
        if (data.length > MAX_HEADER_BYTES) throw new Error(`response headers longer than ${MAX_HEADER_BYTES} bytes`);
        return undefined;
      }
      this.head = parseHead(data.toString('latin1', 0, end), end + HEADER_END.length);
    }
    const { contentLength, bodyStart } = this.head;
    if (contentLength === undefined || this.size < bodyStart + contentLength) return undefined;
    if (this.size > bodyStart + contentLength) throw new Error("more bytes than the response's Content-Length (pipelining is not used)");
    return this.response(contentLength);
  }

  /** The connection ended: the response, if it is complete (or has no length and so ends here). */
  end(): ReadResponse | undefined {
    if (!this.head || this.head.contentLength !== undefined) return undefined;
    return { ...this.response(this.size - this.head.bodyStart), keepAlive: false };
  }

  private response(length: number): ReadResponse {
    const { status, keepAlive, bodyStart } = this.head!;
    return { status, keepAlive, body: this.joined().toString('utf8', bodyStart, bodyStart + length) };
  }

  private joined(): Buffer {
    if (this.buffered.length > 1) this.buffered = [Buffer.concat(this.buffered)];
    return this.buffered[0] ?? Buffer.alloc(0);
  }
}

function parseHead(head: string, bodyStart: number): ResponseHead {
  const lines = head.split('\r\n');
  const statusLine = /^HTTP\/1\.([01]) (\d{3})/.exec(lines[0] ?? '');
  if (!statusLine) throw new Error(`not an HTTP/1.x status line: ${JSON.stringify(lines[0])}`);
  let contentLength: number | undefined;
  let connection = '';
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === 'content-length') contentLength = Number(value);
    else if (name === 'connection') connection = value.toLowerCase();
    else if (name === 'transfer-encoding') throw new Error(`Transfer-Encoding ${value}: the generator reads only Content-Length or close-delimited responses`);
  }
  if (contentLength !== undefined && !(Number.isInteger(contentLength) && contentLength >= 0)) throw new Error('an invalid Content-Length');
  const keepAlive = statusLine[1] === '1' ? connection !== 'close' : connection === 'keep-alive';
  return { status: Number(statusLine[2]), contentLength, keepAlive: keepAlive && contentLength !== undefined, bodyStart };
}
