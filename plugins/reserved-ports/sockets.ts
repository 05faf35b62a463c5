import { open, readFile } from 'node:fs/promises';
import type { Clock, Protocol } from 'upnpd';

/** Whether the gateway itself has a socket listening on a port (on any of its addresses). */
export interface ListeningSockets {
  isListening(protocol: Protocol, port: number): Promise<boolean>;
}

/** TCP state LISTEN in /proc/net/tcp{,6} (include/net/tcp_states.h). */
const TCP_LISTEN = '0A';

/**
 * How long one read of the socket tables answers. The kernel writes a line per socket (TIME_WAIT
 * included): about 6 ms for 350 sockets here, too slow for each of thousands of requests in a
 * burst or a restore, while a service started on the gateway is seen within this time.
 */
export const SOCKET_TABLE_LIMITS = { maxAgeMs: 1000, reason: 'one read per second at most, however many requests arrive' } as const;

/**
 * Reads the kernel's socket tables (/proc/net/tcp, tcp6, udp, udp6), as miniupnpd's port-in-use
 * check does: a listening TCP socket, or an unconnected (receiving from anyone) UDP socket on the
 * port, on any local address. A table that cannot be read (no IPv6) counts as empty.
 */
export class ProcNetSockets implements ListeningSockets {
  private snapshot: { readonly at: number; readonly ports: Promise<Record<Protocol, ReadonlySet<number>>> } | undefined;

  constructor(
    private readonly clock: Pick<Clock, 'now'>,
    private readonly root = '/proc/net',
  ) {}

  async isListening(protocol: Protocol, port: number): Promise<boolean> {
    const now = this.clock.now();
    if (!this.snapshot || now - this.snapshot.at >= SOCKET_TABLE_LIMITS.maxAgeMs) this.snapshot = { at: now, ports: this.read() };
    return (await this.snapshot.ports)[protocol].has(port);
  }

  private async read(): Promise<Record<Protocol, ReadonlySet<number>>> {
    const table = (name: string) => readFile(`${this.root}/${name}`, 'latin1').catch(() => '');
    const tcpTable = (name: string) => listeningHead(`${this.root}/${name}`).catch(() => '');
    const [tcp, tcp6, udp, udp6] = await Promise.all([tcpTable('tcp'), tcpTable('tcp6'), table('udp'), table('udp6')]);
    return { TCP: listeningPorts(tcp + tcp6, 'TCP'), UDP: listeningPorts(udp + udp6, 'UDP') };
  }
}

/**
 * The head of a /proc/net/tcp{,6} table up to its first socket that is not listening. The kernel
 * lists the listening sockets first, then the others (tcp_get_idx in net/ipv4/tcp_ipv4.c: the
 * listening hash, then the established one, TIME_WAIT included), and gives one page of lines per
 * read(2). A LAN host can put tens of thousands of TIME_WAIT sockets in the table (each connection
 * the gateway closes first leaves one, for a minute): read whole, it took a read per 27 lines, each
 * waiting for a turn of the event loop, while every state change of every client waited in the
 * mapping queue (5 MB, 36,000 sockets: 11 s under one host's flood of read-only requests).
 */
async function listeningHead(path: string): Promise<string> {
  const handle = await open(path, 'r');
  try {
    const chunk = Buffer.alloc(64 * 1024);
    let text = '';
    let checkedUpTo = 0;
    for (;;) {
      const { bytesRead } = await handle.read(chunk, 0, chunk.length, null);
      if (bytesRead === 0) return text;
      text += chunk.toString('latin1', 0, bytesRead);
      const complete = text.lastIndexOf('\n') + 1;
      for (const line of text.slice(checkedUpTo, complete).split('\n')) {
        const state = line.trim().split(/\s+/, 4)[3];
        if (state !== undefined && /^[0-9A-F]{2}$/.test(state) && state !== TCP_LISTEN) return text;
      }
      checkedUpTo = complete;
    }
  } finally {
    await handle.close();
  }
}

/** The ports a /proc/net/{tcp,udp}[6] table shows sockets listening on. */
export function listeningPorts(table: string, protocol: Protocol): Set<number> {
  const ports = new Set<number>();
  for (const line of table.split('\n')) {
    // "  sl  local_address rem_address   st ..."; addresses are HEXADDR:HEXPORT.
    const [, local, remote, state] = line.trim().split(/\s+/, 4);
    if (local === undefined || remote === undefined || state === undefined || !local.includes(':')) continue;
    const listening = protocol === 'TCP' ? state === TCP_LISTEN : /^[0:]+$/.test(remote);
    if (listening) ports.add(parseInt(local.slice(local.lastIndexOf(':') + 1), 16));
  }
  return ports;
}
