import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import type { Daemon } from '../../core/daemon.js';
import { ConfigError, messageOf } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { ADMIN_REQUESTER, closePinholeAsAdmin, listing } from '../control/server.js';
import { type ApplyTimes, daemonMetrics } from './metrics.js';
import { statusPage } from './page.js';

/** Bounds of the admin listener: it is meant for loopback, but a browser tab is not trusted either. */
export const ADMIN_LIMITS = { maxBodyBytes: 4096, requestTimeoutMs: 10_000, maxConnections: 16 } as const;

/** What the page says after a Delete, which redirects to /?deleted=1 (removed) or /?deleted=0 (gone already). */
const DELETE_NOTICES: Readonly<Record<string, string>> = { '1': 'Deleted.', '0': 'Nothing was deleted: it was gone already.' };

export function parseListen(listen: string): { host: string; port: number } {
  const match = /^\[?([^\]]+)\]?:(\d{1,5})$/.exec(listen);
  const host = match?.[1] ?? '';
  const port = Number(match?.[2]);
  if (!isIP(host) || !(port >= 1 && port <= 65535)) throw new ConfigError(`admin.listen: "${listen}" is not ADDRESS:PORT`);
  return { host, port };
}

export function isLoopback(host: string): boolean {
  return host === '::1' || /^127\./.test(host);
}

/** Refuses, before anything starts, an admin address that is not loopback unless allowed. */
export function checkAdminListen(listen: string, allowNonLoopback: boolean): void {
  const { host } = parseListen(listen);
  // Requests must name the listener's address in Host (no DNS rebinding): under 0.0.0.0 or :: none
  // could, and every request but localhost's was answered 421.
  if (host === '0.0.0.0' || host === '::')
    throw new ConfigError(`admin.listen: ${host} is every address; give the one address to serve on (requests must name it in their Host header)`);
  if (!isLoopback(host) && !allowNonLoopback) {
    throw new ConfigError(
      `admin.listen: ${host} is not a loopback address; the admin page can delete mappings, so set admin.allowNonLoopback: true to serve it there`,
    );
  }
}

export interface AdminServer {
  readonly url: string;
  close(): Promise<void>;
}

/**
 * The admin HTTP listener: `/metrics` (Prometheus text) and `/`, a status page listing the mappings
 * with delete buttons. Deleting is a POST that must carry the page's token and come from the page's
 * own origin (Origin / Sec-Fetch-Site), and the Host must be the listener's (no DNS rebinding).
 */
export async function startAdminServer(
  daemon: Daemon,
  listen: string,
  options: { readonly allowNonLoopback: boolean; readonly applyTimes?: ApplyTimes },
  logger: Logger,
): Promise<AdminServer> {
  checkAdminListen(listen, options.allowNonLoopback);
  const { host, port } = parseListen(listen);
  const token = randomBytes(24).toString('hex');
  const registry = daemonMetrics(daemon, options.applyTimes);
  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      logger.warn({ err }, `admin listener: ${messageOf(err)}`);
      if (!res.headersSent) res.writeHead(500).end();
    });
  });
  server.maxConnections = ADMIN_LIMITS.maxConnections;
  server.requestTimeout = ADMIN_LIMITS.requestTimeoutMs;
  const authority = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  const origin = `http://${authority}`;
  // The names the page is served under: its address, and localhost (what an admin types).
  const authorities = new Set([authority, `localhost:${port}`]);

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!authorities.has(req.headers.host ?? '')) return void res.writeHead(421).end('wrong Host\n');
    const [path, query = ''] = (req.url ?? '/').split('?');
    if (req.method === 'GET' && path === '/metrics') {
      res.writeHead(200, { 'content-type': registry.contentType });
      return void res.end(await registry.metrics());
    }
    if (req.method === 'GET' && path === '/') return page(res, DELETE_NOTICES[new URLSearchParams(query).get('deleted') ?? '']);
    if (req.method === 'POST' && path === '/delete') return deleteMapping(req, res);
    res.writeHead(404).end('not found\n');
  }

  function page(res: ServerResponse, notice?: string, status = 200): void {
    const html = statusPage(daemon.status(), listing(daemon), token, notice);
    res.writeHead(status, {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
      'x-frame-options': 'DENY',
    });
    res.end(html);
  }

  async function deleteMapping(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const site = req.headers['sec-fetch-site'];
    const sentOrigin = req.headers.origin;
    // The page's own origin is the one it was opened under: http://localhost:PORT sends that Origin.
    if ((sentOrigin !== undefined && sentOrigin !== `http://${req.headers.host}`) || (site !== undefined && site !== 'same-origin'))
      return void res.writeHead(403).end('cross-site request refused\n');
    if (!/^application\/x-www-form-urlencoded\b/.test(req.headers['content-type'] ?? '')) return void res.writeHead(415).end();
    let body = '';
    for await (const chunk of req) {
      body += String(chunk);
      if (body.length > ADMIN_LIMITS.maxBodyBytes) return void res.writeHead(413).end();
    }
    const form = new URLSearchParams(body);
    const sent = Buffer.from(form.get('token') ?? '');
    if (sent.length !== token.length || !timingSafeEqual(sent, Buffer.from(token))) return void res.writeHead(403).end('bad token\n');
    const uniqueId = form.get('uniqueId');
    if (uniqueId !== null) {
      const closed = /^\d{1,5}$/.test(uniqueId) ? await closePinholeAsAdmin(daemon, Number(uniqueId), 'admin-page') : undefined;
      return void res.writeHead(303, { location: closed ? '/?deleted=1' : '/?deleted=0' }).end();
    }
    const protocol = form.get('protocol');
    const externalPort = Number(form.get('externalPort'));
    const remoteHost = form.get('remoteHost') ?? '';
    const removed = await daemon.mappings.removeWhere(
      (m) => m.protocol === protocol && m.externalPort === externalPort && m.remoteHost === remoteHost,
      'deleted',
      { ...ADMIN_REQUESTER, via: 'admin-page' },
    );
    // After a POST, back to the page (a reload does not post again).
    res.writeHead(303, { location: removed.length > 0 ? '/?deleted=1' : '/?deleted=0' }).end();
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  logger.info({ url: `${origin}/` }, `admin listener ${origin}/ (status page) and ${origin}/metrics`);
  return {
    url: origin,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
