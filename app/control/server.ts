import { constants } from 'node:fs';
import { access, chmod, mkdir, unlink } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { isIPv4, isIPv6 } from 'node:net';
import { join } from 'node:path';
import type { Daemon } from '../../core/daemon.js';
import { messageOf } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { MAX_PINHOLE_ID, type Pinhole } from '../../core/mapping/pinhole.js';
import type { PortMapping } from '../../core/mapping/types.js';
import { canonicalIPv6, isIpv4Mapped, parseIpv6 } from '../../core/net/ipv6.js';
import { CONTROL_LIMITS, SOCKET_NAME, type ControlRequest, type ControlResponse, type ListedMapping, type ListedPinhole, type Listing } from './protocol.js';

/** The admin, as the lifecycle's notifications and log lines name who removed a mapping. */
export const ADMIN_REQUESTER = { address: 'admin', via: 'control' } as const;

/** What list, delete and purge need of the daemon. */
export type ControlledDaemon = Pick<Daemon, 'mappings' | 'status'>;

export function listed(daemon: ControlledDaemon, m: PortMapping): ListedMapping {
  return {
    protocol: m.protocol,
    externalPort: m.externalPort,
    internalClient: m.internalClient,
    internalPort: m.internalPort,
    remoteHost: m.remoteHost,
    description: m.description,
    leaseSecondsLeft: m.expiresAt === null ? null : daemon.mappings.remainingSeconds(m),
    source: m.createdBy.via,
    createdBy: m.createdBy.address,
  };
}

export function listedPinhole(daemon: ControlledDaemon, p: Pinhole): ListedPinhole {
  return {
    uniqueId: p.id,
    remoteHost: p.remoteHost,
    remotePort: p.remotePort,
    internalClient: p.internalClient,
    internalPort: p.internalPort,
    protocol: p.protocol,
    leaseSecondsLeft: daemon.mappings.remainingSeconds(p),
    source: p.createdBy.via,
    createdBy: p.createdBy.address,
  };
}

/** The mappings and pinholes of the table, as list and the status page show them. */
export function listing(daemon: ControlledDaemon): Listing {
  return {
    mappings: [...daemon.mappings.values()].map((m) => listed(daemon, m)),
    pinholes: [...daemon.mappings.pinholes.values()].map((p) => listedPinhole(daemon, p)),
  };
}

/** Closes the pinhole with this UniqueID as the admin (no ownership check); undefined when there is none. */
export async function closePinholeAsAdmin(daemon: ControlledDaemon, uniqueId: number, via: string): Promise<Pinhole | undefined> {
  const [closed] = await daemon.mappings.closePinholesWhere((p) => p.id === uniqueId, 'deleted', { ...ADMIN_REQUESTER, via });
  return closed;
}

export async function answer(daemon: ControlledDaemon, request: ControlRequest): Promise<unknown> {
  switch (request.command) {
    case 'status':
      return daemon.status();
    case 'list':
      return listing(daemon);
    case 'delete-pinhole': {
      const closed = await closePinholeAsAdmin(daemon, request.uniqueId, ADMIN_REQUESTER.via);
      if (!closed) throw new Error(`no pinhole ${request.uniqueId}`);
      return { mappings: [], pinholes: [listedPinhole(daemon, closed)] } satisfies Listing;
    }
    case 'delete': {
      const removed = await daemon.mappings.removeWhere(
        (m) => m.protocol === request.protocol && m.externalPort === request.externalPort && m.remoteHost === request.remoteHost,
        'deleted',
        ADMIN_REQUESTER,
      );
      if (removed.length === 0)
        throw new Error(`no mapping ${request.protocol} ${request.externalPort}${request.remoteHost ? ` from ${request.remoteHost}` : ''}`);
      return { mappings: removed.map((m) => listed(daemon, m)), pinholes: [] } satisfies Listing;
    }
    case 'purge': {
      const { client } = request;
      const removed = await daemon.mappings.removeWhere((m) => client === undefined || m.internalClient === client, 'deleted', ADMIN_REQUESTER);
      const closed = await daemon.mappings.closePinholesWhere((p) => client === undefined || p.internalClient === client, 'deleted', ADMIN_REQUESTER);
      return { mappings: removed.map((m) => listed(daemon, m)), pinholes: closed.map((p) => listedPinhole(daemon, p)) } satisfies Listing;
    }
  }
}

