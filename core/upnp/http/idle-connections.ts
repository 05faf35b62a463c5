import type { Socket } from 'node:net';

/** What a sweep saw of a connection: its bytes read and written, and since when they have not changed. */
interface Progress {
  bytes: number;
  since: number;
}

/**
 * Closes connections that have had no traffic for `idleMs`, by sweeping over them all a few times
 * per `idleMs` rather than with a timer per connection (`server.timeout`), which Node arms on
 * connect, re-arms on every read and write and disarms on close: per request on a new connection
 * that cost about as much as reading the SOAP envelope. A connection is closed between `idleMs` and
 * `idleMs` plus two sweeps after its last byte; one that lives less than a sweep is never looked at.
 *
 * It catches what Node's own request and header timeouts do not: a request whose answer never
 * comes, a client that stops reading a response.
 */
export class IdleConnections {
  private readonly open = new Map<Socket, Progress | undefined>();
  private timer: NodeJS.Timeout | undefined;
  private readonly sweepMs: number;

  constructor(
    private readonly idleMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    if (!(idleMs > 0)) throw new Error('the idle timeout must be positive');
    this.sweepMs = Math.min(1_000, Math.max(10, Math.floor(idleMs / 4)));
  }

  /** Watches `socket` until it closes. */
  add(socket: Socket): void {
    this.open.set(socket, undefined);
    // Unreferenced: it never keeps the process alive by itself.
    this.timer ??= setInterval(() => this.sweep(), this.sweepMs).unref();
  }

  delete(socket: Socket): void {
    this.open.delete(socket);
  }

  /** Stops sweeping (the server stopped); connections still open are the server's to close. */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.open.clear();
  }

  /** One pass: closes the connections idle for `idleMs` or longer (the timer calls this). */
  sweep(): void {
    const now = this.now();
    for (const [socket, seen] of this.open) {
      const bytes = socket.bytesRead + socket.bytesWritten;
      if (seen === undefined) this.open.set(socket, { bytes, since: now });
      else if (bytes !== seen.bytes) {
        seen.bytes = bytes;
        seen.since = now;
      } else if (now - seen.since >= this.idleMs) {
        this.open.delete(socket);
        socket.destroy();
      }
    }
  }
}
