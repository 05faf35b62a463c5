import { hostname } from 'node:os';
import { inject, injectable } from 'tsyringe';
import {
  CLOCK,
  LOGGER,
  LOG_OUTPUT,
  PLUGIN_OPTIONS,
  type Clock,
  type Hooks,
  type LogDestination,
  type LogOutput,
  type Logger,
  type MappedEvent,
  type PinholeEvent,
  type Plugin,
  type UnmappedEvent,
} from 'upnpd';
import { DropCounter } from './drops.js';
import { describeMapped, describePinhole, describeUnmapped } from './mapping-log.js';
import { describeTarget, syslogTarget, type LoggingOptions, type SyslogTarget } from './options.js';
import { stdoutDestination } from './stdout.js';
import type { SyslogDestination } from './syslog-destination.js';
import { UdpSyslogDestination } from './syslog-udp.js';
import { UnixSyslogDestination } from './syslog-unix.js';

/**
 * Decides where the daemon's log records go (stdout in some format, syslog) and logs every
 * mapping change. Runs first ('pre'), so that later plugins' provisioning is already logged where
 * configured, and is cleaned up last.
 */
@injectable()
export class LoggingPlugin implements Plugin {
  readonly name = 'logging';
  readonly order = 'pre';
  readonly hooks: Partial<Hooks>;
  private stdout: LogDestination | undefined;
  private syslog: { destination: SyslogDestination; drops: DropCounter; target: SyslogTarget } | undefined;

  constructor(
    /** Already parsed by `loggingOptionsSchema`: the host parses every plugin's options. */
    @inject(PLUGIN_OPTIONS) private readonly options: LoggingOptions,
    @inject(LOG_OUTPUT) private readonly output: LogOutput,
    @inject(LOGGER) private readonly logger: Logger,
    @inject(CLOCK) private readonly clock: Clock,
  ) {
    this.hooks = {
      onMapped: (event) => this.logMapped(event),
      // An expiry is notified to both hooks; onExpire logs it.
      onUnmapped: (event) => (event.reason === 'expired' ? undefined : this.logUnmapped(event)),
      onExpire: (event) => this.logUnmapped(event),
      onPinhole: (event) => this.logPinhole(event),
    };
  }

  async provision(): Promise<void> {
    this.stdout = this.options.stdout === false ? undefined : stdoutDestination(this.output.stream, this.options.stdout);
    if (this.options.syslog) {
      const target = syslogTarget(this.options.syslog);
      const drops = new DropCounter(this.clock, (dropped, reason) =>
        this.logger.warn(
          { syslog: describeTarget(target), dropped, reason },
          `syslog ${describeTarget(target)} is not taking records (${reason}); dropping them until it does (${dropped} so far)`,
        ),
      );
      this.syslog = { destination: this.createSyslog(target, drops), drops, target };
      await this.syslog.destination.start();
    }
    this.output.use([this.stdout, this.syslog?.destination].filter((d): d is LogDestination => d !== undefined));
  }

  /** Syslog closes; the daemon's last words still reach stdout in the configured format (or the default). */
  async cleanup(): Promise<void> {
    if (this.stdout) this.output.use([this.stdout]);
    else this.output.useDefault();
    const syslog = this.syslog;
    this.syslog = undefined;
    if (!syslog) return;
    await syslog.destination.close();
    if (syslog.drops.dropped > 0) {
      this.logger.warn(
        { syslog: describeTarget(syslog.target), dropped: syslog.drops.dropped },
        `syslog ${describeTarget(syslog.target)}: ${syslog.drops.dropped} record(s) were dropped in all`,
      );
    }
  }

  private createSyslog(target: SyslogTarget, drops: DropCounter): SyslogDestination {
    const common = { format: target.format, facility: target.facility, tag: target.tag, pid: process.pid };
    if (target.transport === 'udp') {
      return new UdpSyslogDestination({ ...common, host: target.host, port: target.port, hostname: hostname() }, drops);
    }
    return new UnixSyslogDestination({ ...common, path: target.path }, drops, this.clock);
  }

  private logMapped(event: MappedEvent): void {
    const expiresAt = event.mapping.expiresAt;
    // Notifications run right after the change commits, so this is the lease as granted.
    const leaseSeconds = expiresAt === null ? 0 : Math.max(1, Math.round((expiresAt - this.clock.now()) / 1000));
    const { fields, message } = describeMapped(event, leaseSeconds);
    this.logger.info(fields, message);
  }

  private logPinhole(event: PinholeEvent): void {
    const leaseSeconds = Math.max(1, Math.round((event.pinhole.expiresAt - this.clock.now()) / 1000));
    const { fields, message } = describePinhole(event, leaseSeconds);
    this.logger.info(fields, message);
  }

  private logUnmapped(event: UnmappedEvent): void {
    const { fields, message } = describeUnmapped(event);
    this.logger.info(fields, message);
  }
}
