import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendReply, statusReply } from './reply.js';

export type RequestHandler = (req: IncomingMessage, res: ServerResponse, peer: string) => void | Promise<void>;

/** Exact-path routing by method: unknown paths are 404, known paths with another method 405. */
export class RouteTable {
  private readonly routes = new Map<string, Map<string, RequestHandler>>();

  /** Registers `handler` for `methods` on `path`. A path/method pair can be registered once. */
  add(path: string, methods: readonly string[], handler: RequestHandler): this {
    const byMethod = this.routes.get(path) ?? new Map<string, RequestHandler>();
    for (const method of methods) {
      if (byMethod.has(method)) throw new Error(`route ${method} ${path} is registered twice`);
      byMethod.set(method, handler);
    }
    this.routes.set(path, byMethod);
    return this;
  }

  readonly dispatch: RequestHandler = (req, res, peer) => {
    const path = pathOf(req.url);
    if (path === undefined) return sendReply(res, statusReply(400, { close: true }));
    const byMethod = this.routes.get(path);
    if (!byMethod) return sendReply(res, statusReply(404));
    const handler = byMethod.get(req.method ?? '');
    if (!handler) return sendReply(res, statusReply(405, { headers: { Allow: [...byMethod.keys()].join(', ') } }));
    return handler(req, res, peer);
  };
}

/** Nothing that URL parsing would change: no query, fragment, percent-encoding or dot segments. */
const PLAIN_PATH = /^(?:\/[A-Za-z0-9_-]+)+$|^\/$/;

/** The path of a request target (origin-form, or absolute-form from a proxy-minded client), without the query. */
function pathOf(target: string | undefined): string | undefined {
  if (!target) return undefined;
  // The usual case, a plain path, is its own pathname: no URL object per request for it.
  if (PLAIN_PATH.test(target)) return target;
  try {
    return new URL(target, 'http://upnpd.invalid').pathname;
  } catch {
    return undefined;
  }
}