export function parseRequest(line: string): ControlRequest {
  const value = JSON.parse(line) as Partial<Record<string, unknown>>;
  switch (value.command) {
    case 'status':
    case 'list':
      return { command: value.command };
    case 'delete': {
      const { protocol, externalPort, remoteHost } = value;
      if ((protocol !== 'TCP' && protocol !== 'UDP') || !Number.isInteger(externalPort) || (externalPort as number) < 1 || (externalPort as number) > 65535) {
        throw new Error('delete needs PROTOCOL (TCP or UDP) and EXTERNAL_PORT (1-65535)');
      }
      if (remoteHost !== undefined && remoteHost !== '' && !(typeof remoteHost === 'string' && isIPv4(remoteHost)))
        throw new Error('--remote-host must be an IPv4 address');
      return { command: 'delete', protocol, externalPort: externalPort as number, remoteHost: remoteHost ?? '' };
    }
    case 'delete-pinhole': {
      const { uniqueId } = value;
      if (!Number.isInteger(uniqueId) || (uniqueId as number) < 1 || (uniqueId as number) > MAX_PINHOLE_ID)
        throw new Error(`delete pinhole needs a UniqueID (1-${MAX_PINHOLE_ID})`);
      return { command: 'delete-pinhole', uniqueId: uniqueId as number };
    }
    case 'purge': {
      const { client } = value;
      if (client === undefined) return { command: 'purge' };
      if (typeof client !== 'string' || !(isIPv4(client) || isIPv6(client))) throw new Error('--client must be an IPv4 or IPv6 address');
      // Pinholes hold canonical IPv6 addresses: 2001:DB8:0::1 names the same client as 2001:db8::1.
      // An IPv4-mapped address (::ffff:192.168.1.10, as a dual-stack socket shows a peer) is that
      // IPv4 client, whose mappings name it in dotted form.
      return { command: 'purge', client: isIPv6(client) ? (ipv4OfMapped(client) ?? canonicalIPv6(client)) : client };
    }
    default:
      throw new Error(`unknown command ${JSON.stringify(value.command)}`);
  }
}

function serve(daemon: Daemon, socket: Socket): void {
  let input = '';
  socket.setEncoding('utf8');
  socket.setTimeout(CONTROL_LIMITS.idleMs, () => socket.destroy());
  socket.on('error', () => socket.destroy());
  socket.on('data', (chunk: string) => {
    input += chunk;
    if (input.length > CONTROL_LIMITS.maxRequestBytes) return void socket.end(`${JSON.stringify({ ok: false, error: 'request too large' })}\n`);
    const end = input.indexOf('\n');
    if (end < 0) return;
    socket.removeAllListeners('data');
    const reply = (response: ControlResponse) => socket.end(`${JSON.stringify(response)}\n`);
    let request: ControlRequest;
    try {
      request = parseRequest(input.slice(0, end));
    } catch (err) {
      return reply({ ok: false, error: messageOf(err) });
    }
    answer(daemon, request).then(
      (result) => reply({ ok: true, result }),
      (err: unknown) => reply({ ok: false, error: messageOf(err) }),
    );
  });
}

/** Whether something answers on a Unix socket path (a running upnpd), or it is stale. */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createConnection(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

function ipv4OfMapped(address: string): string | undefined {
  const value = parseIpv6(address)?.value;
  if (value === undefined || !isIpv4Mapped(value)) return undefined;
  return [24n, 16n, 8n, 0n].map((shift) => String((value >> shift) & 0xffn)).join('.');
}

async function usableDir(dir: string): Promise<boolean> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    // It may exist already, made by another user (root's /run/upnpd for an ordinary user's dry-run).
    await access(dir, constants.W_OK | constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export interface ControlServer {
  readonly path: string;
  close(): Promise<void>;
}

/**
 * The control socket `upnpd.sock` (mode 0600) in the runtime directory, or in
 * $XDG_RUNTIME_DIR/upnpd when that cannot be created (dry-run as an ordinary user), or none: one
 * log line says which, and the start never fails for it. A socket left by a crash is replaced;
 * one a running upnpd answers on is left to it.
 */
export async function startControlServer(daemon: Daemon, runtimeDir: string, logger: Logger): Promise<ControlServer | undefined> {
  const fallback = process.env.XDG_RUNTIME_DIR ? join(process.env.XDG_RUNTIME_DIR, 'upnpd') : undefined;
  const dir = (await usableDir(runtimeDir)) ? runtimeDir : fallback && (await usableDir(fallback)) ? fallback : undefined;
  if (!dir) {
    logger.warn(
      { runtimeDir },
      `no control socket: ${runtimeDir} cannot be created or written (set runtimeDir or --runtime-dir); upnpd status/list/delete/purge will not reach this daemon`,
    );
    return undefined;
  }
  const path = join(dir, SOCKET_NAME);
  if (await answers(path)) {
    logger.warn({ path }, `no control socket: another upnpd answers on ${path} (give this one another --runtime-dir)`);
    return undefined;
  }
  await unlink(path).catch(() => undefined);
  const server: Server = createServer((socket) => serve(daemon, socket));
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      // The socket is bound inside listen(), before it returns: under this umask it is created 0600,
      // so there is no moment in which another user of a directory they can enter may connect.
      const umask = process.umask(0o177);
      try {
        server.listen(path, () => resolve());
      } finally {
        process.umask(umask);
      }
    });
    await chmod(path, 0o600);
  } catch (err) {
    server.close();
    logger.warn({ path, err }, `no control socket: cannot listen on ${path}: ${messageOf(err)}`);
    return undefined;
  }
  server.on('error', (err) => logger.warn({ err }, `control socket: ${messageOf(err)}`));
  logger.info({ path }, `control socket ${path} (upnpd status, list, delete, purge)`);
  return {
    path,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        void unlink(path).catch(() => undefined);
      }),
  };
}
