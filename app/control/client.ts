import { existsSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { messageOf } from '../../core/errors.js';
import type { DaemonStatus } from '../../core/daemon.js';
import { CONTROL_LIMITS, SOCKET_NAME, type ControlRequest, type ControlResponse, type ListedMapping, type ListedPinhole, type Listing } from './protocol.js';

export const CONTROL_USAGE = `Usage: upnpd status [--json] [--runtime-dir DIR]
       upnpd list [--json] [--runtime-dir DIR]
       upnpd delete PROTOCOL EXTERNAL_PORT [--remote-host ADDR] [--runtime-dir DIR]
       upnpd delete pinhole UNIQUE_ID [--runtime-dir DIR]
       upnpd purge [--client ADDR] [--runtime-dir DIR]

Talk to the running daemon through its control socket (DIR/upnpd.sock, default /run/upnpd, owner
only). list shows port mappings and IPv6 pinholes. delete and purge remove them as the daemon
does: rules, saved state, notifications; purge --client (IPv4 or IPv6) removes that client's.
`;

/**
 * The sockets to try, in order: DIR's when given; else /run/upnpd's, then $XDG_RUNTIME_DIR/upnpd's
 * (where a daemon that could not use /run/upnpd put it).
 */
export function socketPaths(runtimeDir: string | undefined): string[] {
  if (runtimeDir !== undefined) return [join(runtimeDir, SOCKET_NAME)];
  const paths = [join('/run/upnpd', SOCKET_NAME)];
  if (process.env.XDG_RUNTIME_DIR) paths.push(join(process.env.XDG_RUNTIME_DIR, 'upnpd', SOCKET_NAME));
  return paths.filter((path, index) => index === 0 || existsSync(path));
}

export function request(path: string, body: ControlRequest): Promise<ControlResponse> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    let reply = '';
    socket.setEncoding('utf8');
    socket.setTimeout(CONTROL_LIMITS.clientTimeoutMs, () => socket.destroy(new Error('the daemon did not answer in time')));
    // The idle timeout alone lets a peer that trickles bytes keep the command waiting for ever.
    const deadline = setTimeout(() => socket.destroy(new Error('the daemon did not finish its answer in time')), CONTROL_LIMITS.clientDeadlineMs);
    socket.once('close', () => clearTimeout(deadline));
    socket.once('connect', () => socket.write(`${JSON.stringify(body)}\n`));
    socket.on('data', (chunk: string) => {
      reply += chunk;
      if (reply.length > CONTROL_LIMITS.maxReplyChars) socket.destroy(notOurs(path));
    });
    socket.once('error', (err: NodeJS.ErrnoException) => reject(connectError(err, path)));
    socket.once('end', () => {
      let parsed: unknown;
      try {
        parsed = JSON.parse(reply);
      } catch {
        reject(new Error(`unreadable answer from ${path}`));
        return;
      }
      if (isResponseTo(body, parsed)) resolve(parsed);
      else reject(notOurs(path));
    });
  });
}

function connectError(err: NodeJS.ErrnoException, path: string): Error {
  if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') return new Error(`no upnpd answers on ${path} (is it running? another --runtime-dir?)`);
  if (err.code === 'EACCES' || err.code === 'EPERM')
    return new Error(`${path}: permission denied: the control socket is the daemon's user's only (run as that user, e.g. with sudo)`);
  return err;
}

