import { networkInterfaces } from 'node:os';
import { readFile } from 'node:fs/promises';
import { isIP, isIPv4 } from 'node:net';
import { createInterface } from 'node:readline';
import { startCommand } from '../command-runner.js';
import type { Logger } from '../logger.js';
import { readIpv6Addresses, type Ipv6InterfaceAddress } from './ipv6.js';

/** Linux interface names: at most 15 characters, no spaces or slashes. */
export const INTERFACE_NAME = /^[\w.@:-]{1,15}$/;

export interface InterfaceAddress {
  readonly interface: string;
  readonly address: string;
  /** Prefix length, e.g. 24. */
  readonly prefixLength: number;
}

export interface WanCounters {
  readonly bytesSent: number;
  readonly bytesReceived: number;
  readonly packetsSent: number;
  readonly packetsReceived: number;
}

export interface LinkState {
  readonly up: boolean;
  /** Link speed in bits per second; null when the driver does not say (virtual links). */
  readonly speedBitsPerSecond: number | null;
}

/** What the daemon knows of the host's interfaces. Injectable so tests can describe any network. */
export interface NetworkInfo {
  /** IPv4 addresses of a named interface (empty when it does not exist or has none). */
  ipv4Addresses(iface: string): InterfaceAddress[];
  /**
   * Usable IPv6 addresses of a named interface (link-local, ULA, global; none still tentative).
   * Optional: a NetworkInfo without it describes an IPv4-only host.
   */
  ipv6Addresses?(iface: string): Ipv6InterfaceAddress[];
  /** Counters of an interface from /sys/class/net/IFACE/statistics; null when unavailable. */
  counters(iface: string): Promise<WanCounters | null>;
  /** Operational state and speed from /sys/class/net/IFACE; null when the interface does not exist. */
  link(iface: string): Promise<LinkState | null>;
  /**
   * Optional: calls `onChange` soon after an address is added to or removed from any interface
   * (the caller reads again what it needs). Returns a function that stops watching.
   */
  watchAddresses?(onChange: () => void): () => void;
  /**
   * Optional: tells `onEvent` of each change of the kernel's neighbour table (an entry resolved,
   * its link-layer address or state changed, or deleted), with `lost` when events may have been
   * missed from then on (the watch ended), and with `resumed` when they flow again (what changed
   * in between is unknown). Returns a function that stops watching.
   */
  watchNeighbours?(onEvent: (event: NeighbourEvent) => void): () => void;
}

/** A change of the neighbour table (`ip monitor neigh`); `lost`: events may be missed from now on; `resumed`: they flow again. */
export type NeighbourEvent =
  | {
      readonly kind: 'neighbour';
      readonly address: string;
      readonly dev: string;
      /** Absent when the entry has none (FAILED, INCOMPLETE). */
      readonly lladdr?: string;
      /** NUD states (REACHABLE, STALE, ...). */
      readonly states: readonly string[];
      readonly deleted: boolean;
    }
  | { readonly kind: 'lost' }
  | { readonly kind: 'resumed' };

/** When the `ip monitor` behind the address and neighbour events ends without being asked to. */
export interface MonitorRestarts {
  /** Waits before each restart in a row (the last repeats): a monitor that cannot run is not respawned in a loop. */
  readonly delaysMs: readonly number[];
  /** A monitor that ran this long before it ended starts again after the first delay. */
  readonly stableMs: number;
  /** The new monitor is trusted to report events once it has run this long (it subscribes as it starts). */
  readonly settleMs: number;
  /** Told once when events stop (until they flow again) and once when they flow again. */
  readonly report?: (message: string, level: 'warn' | 'info') => void;
}

export const DEFAULT_MONITOR_RESTARTS: MonitorRestarts = Object.freeze({ delaysMs: [1_000, 5_000, 30_000], stableMs: 60_000, settleMs: 200 });

/** The system's network, with what happens to its `ip monitor` told to `logger`. */
export function systemNetwork(logger: Pick<Logger, 'warn' | 'info'>): OsNetworkInfo {
  return new OsNetworkInfo({ ...DEFAULT_MONITOR_RESTARTS, report: (message, level) => logger[level](message) });
}

export class OsNetworkInfo implements NetworkInfo {
  constructor(private readonly restarts: MonitorRestarts = DEFAULT_MONITOR_RESTARTS) {}

  ipv4Addresses(iface: string): InterfaceAddress[] {
    const entries = networkInterfaces()[iface] ?? [];
    return entries.filter((a) => a.family === 'IPv4').map((a) => ({ interface: iface, address: a.address, prefixLength: prefixLengthOf(a.cidr, a.netmask) }));
  }

  ipv6Addresses(iface: string): Ipv6InterfaceAddress[] {
    return readIpv6Addresses(iface);
  }

