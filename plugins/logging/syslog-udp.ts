import { createSocket, type Socket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import type { LogRecord } from 'upnpd';
import type { DropCounter } from './drops.js';
import type { SyslogFormat } from './options.js';
import { severityOf, type FacilityName } from './priority.js';
import { SYSLOG_FORMATTERS } from './syslog-format.js';
import { SETTLE_TIMEOUT_MS, settleWithin, type SyslogDestination } from './syslog-destination.js';
import { messageText } from './text.js';

/** Datagrams handed to the kernel but not yet sent; beyond this, records are dropped. */
const MAX_IN_FLIGHT = 1_000;

export interface UdpSyslogOptions {
  readonly host: string;
  readonly port: number;
  readonly format: SyslogFormat;
  readonly facility: FacilityName;
  readonly tag: string;
  readonly hostname: string;
  readonly pid: number;
}

/**
 * Syslog over UDP (RFC 5426): one datagram per record, formatted here. The socket is not
 * connected, so a collector that restarts needs nothing from us; a host name is resolved per
 * datagram by Node (give an address to avoid the lookups). The socket never keeps the daemon alive.
 */
export class UdpSyslogDestination implements SyslogDestination {
  private socket: Socket | undefined;
  private inFlight = 0;
  private idle: { promise: Promise<void>; resolve: () => void } | undefined;

  constructor(
    private readonly options: UdpSyslogOptions,
    private readonly drops: DropCounter,
  ) {}

  /** A UDP socket has nothing to wait for: the first record sent finds out whether anyone listens. */
  start(): Promise<void> {
    const socket = createSocket({ type: isIPv6(this.options.host) ? 'udp6' : 'udp4' });
    socket.on('error', (err) => this.drops.drop(err.message));
    socket.unref();
    this.socket = socket;
    return Promise.resolve();
  }

  write(record: LogRecord): void {
    if (!this.socket) return;
    if (this.inFlight >= MAX_IN_FLIGHT) {
      this.drops.drop(`more than ${MAX_IN_FLIGHT} datagrams waiting to be sent`);
      return;
    }
    const datagram = SYSLOG_FORMATTERS[this.options.format]({
      facility: this.options.facility,
      severity: severityOf(record.level),
      time: new Date(record.time),
      hostname: this.options.hostname,
      tag: this.options.tag,
      pid: this.options.pid,
      text: messageText(record),
    });
    this.inFlight++;
    this.socket.send(datagram, this.options.port, this.options.host, (err) => {
      this.inFlight--;
      if (err) this.drops.drop(err.message);
      if (this.inFlight === 0) this.idle?.resolve();
    });
  }

  flush(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    if (!this.idle) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r)).finally(() => (this.idle = undefined));
      this.idle = { promise, resolve };
    }
    return settleWithin(this.idle.promise, SETTLE_TIMEOUT_MS);
  }

  async close(): Promise<void> {
    const socket = this.socket;
    if (!socket) return;
    await this.flush();
    this.socket = undefined;
    await new Promise<void>((resolve) => socket.close(() => resolve()));
  }
}
