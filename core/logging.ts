import { createRequire } from 'node:module';
import { pino } from 'pino';
import type * as PinoPretty from 'pino-pretty';
import type { InjectionToken } from 'tsyringe';
import type { Logger, LogLevel } from './logger.js';

/**
 * One record, as a destination sees it: what pino told us about it (level, time, message) and
 * the JSON line it wrote. Built without parsing the line; `fields()` parses it, when asked.
 */
export interface LogRecord {
  /** pino's numeric level: trace 10, debug 20, info 30, warn 40, error 50, fatal 60. */
  readonly level: number;
  /** Milliseconds since the epoch. */
  readonly time: number;
  readonly msg: string | undefined;
  /** The logged error's message (`err`, causes included, as the line has it); undefined when none. */
  readonly errorMessage: string | undefined;
  /** pino's JSON line, newline included: what JSON output writes as is. */
  readonly line: string;
  /** Every field of the line, child-logger bindings included (parses the line on first call). */
  fields(): Readonly<Record<string, unknown>>;
}

/**
 * Where records go (stdout in some format, syslog, ...). `write` must neither throw nor block:
 * a destination that cannot deliver drops the record.
 */
export interface LogDestination {
  write(record: LogRecord): void;
  /** Resolves once what was written so far has been handed on (or given up). */
  flush(): Promise<void>;
}

/** Turns a record into the exact text a stream destination writes (newline included). */
export type LogRenderer = (record: LogRecord) => string;

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
export const renderJson: LogRenderer = (record) => record.line;

const require = createRequire(import.meta.url);

/** Readable text (pino-pretty, synchronous), coloured for terminals. */
export function prettyRenderer(options: { colorize: boolean }): LogRenderer {
  // Loaded on first use: only a terminal needs it, and a daemon under a service manager should not carry it.
  const { prettyFactory } = require('pino-pretty') as typeof PinoPretty;
  const pretty = prettyFactory({ colorize: options.colorize, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' });
  // It parses the line itself.
  return (record) => pretty(record.line);
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
    write(record) {
      if (!broken) stream.write(render(record));
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

/** pino's `Symbol.for('pino.metadata')` (lib/symbols.js), the flag pino.multistream sets too. */
const PINO_METADATA: unique symbol = Symbol.for('pino.metadata');

/**
 * The stream pino writes to. With the metadata flag set, pino's `write` (lib/proto.js) stores the
 * record's level, message, merge object and time here just before it writes the line, so routing
 * reads them instead of parsing the line. They describe the line being written only during
 * `write`: the next logging call (a destination may log) overwrites them.
 */
class PinoSink {
  readonly [PINO_METADATA] = true;
  /** The numeric level. */
  lastLevel = 0;
  /** The message after formatting, or undefined when the call gave none. */
  lastMsg: unknown = undefined;
  /** The object the call logged (raw: an `err` is still the Error); child bindings are not in it. */
  lastObj: unknown = undefined;
  /** The digits of the line's "time" field. */
  lastTime = '';
  /** The (child) logger that wrote. Unused; declared so that pino's assignment keeps this shape. */
  lastLogger: unknown = undefined;

  constructor(private readonly onLine: (sink: PinoSink, line: string) => void) {}

  write(line: string): void {
    this.onLine(this, line);
  }
}

class PinoRecord implements LogRecord {
  readonly level: number;
  readonly time: number;
  readonly msg: string | undefined;
  private readonly hasError: boolean;
  private parsed: Readonly<Record<string, unknown>> | undefined;

  constructor(
    sink: PinoSink,
    readonly line: string,
  ) {
    const obj = sink.lastObj as { readonly msg?: unknown; readonly err?: unknown } | undefined;
    this.level = sink.lastLevel;
    this.time = Number(sink.lastTime);
    // pino writes the call's message after the object's own `msg`; JSON readers take the last one.
    const msg = sink.lastMsg !== undefined ? sink.lastMsg : obj?.msg;
    this.msg = typeof msg === 'string' ? msg : undefined;
    // pino writes an `err` field unless it is undefined.
    this.hasError = obj?.err !== undefined;
  }

  /** Read from the line, as pino's error serializer wrote it: records with an error are few. */
  get errorMessage(): string | undefined {
    if (!this.hasError) return undefined;
    const err = this.fields().err as { readonly message?: unknown } | null | undefined;
    return typeof err?.message === 'string' ? err.message : undefined;
  }

  fields(): Readonly<Record<string, unknown>> {
    return (this.parsed ??= JSON.parse(this.line) as Record<string, unknown>);
  }
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
  readonly sink = new PinoSink((sink, line) => {
    if (this.destinations.length === 0) return;
    const record = new PinoRecord(sink, line);
    for (const destination of this.destinations) this.deliver(destination, record);
  });

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
  private deliver(destination: LogDestination, record: LogRecord): void {
    try {
      destination.write(record);
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
