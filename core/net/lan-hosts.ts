import { createSocket } from 'node:dgram';
import { isIP } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CommandRunner } from '../command-runner.js';
import { canonicalIPv6, isRoutableIPv6, type Ipv6Lan } from './ipv6.js';
import { INTERFACE_NAME, type NeighbourEvent } from './network-info.js';

/**
 * Which LAN host an address belongs to, from the gateway's neighbour table: two addresses are the
 * same host when they resolve to the same link-layer address on a LAN interface. This is how a
 * client may open pinholes to ANY of its IPv6 addresses (privacy addresses, several prefixes), not
 * only the one it spoke from (miniupnpd answers 606 there, miniupnp#731), while another host may not.
 */
export interface NeighbourSettings {
  /** Tries to resolve an address that is not (or no longer) in the table. */
  readonly resolveAttempts: number;
  /** Wait after each nudge (a datagram to the address makes the kernel send a neighbour solicitation). */
  readonly resolveWaitMs: number;
  /** Bound on one `ip neigh` run. */
  readonly commandTimeoutMs: number;

  /** How long an entry learnt from the neighbour events (or from `ip neigh`) may answer "same host" without the kernel. */
  readonly cacheMaxAgeMs: number;
  /** Entries kept at most; over it the cache starts empty again (a miss only costs an `ip neigh`). */
  readonly cacheMaxEntries: number;
}

export const DEFAULT_NEIGHBOUR_SETTINGS: NeighbourSettings = Object.freeze({
  resolveAttempts: 4,
  resolveWaitMs: 250,
  commandTimeoutMs: 5_000,
  cacheMaxAgeMs: 30_000,
  cacheMaxEntries: 4096,
});

/** The discard port: the nudge carries nothing anyone listens for. */
const DISCARD_PORT = 9;

/** States of a neighbour entry whose link-layer address can be trusted (ip-neighbour(8)). */
const USABLE_STATES = new Set(['REACHABLE', 'STALE', 'DELAY', 'PROBE', 'PERMANENT', 'NOARP']);

interface Neighbour {
  readonly dst: string;
  readonly dev: string;
  readonly lladdr?: string;
  readonly state?: readonly string[];
}

/**
 * The LAN neighbours' link-layer addresses as the kernel's neighbour events told them (and as
 * `ip neigh` read them, when no event came in between), so that a host opening a pinhole to
 * another of its addresses costs no process. It only ever answers "same host", and only from
 * fresh entries while the events flow: anything else (a miss, an old entry, addresses that differ,
 * events lost) goes to the kernel. A neighbour whose link-layer address changed is updated by the
 * kernel's event; one deleted or failed is dropped.
 */
export class NeighbourCache {
  private readonly entries = new Map<string, { readonly lladdr: string; readonly at: number }>();
  /** Counts the events: a kernel read is kept only if none came while it ran (it could be older than the event). */
  private events = 0;
  private live = true;
  private readonly stopWatching: () => void;

  constructor(
    private readonly interfaces: readonly string[],
    watch: (onEvent: (event: NeighbourEvent) => void) => () => void,
    private readonly settings: Pick<NeighbourSettings, 'cacheMaxAgeMs' | 'cacheMaxEntries'> = DEFAULT_NEIGHBOUR_SETTINGS,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.stopWatching = watch((event) => this.hear(event));
  }

  /** Whether two addresses are known, from fresh entries, to have the same link-layer address; false when not known. */
  sameHost(a: string, b: string): boolean {
    const first = this.fresh(a);
    return first !== undefined && first === this.fresh(b);
  }

  /** Where a kernel read stands: pass it to `learn` with what was read. */
  get mark(): number {
    return this.events;
  }

  /** What `ip neigh` read, started at `mark`: kept unless an event came meanwhile. */
  learn(address: string, dev: string, lladdr: string, mark: number): void {
    if (mark === this.events && this.live && this.interfaces.includes(dev)) this.set(address, lladdr);
  }

  close(): void {
    this.stopWatching();
    this.forget();
  }

  private hear(event: NeighbourEvent): void {
    this.events++;
    if (event.kind === 'lost') return this.forget();
    // Flowing again: what changed meanwhile was forgotten with the loss, and a read from before this is not kept (events counted).
    if (event.kind === 'resumed') {
      this.live = true;
      return;
    }
    if (!this.interfaces.includes(event.dev)) return;
    if (!event.deleted && event.lladdr !== undefined && event.states.some((s) => USABLE_STATES.has(s))) this.set(event.address, event.lladdr);
    else this.entries.delete(keyOf(event.address));
  }

