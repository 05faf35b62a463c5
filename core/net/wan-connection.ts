import type { Clock } from '../clock.js';
import type { Logger } from '../logger.js';
import type { NetworkInfo } from './network-info.js';

export interface WanConnectionOptions {
  /** A fixed external address (config `externalIp`); when set, the WAN interface is not read for it. */
  readonly externalIp: string | undefined;
  /** The WAN interface (config `wan`). */
  readonly wan: string | undefined;
  readonly network: NetworkInfo;
  readonly clock: Clock;
  readonly logger: Logger;
  /** How often the WAN interface's address is read again (DHCP or PPP may change it). */
  readonly pollIntervalMs?: number;
}

export type WanChangeListener = (current: string | undefined, previous: string | undefined) => void;

const DEFAULT_POLL_INTERVAL_MS = 10_000;

/**
 * The WAN connection as WANIPConnection reports it: the external address (config `externalIp`,
 * else the WAN interface's first IPv4 address), Connected while there is one, and its uptime.
 */
export class WanConnection {
  private address: string | undefined;
  private connectedSince = 0;
  private timer: unknown = undefined;
  private stopWatching: (() => void) | undefined;
  private readonly listeners = new Set<WanChangeListener>();

  constructor(private readonly options: WanConnectionOptions) {}

  get externalAddress(): string | undefined {
    return this.address;
  }

  get connected(): boolean {
    return this.address !== undefined;
  }

  /** Seconds since the external address appeared; 0 while there is none. */
  uptimeSeconds(): number {
    return this.connected ? Math.floor((this.options.clock.now() - this.connectedSince) / 1000) : 0;
  }

  /** Calls `listener` whenever the external address changes (appears, changes, or goes away). */
  onChange(listener: WanChangeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  start(): void {
    this.refresh();
    if (this.options.externalIp !== undefined || this.options.wan === undefined) return;
    // A DHCP renewal or PPPoE reconnect is noticed from the kernel's event at once; the poll
    // stays as a fallback where no events come.
    this.stopWatching = this.options.network.watchAddresses?.(() => this.refresh());
    const poll = () => {
      this.refresh();
      this.timer = this.options.clock.setTimer(poll, this.options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS);
    };
    this.timer = this.options.clock.setTimer(poll, this.options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS);
  }

  stop(): void {
    if (this.timer !== undefined) this.options.clock.clearTimer(this.timer);
    this.timer = undefined;
    this.stopWatching?.();
    this.stopWatching = undefined;
  }

  /** Reads the external address now and tells listeners if it changed. */
  refresh(): void {
    const current = this.read();
    const previous = this.address;
    if (current === previous) return;
    this.address = current;
    this.connectedSince = this.options.clock.now();
    if (current === undefined)
      this.options.logger.warn({ wan: this.options.wan, previous }, `no external address (${this.whyNoAddress()}): new mappings are refused`);
    else this.options.logger.info({ wan: this.options.wan, externalAddress: current, previous }, `external address is ${current}`);
    for (const listener of this.listeners) listener(current, previous);
  }

  private whyNoAddress(): string {
    return this.options.wan === undefined ? 'neither externalIp nor wan is configured' : `${this.options.wan} has no IPv4 address`;
  }

  private read(): string | undefined {
    if (this.options.externalIp !== undefined) return this.options.externalIp;
    if (this.options.wan === undefined) return undefined;
    return this.options.network.ipv4Addresses(this.options.wan)[0]?.address;
  }
}