  async counters(iface: string): Promise<WanCounters | null> {
    if (!INTERFACE_NAME.test(iface)) return null;
    const read = async (name: string) => Number((await readFile(`/sys/class/net/${iface}/statistics/${name}`, 'utf8')).trim());
    try {
      const [bytesSent, bytesReceived, packetsSent, packetsReceived] = await Promise.all(['tx_bytes', 'rx_bytes', 'tx_packets', 'rx_packets'].map(read));
      return { bytesSent: bytesSent!, bytesReceived: bytesReceived!, packetsSent: packetsSent!, packetsReceived: packetsReceived! };
    } catch {
      return null;
    }
  }

  link(iface: string): Promise<LinkState | null> {
    return readLinkState(iface);
  }

  /** Who is told of address and neighbour events; one `ip monitor` runs while there is anyone. */
  private readonly addressWatchers = new Set<() => void>();
  private readonly neighbourWatchers = new Set<(event: NeighbourEvent) => void>();
  private stopMonitor: (() => void) | undefined;

  /**
   * The kernel's address events through a long-lived `ip -o monitor label address neigh` (one
   * line per event), one process however many watch addresses or neighbours (the WAN address, the
   * LAN's, the pinhole owners': 2.5 MB of RSS each). Where `ip` cannot run, nothing is reported
   * and callers keep polling.
   */
  watchAddresses(onChange: () => void): () => void {
    // Each call its own entry, even for the same function.
    return this.watch(this.addressWatchers, () => onChange());
  }

  /** Neighbour events from the same `ip monitor` as the address events. */
  watchNeighbours(onEvent: (event: NeighbourEvent) => void): () => void {
    return this.watch(this.neighbourWatchers, (event: NeighbourEvent) => onEvent(event));
  }

  private watch<T>(watchers: Set<T>, watcher: T): () => void {
    watchers.add(watcher);
    this.stopMonitor ??= this.startMonitor();
    return () => {
      watchers.delete(watcher);
      if (this.addressWatchers.size + this.neighbourWatchers.size > 0) return;
      this.stopMonitor?.();
      this.stopMonitor = undefined;
    };
  }

  /**
   * Runs `ip monitor` for as long as anyone watches. If it ends unasked (killed, or `ip` missing),
   * the neighbour watchers hear `lost` and it is started again after a delay; once the new one has
   * settled, the address watchers are told (an address may have changed meanwhile) and the
   * neighbour watchers hear `resumed`.
   */
  private startMonitor(): () => void {
    let stopped = false;
    let running: { kill(): void } | undefined;
    let timer: NodeJS.Timeout | undefined;
    let failuresInARow = 0;
    /** Whether the admin was last told that the events stopped (told once per stop, and once when they are back). */
    let reportedDown = false;
    const run = (restarted: boolean) => {
      const startedAt = performance.now();
      const monitor = startCommand('ip', ['-o', 'monitor', 'label', 'address', 'neigh'], { stdin: 'ignore', stdout: true, stderr: 'ignore' });
      running = monitor;
      if (monitor.stdout) {
        createInterface({ input: monitor.stdout }).on('line', (line) => {
          if (line.startsWith('[NEIGH]')) {
            const event = parseNeighbourLine(line.slice('[NEIGH]'.length));
            if (event) for (const watcher of [...this.neighbourWatchers]) watcher(event);
          } else {
            for (const watcher of [...this.addressWatchers]) watcher();
          }
        });
      }
      if (restarted) {
        timer = setTimeout(() => {
          if (stopped || running !== monitor) return;
          if (reportedDown) this.restarts.report?.('ip monitor runs again: address and neighbour events are back', 'info');
          reportedDown = false;
          for (const watcher of [...this.addressWatchers]) watcher();
          for (const watcher of [...this.neighbourWatchers]) watcher({ kind: 'resumed' });
        }, this.restarts.settleMs);
        timer.unref();
      }
      void monitor.exited.then((result) => {
        if (stopped) return;
        // Whoever relies on the neighbour events hears that they stopped.
        for (const watcher of [...this.neighbourWatchers]) watcher({ kind: 'lost' });
        if (performance.now() - startedAt >= this.restarts.stableMs) failuresInARow = 0;
        const delays = this.restarts.delaysMs;
        const delay = delays[Math.min(failuresInARow, delays.length - 1)]!;
        if (!reportedDown) {
          reportedDown = true;
          const why = result.signal ? `killed by ${result.signal}` : typeof result.exitCode === 'number' ? `exit code ${result.exitCode}` : 'could not run';
          this.restarts.report?.(`ip monitor ended (${why}): address and neighbour events stop until it runs again; retrying in ${delay / 1000} s`, 'warn');
        }
        failuresInARow++;
        clearTimeout(timer);
        timer = setTimeout(() => run(true), delay);
        timer.unref();
      });
    };
    run(false);
    return () => {
      stopped = true;
      clearTimeout(timer);
      running?.kill();
    };
  }
}

