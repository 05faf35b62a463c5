import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/**
 * What a request's Expect asks: `continue` (100-continue: sent once the request is accepted),
 * `unmet` (anything else: answered 417), undefined without Expect.
 */
export type Expectation = 'continue' | 'unmet' | undefined;

/** Serves one request (the server's own `serve`). */
export type ServeRequest = (req: IncomingMessage, res: ServerResponse, expect: Expectation) => void;

export interface PipelineBounds {
  /** Pipelined requests served per turn of the event loop, all connections together. */
  readonly perTurn: number;
  /**
   * Requests waiting on one connection; at one more the connection is closed and Node's parser
   * stopped (`stopParsing`). Node reads 64 KB at a time: a read of tiny requests is over two
   * thousand, each waiting request and its response about 2 KB of heap.
   */
  readonly perConnection: number;
}

/**
 * Requests pipelined on a connection behind one not yet answered, served one at a time per
 * connection and a few per turn of the event loop, so that a host pipelining hundreds of requests
 * on each of its connections cannot make the turns long for everyone else.
 *
 * Node's parser reads up to 64 KB of a connection at once and emits every request in it in the same
 * turn; their responses wait, in order, for the one before (Node gives a response its socket once
 * the one before it is finished: until then `res.socket` is null). Served at once, a chunk of a
 * hundred pipelined requests on each of eighty connections held the loop for hundreds of
 * milliseconds a turn, and a request needing several turns (a journal write, a firewall command)
 * took seconds. Here such a request waits until its response has the socket, then for its place
 * in a queue shared by all connections, taken `perTurn` at a time in a later turn (in turn across
 * connections, each having one ready at most); the connection is not read meanwhile, and closed,
 * the rest of its read left unparsed, when more than `perConnection` wait (without that bound,
 * 128 connections pipelining tiny requests, two thousand and more a read, held 1.2 GB waiting;
 * closed but parsed to the end of the read, 700 MB). A request that has its socket when it arrives
 * (nothing pipelined: every real UPnP client) is served at once and costs nothing here.
 */
export class PipelinedRequests {
  private readonly ready: (() => void)[] = [];
  /** Requests waiting per connection; it is read again when none is left. */
  private readonly waiting = new WeakMap<Socket, number>();
  private scheduled = false;

  constructor(
    private readonly bounds: PipelineBounds,
    private readonly serve: ServeRequest,
    /** Told of a connection closed for holding too many (before it is closed). */
    private readonly onTooMany: (socket: Socket) => void,
  ) {
    if (!(bounds.perTurn >= 1) || !(bounds.perConnection >= 1)) throw new Error('at least one pipelined request must be served per turn and per connection');
  }

  /** Whether `res` waits for an earlier response on its connection (then `defer` it). */
  static waits(res: ServerResponse): boolean {
    return !res.socket;
  }

  /** Serves `req` once its response has the connection, in a later turn; stops reading the connection meanwhile. */
  defer(req: IncomingMessage, res: ServerResponse, expect: Expectation): void {
    const socket = req.socket;
    // The rest of a read whose connection was closed meanwhile (an idle sweep): not parsed further.
    if (socket.destroyed) return stopParsing(socket);
    const waiting = (this.waiting.get(socket) ?? 0) + 1;
    if (waiting > this.bounds.perConnection) {
      this.onTooMany(socket);
      stopParsing(socket);
      socket.destroy();
      return;
    }
    this.waiting.set(socket, waiting);
    // Every time: Node resumes reading on its own after a drain of the socket's writes.
    socket.pause();
    res.once('socket', () => {
      this.ready.push(() => this.take(req, res, expect));
      this.schedule();
    });
  }

  private take(req: IncomingMessage, res: ServerResponse, expect: Expectation): void {
    const socket = req.socket;
    const left = (this.waiting.get(socket) ?? 1) - 1;
    if (left > 0) this.waiting.set(socket, left);
    else {
      this.waiting.delete(socket);
      // Read the rest (this request's body included, when the read ended inside it).
      if (!socket.destroyed) socket.resume();
    }
    if (!socket.destroyed) this.serve(req, res, expect);
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.drain());
  }

  private drain(): void {
    this.scheduled = false;
    for (const next of this.ready.splice(0, this.bounds.perTurn)) next();
    if (this.ready.length > 0) this.schedule();
  }
}

/**
 * Makes Node's parser stop at the next request of the read it is going through. Closing the
 * connection does not: Node goes on through the whole read (64 KB, over two thousand tiny
 * requests) and makes a request and a response of each, alive until the connection's 'close';
 * from 128 connections at once, 600 MB and more. The parser hands each request to its
 * `onIncoming` (set per connection by Node's server), and a request whose `onIncoming` returns
 * -1 is a callback error to llhttp: it stops there, Node reports a parse error (`clientError`)
 * for the connection, already destroyed. `socket.parser` and its `onIncoming` are Node's internals
 * (Node 20): a version without them still has the connection closed, its read parsed to the end
 * as before; test/protocol/pipelining.test.ts counts the requests Node makes of one flood, and
 * would tell. Only a connection being closed gets here: a request served costs nothing.
 */
function stopParsing(socket: Socket): void {
  const parser = (socket as Socket & { parser?: { onIncoming?: unknown } | null }).parser;
  if (parser && typeof parser.onIncoming === 'function') parser.onIncoming = () => -1;
}
