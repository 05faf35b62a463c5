import { startCommand, type Clock, type CommandExit, type LogRecord, type RunningCommand } from 'upnpd';
import type { DropCounter } from './drops.js';
import type { SyslogFormat } from './options.js';
import { priority, severityOf, type FacilityName } from './priority.js';
import { SETTLE_TIMEOUT_MS, settleWithin, type SyslogDestination } from './syslog-destination.js';
import { messageText, truncateUtf8 } from './text.js';

/** Longest message text handed to the helper; its --size is larger, so it never splits a line. */
const MAX_TEXT_BYTES = 2048;
const HELPER_MAX_MESSAGE_BYTES = 4096;
/** Bytes queued for the helper's stdin while it is not reading; beyond this, records are dropped. */
const MAX_QUEUED_BYTES = 64 * 1024;
/** A helper that died is started again at most this often. */
const RESTART_DELAY_MS = 5_000;

export interface UnixSyslogOptions {
  readonly path: string;
  readonly format: SyslogFormat;
  readonly facility: FacilityName;
  readonly tag: string;
  readonly pid: number;
  /** The util-linux `logger` program (tests may name another). */
  readonly command?: string;
}

/** The running `logger`, and how it ended once it has. */
interface Helper {
  readonly command: RunningCommand;
  exit?: CommandExit;
}

/**
 * Syslog to a local unix datagram socket (/dev/log). Node has no unix datagram sockets, and a
 * native addon would need a compiler on the gateway, so records go through one long-lived util-linux
 * `logger` (Essential on Debian) that reads `<PRI>text` lines on stdin and sends each as one
 * datagram. With --socket-errors=off it drops records while the socket is missing and reconnects
 * by itself when syslog comes back (checked with strace: it retries the connect per message).
 *
 * The helper writes the header: for rfc3164 the one syslog(3) writes on a local socket
 * (`<PRI>Mmm dd hh:mm:ss TAG[PID]: `, no host name: rsyslog's imuxsock would take a host name for
 * the tag); for rfc5424 `--rfc5424=notq`. The PRI comes from each line's prefix, the PID is ours.
 *
 * What we count as dropped: records the helper could not take (not running, or not reading).
 * Records the helper itself drops while the socket is gone are not visible to us.
 */
export class UnixSyslogDestination implements SyslogDestination {
  private helper: Helper | undefined;
  private closing = false;
  private nextStartAt = 0;
  private lastHelperError = '';

  constructor(
    private readonly options: UnixSyslogOptions,
    private readonly drops: DropCounter,
    private readonly clock: Pick<Clock, 'now'>,
  ) {}

  /** Starts the helper; throws when it cannot be run at all (util-linux missing). */
  async start(): Promise<void> {
    const helper = this.spawn();
    // A program that cannot be started has no pid, and its exit says why.
    if (helper.command.pid !== undefined) return;
    this.closing = true;
    const exit = await helper.command.exited;
    throw new Error(`syslog: cannot run "${this.command}" (util-linux logger, Debian package bsdutils): ${exit.error ?? 'not started'}`);
  }

  write(record: LogRecord): void {
    if (this.closing) return;
    const helper = this.helper ?? this.restart();
    if (!helper) {
      this.drops.drop(`the syslog helper "${this.command}" is not running${this.lastHelperError ? ` (${this.lastHelperError})` : ''}`);
      return;
    }
    const { stdin } = helper.command;
    if (stdin.writableLength > MAX_QUEUED_BYTES) {
      this.drops.drop(`the syslog helper is not keeping up (${MAX_QUEUED_BYTES} bytes queued)`);
      return;
    }
    const pri = priority(this.options.facility, severityOf(record.level));
    stdin.write(`<${pri}>${truncateUtf8(messageText(record), MAX_TEXT_BYTES)}\n`);
  }

  flush(): Promise<void> {
    const stdin = this.helper?.command.stdin;
    if (!stdin || stdin.writableLength === 0) return Promise.resolve();
    return settleWithin(new Promise((resolve) => stdin.once('drain', resolve)), SETTLE_TIMEOUT_MS);
  }

  /** Ends the helper's input so that it sends what it has read and exits; kills it if it does not. */
  async close(): Promise<void> {
    this.closing = true;
    const helper = this.helper;
    if (!helper) return;
    helper.command.stdin.end();
    await settleWithin(helper.command.exited, SETTLE_TIMEOUT_MS);
    if (!helper.exit) {
      helper.command.kill();
      await settleWithin(helper.command.exited, SETTLE_TIMEOUT_MS);
    }
    this.helper = undefined;
  }

  private get command(): string {
    return this.options.command ?? 'logger';
  }

  private restart(): Helper | undefined {
    if (this.clock.now() < this.nextStartAt) return undefined;
    return this.spawn();
  }

  private spawn(): Helper {
    this.nextStartAt = this.clock.now() + RESTART_DELAY_MS;
    const args = [
      '--socket',
      this.options.path,
      '--socket-errors=off',
      '--prio-prefix',
      '--tag',
      this.options.tag,
      `--id=${this.options.pid}`,
      '--size',
      String(HELPER_MAX_MESSAGE_BYTES),
      ...(this.options.format === 'rfc5424' ? ['--rfc5424=notq'] : []),
    ];
    const helper: Helper = {
      // Its own process group: a Ctrl-C meant for the daemon must not end syslog before the daemon's last words.
      command: startCommand(this.command, args, { detached: true }),
    };
    const { stdin, stderr, exited } = helper.command;
    // A write after the helper died fails with EPIPE; the exit below already accounts for it.
    stdin.on('error', () => {});
    stderr.setEncoding('utf8');
    stderr.on('data', (chunk: string) => {
      this.lastHelperError = chunk.trim().split('\n').at(-1) ?? '';
    });
    void exited.then((exit) => {
      helper.exit = exit;
      if (this.helper === helper) this.helper = undefined;
      if (this.closing) return;
      const how = exit.signal ? `signal ${exit.signal}` : exit.exitCode !== undefined ? `exit code ${exit.exitCode}` : exit.error;
      this.drops.drop(`the syslog helper exited (${how})`);
    });
    this.helper = helper;
    return helper;
  }
}
