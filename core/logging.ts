import { createRequire } from 'node:module';
import { pino } from 'pino';
import type { InjectionToken } from 'tsyringe';
import type { Logger, LogLevel } from './logger.js';

/** One log record as pino wrote it (the fields of its JSON line). */
export interface LogRecord {
  /** pino's numeric level: trace 10, debug 20, info 30, warn 40, error 50, fatal 60. */
  readonly level: number;
  /** Milliseconds since the epoch. */
  readonly time: number;
  readonly msg?: string;
  /** A logged error, as pino's standard serializer writes it. */
  readonly err?: { readonly type?: string; readonly message?: string; readonly stack?: string };
  readonly [field: string]: unknown;
}

/**
 * Where records go (stdout in some format, syslog, ...). `write` must neither throw nor block:
 * a destination that cannot deliver drops the record.
 */
export interface LogDestination {
  /** `line` is pino's JSON line (newline included); `record` holds its parsed fields. */
  write(record: LogRecord, line: string): void;
  /** Resolves once what was written so far has been handed on (or given up). */
  flush(): Promise<void>;
}

/** Turns a record into the exact text a stream destination writes (newline included). */
export type LogRenderer = (record: LogRecord, line: string) => string;

/**
 * Routes the root logger's records. Created with the root logger, before plugins exist, writing to
 * the default destination; the logging plugin then decides where output goes.
 */
export interface LogOutput {
  /** The stream the daemon's standard output goes to (process.stdout unless a test gave another). */
  readonly stream: NodeJS.WritableStream;
  /** Sends every record to these destinations from now on, instead of the current ones. */
  use(destinations: readonly LogDestination[]): void;
  /** Goes back to the default: JSON on the stream, or readable text when it is a terminal. */
  useDefault(): void;
  flush(): Promise<void>;
  /** Flushes, then stops writing: records logged afterwards are dropped. */
  close(): Promise<void>;
}

export const LOG_OUTPUT: InjectionToken<LogOutput> = Symbol('upnpd.LogOutput');

/** pino's JSON line, as is. */
export const renderJson: LogRenderer = (_record, line) => line;

const require = createRequire(import.meta.url);

/** Readable text (pino-pretty, synchronous), coloured for terminals. */
export function prettyRenderer(options: { colorize: boolean }): LogRenderer {
  // Loaded on first use: only a terminal needs it, and a daemon under a service manager should not carry it.
  const { prettyFactory } = require('pino-pretty') as typeof import('pino-pretty');
  const pretty = prettyFactory({ colorize: options.colorize, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' });
  return (record) => pretty(record);
}

export function isTerminal(stream: NodeJS.WritableStream): boolean {
  return (stream as { isTTY?: boolean }).isTTY === true;
}

/**
 * A destination that writes rendered records to a stream. When the stream fails (EPIPE when the
 * reader of stdout went away) it stops writing instead of letting the error crash the daemon.
 */
export function streamDestination(stream: NodeJS.WritableStream, render: LogRenderer): LogDestination {
  let broken = false;
  stream.on('error', () => {
    broken = true;
  });
  return {
    write(record, line) {
      if (!broken) stream.write(render(record, line));
    },
    flush: () => (broken ? Promise.resolve() : drained(stream)),
  };
}

function drained(stream: NodeJS.WritableStream): Promise<void> {
  if (!(stream as { writableNeedDrain?: boolean }).writableNeedDrain) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      for (const event of ['drain', 'close', 'error']) stream.off(event, done);
      resolve();
    };
    for (const event of ['drain', 'close', 'error']) stream.once(event, done);
  });
}

class RoutedOutput implements LogOutput {
  private readonly defaultDestination: LogDestination;
  private destinations: readonly LogDestination[];
  private closed = false;
  private readonly reportedFailures = new WeakSet<LogDestination>();

  constructor(readonly stream: NodeJS.WritableStream) {
    const render = isTerminal(stream) ? prettyRenderer({ colorize: true }) : renderJson;
    this.defaultDestination = streamDestination(stream, render);
    this.destinations = [this.defaultDestination];
  }

  /** What pino writes to: one JSON line per call. */
  readonly sink = {
    write: (line: string): void => {
      if (this.destinations.length === 0) return;
      const record = JSON.parse(line) as LogRecord;
      for (const destination of this.destinations) this.deliver(destination, record, line);
    },
  };

  use(destinations: readonly LogDestination[]): void {
    if (!this.closed) this.destinations = [...destinations];
  }

  useDefault(): void {
    this.use([this.defaultDestination]);
  }

  async flush(): Promise<void> {
    await Promise.all(this.destinations.map((destination) => destination.flush()));
  }

  async close(): Promise<void> {
    await this.flush();
    this.closed = true;
    this.destinations = [];
  }

  /** A logging call must never fail the code that logs: a destination's bug is reported once, to stderr. */
  private deliver(destination: LogDestination, record: LogRecord, line: string): void {
    try {
      destination.write(record, line);
    } catch (err) {
      if (this.reportedFailures.has(destination)) return;
      this.reportedFailures.add(destination);
      process.emitWarning(`a log destination failed and its records are lost: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
}

/**
 * The daemon's root logger, created before plugins exist. Its level can be changed at run time
 * (`logger.level = 'debug'` on a SIGHUP reload); `output` decides where records go.
 */
export function createRootLogger(options: { level: LogLevel; stream?: NodeJS.WritableStream }): {
  logger: Logger & { level: string };
  output: LogOutput;
} {
  const output = new RoutedOutput(options.stream ?? process.stdout);
  const logger = pino({ level: options.level }, output.sink);
  return { logger, output };
}