function notOurs(path: string): Error {
  return new Error(`${path} answered something that is not upnpd's control protocol (another program's socket, or another upnpd version?)`);
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** Whether `reply` has the shape upnpd answers `body` with: what the commands print reads it. */
function isResponseTo(body: ControlRequest, reply: unknown): reply is ControlResponse {
  if (!isRecord(reply)) return false;
  if (reply.ok === false) return typeof reply.error === 'string';
  if (reply.ok !== true || !isRecord(reply.result)) return false;
  const result = reply.result;
  if (body.command === 'status') return typeof result.version === 'string' && isRecord(result.mappings) && isRecord(result.frontEnds);
  return Array.isArray(result.mappings) && Array.isArray(result.pinholes);
}

function mappingLine(m: ListedMapping): string {
  const lease = m.leaseSecondsLeft === null ? 'permanent' : `${m.leaseSecondsLeft}s`;
  return `${m.protocol.padEnd(3)} ${String(m.externalPort).padStart(5)} -> ${`${m.internalClient}:${m.internalPort}`.padEnd(21)} ${(m.remoteHost || '*').padEnd(15)} ${lease.padStart(9)}  ${m.source.padEnd(12)} ${m.createdBy.padEnd(15)} ${m.description}`;
}

export function pinholeLine(p: ListedPinhole): string {
  const remote = `${p.remoteHost || '*'}${p.remotePort === 0 ? '' : ` port ${p.remotePort}`}`;
  return `pinhole ${String(p.uniqueId).padStart(5)} ${p.protocol.padEnd(3)} -> [${p.internalClient}]:${p.internalPort} from ${remote}  ${`${p.leaseSecondsLeft}s`.padStart(7)}  ${p.source.padEnd(12)} ${p.createdBy}`;
}

/** The lines of a list (verb '') or of what delete or purge removed. */
export function listingLines(listing: Listing, verb: string): string[] {
  return [...listing.mappings.map((m) => verb + mappingLine(m)), ...listing.pinholes.map((p) => verb + pinholeLine(p))];
}

function statusText(s: DaemonStatus): string {
  const counts = (record: Readonly<Record<string, number>>) =>
    Object.entries(record)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ') || 'none';
  const lines = [
    `upnpd ${s.version}, backend ${s.backend}${s.dryRun ? ' (dry-run)' : ''}, up ${s.uptimeSeconds} s, external address ${s.externalAddress ?? 'none'}`,
    `mappings: ${s.mappings.total} (${counts(s.mappings.byProtocol)}); by client: ${counts(s.mappings.byClient)}; by front-end: ${counts(s.mappings.bySource)}`,
    ...Object.entries(s.frontEnds).map(
      ([name, fields]) =>
        `${name}: ${Object.entries(fields)
          .map(([k, v]) => `${k} ${JSON.stringify(v)}`)
          .join(', ')}`,
    ),
  ];
  for (const [key, value] of Object.entries(s)) {
    if (!['version', 'backend', 'dryRun', 'uptimeSeconds', 'externalAddress', 'mappings', 'frontEnds'].includes(key))
      lines.push(`${key}: ${JSON.stringify(value)}`);
  }
  return lines.join('\n');
}

/** `upnpd status|list|delete|purge …`: resolves with the exit status (0, 1 refused or no daemon, 2 usage). */
export async function controlCommand(
  command: string,
  argv: readonly string[],
  out: NodeJS.WritableStream = process.stdout,
  err: NodeJS.WritableStream = process.stderr,
): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      options: {
        json: { type: 'boolean' },
        'runtime-dir': { type: 'string' },
        'remote-host': { type: 'string' },
        client: { type: 'string' },
        help: { type: 'boolean' },
      },
    });
  } catch (e) {
    err.write(`upnpd ${command}: ${messageOf(e)}\n${CONTROL_USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    out.write(CONTROL_USAGE);
    return 0;
  }
  let body: ControlRequest;
  if (command === 'delete' && positionals[0] === 'pinhole') {
    const id = positionals[1] ?? '';
    if (positionals.length !== 2 || !/^\d{1,5}$/.test(id)) {
      err.write(`upnpd delete pinhole: give the pinhole's UNIQUE_ID (upnpd list shows it)\n${CONTROL_USAGE}`);
      return 2;
    }
    body = { command: 'delete-pinhole', uniqueId: Number(id) };
  } else if (command === 'delete') {
    const [protocol, port] = positionals;
    const portNumber = /^\d{1,5}$/.test(port ?? '') ? Number(port) : 0;
    if (positionals.length !== 2 || !/^(tcp|udp)$/i.test(protocol ?? '') || portNumber < 1 || portNumber > 65535) {
      err.write(`upnpd delete: give PROTOCOL (TCP or UDP) and EXTERNAL_PORT (1-65535)\n${CONTROL_USAGE}`);
      return 2;
    }
    body = { command: 'delete', protocol: protocol!.toUpperCase() as 'TCP' | 'UDP', externalPort: portNumber, remoteHost: values['remote-host'] ?? '' };
  } else if (command === 'purge') {
    body = { command: 'purge', client: values.client };
  } else {
    body = { command: command as 'status' | 'list' };
  }
  if (command !== 'delete' && positionals.length > 0) {
    err.write(`upnpd ${command}: unexpected ${positionals.join(' ')}\n${CONTROL_USAGE}`);
    return 2;
  }
  let response: ControlResponse | undefined;
  let failure: unknown;
  for (const path of socketPaths(values['runtime-dir'])) {
    try {
      response = await request(path, body);
      break;
    } catch (e) {
      failure ??= e;
    }
  }
  if (!response) {
    err.write(`upnpd ${command}: ${messageOf(failure)}\n`);
    return 1;
  }
  if (!response.ok) {
    err.write(`upnpd ${command}: ${response.error}\n`);
    return 1;
  }
  if (values.json) out.write(`${JSON.stringify(response.result, null, 2)}\n`);
  else if (command === 'status') out.write(`${statusText(response.result as DaemonStatus)}\n`);
  else {
    const verb = command === 'list' ? '' : command === 'delete' ? 'deleted ' : 'purged ';
    const lines = listingLines(response.result as Listing, verb);
    out.write(lines.length === 0 ? `${command === 'list' ? 'no mappings or pinholes' : 'nothing to remove'}\n` : `${lines.join('\n')}\n`);
  }
  return 0;
}
