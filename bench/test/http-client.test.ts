import { createServer, type Server, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { HttpClient, ResponseReader } from '../load/http-client.js';

/** A raw TCP server on loopback that answers each request with what `answer` returns. */
class RawServer {
  connections = 0;
  readonly requests: string[] = [];
  private readonly sockets = new Set<Socket>();
  private server: Server | undefined;

  constructor(private readonly answer: (request: string, socket: Socket) => void) {}

  async start(): Promise<URL> {
    this.server = createServer((socket) => {
      this.connections += 1;
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      let pending = '';
      socket.on('data', (chunk) => {
        pending += chunk.toString('latin1');
        const end = pending.indexOf('\r\n\r\n');
        if (end < 0) return;
        const length = Number(/content-length: (\d+)/i.exec(pending.slice(0, end))?.[1] ?? 0);
        if (pending.length < end + 4 + length) return;
        const request = pending.slice(0, end + 4 + length);
        pending = pending.slice(request.length);
        this.requests.push(request);
        this.answer(request, socket);
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    const { port } = this.server.address() as { port: number };
    return new URL(`http://127.0.0.1:${port}/ctl`);
  }

  closeIdleConnections(): void {
    for (const socket of this.sockets) socket.end();
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

const response = (body: string, headers = '') => `HTTP/1.1 200 OK\r\n${headers}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;

let server: RawServer | undefined;
let client: HttpClient | undefined;
afterEach(async () => {
  client?.close();
  await server?.stop();
  server = client = undefined;
});

async function serve(answer: (request: string, socket: Socket) => void): Promise<{ url: URL; server: RawServer; client: HttpClient }> {
  server = new RawServer(answer);
  const url = await server.start();
  client = new HttpClient();
  return { url, server, client };
}

describe("the generator's HTTP client", () => {
  it('sends Host and Content-Length, and keeps one connection while the server keeps it open', async () => {
    const { url, server, client } = await serve((_, socket) => socket.write(response('<ok/>')));
    for (let i = 0; i < 3; i += 1) {
      expect(await client.request(url, { method: 'POST', headers: { SOAPAction: '"x#y"' }, body: 'é' })).toEqual({ status: 200, body: '<ok/>' });
    }
    expect(server.connections).toBe(1);
    expect(server.requests[0]).toBe(`POST /ctl HTTP/1.1\r\nHost: ${url.host}\r\nSOAPAction: "x#y"\r\nContent-Length: 2\r\n\r\né`.replace('é', '\xc3\xa9'));
  });

  it('opens a new connection for each request to a server that answers Connection: close (as miniupnpd does)', async () => {
    const { url, server, client } = await serve((_, socket) => socket.end(response('<ok/>', 'Connection: close\r\n')));
    for (let i = 0; i < 3; i += 1) expect((await client.request(url, { method: 'GET' })).body).toBe('<ok/>');
    expect(server.connections).toBe(3);
  });

  it('reads a response without Content-Length up to the end of the connection', async () => {
    const { url, client } = await serve((_, socket) => socket.end('HTTP/1.0 200 OK\r\nContent-Type: text/xml\r\n\r\n<whole/>'));
    expect(await client.request(url, { method: 'GET' })).toEqual({ status: 200, body: '<whole/>' });
  });

  it('reassembles a response that arrives a few bytes at a time', async () => {
    const { url, client } = await serve((_, socket) => {
      const text = Buffer.from(response('<fault>500</fault>').replace('200 OK', '500 Internal Server Error'));
      void (async () => {
        for (let at = 0; at < text.length; at += 7) {
          socket.write(text.subarray(at, at + 7));
          await sleep(1);
        }
      })();
    });
    expect(await client.request(url, { method: 'GET' })).toEqual({ status: 500, body: '<fault>500</fault>' });
  });

  it('tries once more on a new connection when the server closed a kept one while it was idle', async () => {
    const { url, server, client } = await serve((_, socket) => socket.write(response('<ok/>')));
    await client.request(url, { method: 'GET' });
    server.closeIdleConnections();
    await sleep(20);
    expect((await client.request(url, { method: 'GET' })).body).toBe('<ok/>');
    expect(server.connections).toBe(2);
  });

  it('fails, naming the reason, on a chunked response and on a connection closed mid-response', async () => {
    const chunked = await serve((_, socket) => socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n'));
    await expect(chunked.client.request(chunked.url, { method: 'GET' })).rejects.toThrow(/Transfer-Encoding chunked/);
    await server!.stop();
    client!.close();
    const cut = await serve((_, socket) => socket.end('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n<short/>'));
    await expect(cut.client.request(cut.url, { method: 'GET' })).rejects.toThrow(/closed in the middle of a response/);
  });
});

describe('ResponseReader', () => {
  it('refuses a status line that is not HTTP/1.x and bytes beyond the Content-Length', () => {
    expect(() => new ResponseReader().push(Buffer.from('SSH-2.0-OpenSSH\r\n\r\n'))).toThrow(/not an HTTP\/1.x status line/);
    expect(() => new ResponseReader().push(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nab'))).toThrow(/more bytes than/);
  });
});