/** NUD states as `ip neigh` prints them (ip-neighbour(8)). */
const NEIGHBOUR_STATES = new Set(['PERMANENT', 'NOARP', 'REACHABLE', 'STALE', 'NONE', 'INCOMPLETE', 'DELAY', 'PROBE', 'FAILED']);

/**
 * One line of `ip -o monitor neigh` (without its label): `[Deleted ]ADDRESS dev DEV [lladdr LL]
 * [flags] STATE...`. Undefined for a line that is not one (`miss` notices, proxy entries).
 */
export function parseNeighbourLine(line: string): NeighbourEvent | undefined {
  const words = line.trim().split(/\s+/);
  const deleted = words[0] === 'Deleted';
  if (deleted) words.shift();
  const [address, devKeyword, dev] = words;
  if (address === undefined || devKeyword !== 'dev' || dev === undefined || isIP(address) === 0) return undefined;
  const lladdrAt = words.indexOf('lladdr');
  const lladdr = lladdrAt > 0 ? words[lladdrAt + 1]?.toLowerCase() : undefined;
  const states = words.filter((w) => NEIGHBOUR_STATES.has(w));
  return { kind: 'neighbour', address, dev, ...(lladdr === undefined ? {} : { lladdr }), states, deleted };
}

export async function readLinkState(iface: string): Promise<LinkState | null> {
  if (!INTERFACE_NAME.test(iface)) return null;
  const read = (name: string) => readFile(`/sys/class/net/${iface}/${name}`, 'utf8').then((v) => v.trim());
  let operstate: string;
  try {
    operstate = await read('operstate');
  } catch {
    return null;
  }
  // Reading `speed` fails (EINVAL) on links that are down or have no speed; -1 means unknown.
  const megabits = Number(await read('speed').catch(() => '-1'));
  // 'unknown' is what loopback-like and some virtual links report while working.
  return { up: operstate === 'up' || operstate === 'unknown', speedBitsPerSecond: megabits > 0 ? megabits * 1_000_000 : null };
}

function prefixLengthOf(cidr: string | null, netmask: string): number {
  if (cidr) return Number(cidr.split('/')[1]);
  return netmask.split('.').reduce((bits, octet) => bits + popcount(Number(octet)), 0);
}

function popcount(n: number): number {
  let count = 0;
  for (let v = n; v; v >>= 1) count += v & 1;
  return count;
}

/** Peers may appear as ::ffff:a.b.c.d on dual-stack sockets. */
export function normalizeAddress(address: string): string {
  return address.startsWith('::ffff:') && isIPv4(address.slice(7)) ? address.slice(7) : address;
}

/** Set membership test for the LAN subnets. */
export class SubnetSet {
  /** Each subnet as integers (checked on every request: no address objects). */
  private readonly networks: readonly { readonly network: number; readonly mask: number }[];
  constructor(readonly subnets: readonly InterfaceAddress[]) {
    this.networks = subnets.map((s) => {
      const mask = prefixMask(s.prefixLength);
      return { network: (ipv4ToInt(s.address) & mask) >>> 0, mask };
    });
  }
  contains(address: string): boolean {
    const a = normalizeAddress(address);
    if (!isIPv4(a)) return false;
    const n = ipv4ToInt(a);
    return this.networks.some(({ network, mask }) => (n & mask) >>> 0 === network);
  }
  /** The LAN subnet an address is in, if any. */
  find(address: string): InterfaceAddress | undefined {
    const a = normalizeAddress(address);
    if (!isIPv4(a)) return undefined;
    return this.subnets.find((s) => ipv4ToInt(networkAddress(a, s.prefixLength)) === ipv4ToInt(networkAddress(s.address, s.prefixLength)));
  }
}

export function ipv4ToInt(address: string): number {
  return address.split('.').reduce((acc, octet) => ((acc << 8) | Number(octet)) >>> 0, 0);
}

export function intToIpv4(n: number): string {
  return [24, 16, 8, 0].map((shift) => (n >>> shift) & 255).join('.');
}

export function networkAddress(address: string, prefixLength: number): string {
  return intToIpv4((ipv4ToInt(address) & prefixMask(prefixLength)) >>> 0);
}

function prefixMask(prefixLength: number): number {
  return prefixLength === 0 ? 0 : (~0 << (32 - prefixLength)) >>> 0;
}

export function broadcastAddress(address: string, prefixLength: number): string {
  const mask = prefixLength === 0 ? 0 : (~0 << (32 - prefixLength)) >>> 0;
  return intToIpv4(((ipv4ToInt(address) & mask) | (~mask >>> 0)) >>> 0);
}