  private set(address: string, lladdr: string): void {
    if (this.entries.size >= this.settings.cacheMaxEntries) this.entries.clear();
    this.entries.set(keyOf(address), { lladdr: lladdr.toLowerCase(), at: this.now() });
  }

  private fresh(address: string): string | undefined {
    if (!this.live) return undefined;
    const entry = this.entries.get(keyOf(address));
    return entry && this.now() - entry.at <= this.settings.cacheMaxAgeMs ? entry.lladdr : undefined;
  }

  /** Events may be missed from now on: nothing is answered from memory any more. */
  private forget(): void {
    this.live = false;
    this.entries.clear();
  }
}

/** IPv6 in canonical form (the events and `ip neigh` print it compressed, clients may not). */
function keyOf(address: string): string {
  return isIP(address) === 6 ? canonicalIPv6(address) : address;
}

export class LanHosts {
  constructor(
    private readonly interfaces: readonly string[],
    private readonly commands: CommandRunner,
    /** The LAN's IPv6 side as served now (asked each time: a new delegated prefix counts at once). */
    private readonly lan: () => Ipv6Lan,
    private readonly settings: NeighbourSettings = DEFAULT_NEIGHBOUR_SETTINGS,
    /** Answers "same host" without a process when it can; without it, every check reads the kernel's table. */
    private readonly cache?: NeighbourCache,
  ) {}

  /**
   * Why `requester` may not open or manage pinholes to `internalClient`, or undefined when it may:
   * the address must be a routable IPv6 address on a LAN prefix, not the gateway's own, and the
   * requester's own address or another address of the same host.
   */
  async refuse(internalClient: string, requester: string): Promise<string | undefined> {
    const lan = this.lan();
    const target = canonicalIPv6(internalClient);
    if (!isRoutableIPv6(target) || !lan.contains(target)) return `${internalClient} is not an address on a LAN IPv6 prefix`;
    if (lan.isOwnAddress(target)) return `${internalClient} is the gateway's own address`;
    const from = requester.startsWith('::ffff:') && isIP(requester.slice(7)) === 4 ? requester.slice(7) : requester;
    if (isIP(from) === 6 && canonicalIPv6(from) === target) return undefined;
    if (this.cache?.sameHost(from, target)) return undefined;
    // A miss, or a doubt (the cache never refuses): the kernel's table decides.
    const requesterLink = await this.linkAddress(from, false);
    if (!requesterLink) return `${requester}'s link-layer address is unknown, so ${internalClient} cannot be checked as its own`;
    const targetLink = await this.linkAddress(target, true);
    if (targetLink === requesterLink) return undefined;
    return `${internalClient} is not an address of ${requester} (${targetLink ? 'another host' : 'no host answers for it'})`;
  }

  /** The link-layer address of a LAN neighbour; with `resolve`, nudges the kernel to resolve it first if needed. */
  private async linkAddress(address: string, resolve: boolean): Promise<string | undefined> {
    const attempts = resolve ? this.settings.resolveAttempts : 0;
    for (let attempt = 0; ; attempt++) {
      const mark = this.cache?.mark ?? 0;
      const found = (await this.neighbours(address)).find((n) => n.lladdr && n.state?.some((s) => USABLE_STATES.has(s)));
      if (found) {
        this.cache?.learn(address, found.dev, found.lladdr!, mark);
        return found.lladdr!.toLowerCase();
      }
      if (attempt >= attempts) return undefined;
      await nudge(address);
      await sleep(this.settings.resolveWaitMs);
    }
  }

  private async neighbours(address: string): Promise<Neighbour[]> {
    const found: Neighbour[] = [];
    for (const dev of this.interfaces) {
      if (!INTERFACE_NAME.test(dev)) continue;
      const result = await this.commands.run('ip', ['-j', 'neigh', 'show', 'to', address, 'dev', dev], { timeoutMs: this.settings.commandTimeoutMs });
      if (result.exitCode !== 0) continue;
      try {
        const parsed = JSON.parse(result.stdout || '[]') as unknown;
        if (Array.isArray(parsed)) for (const n of parsed as Neighbour[]) found.push({ ...n, dev });
      } catch {
        // Not JSON (an old iproute2): treated as no entry.
      }
    }
    return found;
  }
}

/** Sends one empty datagram to the discard port: the kernel resolves the address (a neighbour solicitation) on the way. */
function nudge(address: string): Promise<void> {
  return new Promise((resolve) => {
    const socket = createSocket(isIP(address) === 6 ? 'udp6' : 'udp4');
    const done = () => {
      socket.close();
      resolve();
    };
    socket.on('error', done);
    socket.send(Buffer.alloc(0), DISCARD_PORT, address, done);
  });
}
