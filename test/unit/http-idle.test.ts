import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../core/logger.js';
import { IdleConnections } from '../../core/upnp/http/idle-connections.js';
import { UpnpHttpServer } from '../../core/upnp/http/server.js';

/** What the sweep reads of a socket, and whether it was closed. */
function fakeSocket() {
  return {
    bytesRead: 0,
    bytesWritten: 0,
    destroyed: false,
    destroy() {
      this.destroyed = true;
    },
  };
}

describe('IdleConnections', () => {
  let now = 0;
  const sweeps: IdleConnections[] = [];
  const idleAfter = (ms: number) => {
    const idle = new IdleConnections(ms, () => now);
    sweeps.push(idle);
    return idle;
  };
  afterEach(() => {
    for (const idle of sweeps.splice(0)) idle.stop();
    now = 0;
  });

  it('closes a connection without traffic for the idle time, and keeps one with traffic', () => {
    const idle = idleAfter(1_000);
    const quiet = fakeSocket();
    const busy = fakeSocket();
    idle.add(quiet as unknown as Socket);
    idle.add(busy as unknown as Socket);
    for (let t = 0; t <= 3_000; t += 250) {
      now = t;
      busy.bytesRead += 10;
      idle.sweep();
      if (t < 1_000) expect(quiet.destroyed).toBe(false);
    }
    expect(quiet.destroyed).toBe(true);
    expect(busy.destroyed).toBe(false);
  });

  it('counts bytes written as traffic too, and restarts the idle time after it', () => {
    const idle = idleAfter(1_000);
    const socket = fakeSocket();
    idle.add(socket as unknown as Socket);
    idle.sweep();
    now = 900;
    socket.bytesWritten = 500;
    idle.sweep();
    now = 1_800;
    idle.sweep();
    expect(socket.destroyed).toBe(false);
    now = 1_900;
    idle.sweep();
    expect(socket.destroyed).toBe(true);
  });

  it('forgets a closed connection', () => {
    const idle = idleAfter(100);
    const socket = fakeSocket();
    idle.add(socket as unknown as Socket);
    idle.sweep();
    idle.delete(socket as unknown as Socket);
    now = 1_000;
    idle.sweep();
    expect(socket.destroyed).toBe(false);
  });

  it('refuses an idle time that is not positive', () => {
    expect(() => new IdleConnections(0)).toThrow(/positive/);
  });
});

describe('UpnpHttpServer closes idle connections', () => {
  let server: UpnpHttpServer | undefined;
  afterEach(async () => {
    await server?.stop();
    server = undefined;
  });

  /** A server whose handler never answers, with Node's own timeouts far beyond the idle time. */
  async function neverAnswering(idleTimeoutMs: number): Promise<number> {
    server = new UpnpHttpServer({
      lan: [{ interface: 'lo', address: '127.0.0.1', prefixLength: 8 }],
      port: 0,
      serverString: 'Linux/6 UPnP/1.1 upnpd/0.0.0',
      logger: silentLogger,
      handler: () => new Promise<void>(() => {}),
      limits: { idleTimeoutMs, headersTimeoutMs: 20_000, requestTimeoutMs: 30_000, keepAliveTimeoutMs: 20_000 },
    });
    await server.start();
    return server.port;
  }

  function closedAfter(socket: Socket, limitMs: number): Promise<number> {
    const started = performance.now();
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(Number.POSITIVE_INFINITY), limitMs);
      socket.on('error', () => {});
      socket.once('close', () => {
        clearTimeout(timer);
        resolve(performance.now() - started);
      });
    });
  }

  it('closes a connection whose request is never answered', async () => {
    const port = await neverAnswering(300);
    const socket = connect({ host: '127.0.0.1', port });
    socket.write(`GET /rootDesc.xml HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
    // Between the idle time and the idle time plus two sweeps, with room for a loaded machine.
    const ms = await closedAfter(socket, 5_000);
    expect(ms).toBeGreaterThanOrEqual(250);
    expect(ms).toBeLessThan(5_000);
  });

  it('keeps a connection whose client keeps sending', async () => {
    const port = await neverAnswering(300);
    const socket = connect({ host: '127.0.0.1', port });
    socket.write(`POST /ctl HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Length: 1000\r\n\r\n`);
    const drip = setInterval(() => socket.write('x'), 50);
    try {
      expect(await closedAfter(socket, 1_500)).toBe(Number.POSITIVE_INFINITY);
    } finally {
      clearInterval(drip);
    }
    expect(await closedAfter(socket, 5_000)).toBeLessThan(5_000);
  });
});
