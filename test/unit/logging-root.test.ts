import { PassThrough } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it, vi } from 'vitest';
import type { Logger } from '../../core/logger.js';
import { createRootLogger, type LogDestination, type LogRecord } from '../../core/logging.js';

/** A stdout stand-in that remembers what was written. */
function capture(options: { isTTY?: boolean } = {}): PassThrough & { text(): string; isTTY?: boolean } {
  const stream = new PassThrough() as PassThrough & { text(): string; isTTY?: boolean };
  let text = '';
  stream.on('data', (chunk) => (text += chunk));
  stream.text = () => text;
  if (options.isTTY) stream.isTTY = true;
  return stream;
}

function recorder(): LogDestination & { records: LogRecord[] } {
  const records: LogRecord[] = [];
  return { records, write: (record) => void records.push(record), flush: async () => {} };
}

describe('the root logger', () => {
  it('writes JSON lines to a stream that is not a terminal', () => {
    const stream = capture();
    const { logger } = createRootLogger({ level: 'info', stream });
    logger.info({ externalPort: 8080 }, 'hello');
    const [line, ...rest] = stream.text().split('\n').filter(Boolean);
    expect(rest).toEqual([]);
    expect(JSON.parse(line!)).toMatchObject({ level: 30, msg: 'hello', externalPort: 8080, pid: process.pid });
  });

  it('writes readable text to a terminal', () => {
    const stream = capture({ isTTY: true });
    const { logger } = createRootLogger({ level: 'info', stream });
    logger.warn('disk is fine');
    // eslint-disable-next-line no-control-regex -- removes the ANSI colour sequences (ESC [ ... m) a terminal gets
    const text = stream.text().replace(/\x1b\[[0-9;]*m/g, '');
    expect(text).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] WARN: disk is fine\n$/);
  });

  it('changes level at run time', () => {
    const stream = capture();
    const { logger } = createRootLogger({ level: 'info', stream });
    logger.debug('hidden');
    logger.level = 'debug';
    logger.debug('shown');
    logger.level = 'silent';
    logger.error('hidden too');
    expect(
      stream
        .text()
        .split('\n')
        .filter(Boolean)
        .map((l) => (JSON.parse(l) as { msg: string }).msg),
    ).toEqual(['shown']);
  });

  it('routes records to the destinations in use, children included, and back to the default', () => {
    const stream = capture();
    const { logger, output } = createRootLogger({ level: 'info', stream });
    const first = recorder();
    const second = recorder();
    output.use([first, second]);
    const before = Date.now();
    logger.child({ plugin: 'x' }).info({ a: 1 }, 'routed');
    expect(stream.text()).toBe('');
    for (const destination of [first, second]) {
      expect(destination.records).toHaveLength(1);
      const record = destination.records[0]!;
      expect(record).toMatchObject({ level: 30, msg: 'routed', errorMessage: undefined });
      expect(record.time).toBeGreaterThanOrEqual(before);
      expect(record.line.endsWith('\n')).toBe(true);
      expect(record.fields()).toEqual({ ...JSON.parse(record.line), level: 30, time: record.time, msg: 'routed', a: 1, plugin: 'x' });
    }
    output.useDefault();
    logger.info('default again');
    expect((JSON.parse(stream.text()) as { msg: string }).msg).toBe('default again');
    expect(first.records).toHaveLength(1);
  });

  it('serializes a logged error, so that destinations can show its message', () => {
    const { logger, output } = createRootLogger({ level: 'info', stream: capture() });
    const destination = recorder();
    output.use([destination]);
    logger.error({ err: new Error('boom') }, 'it failed');
    expect(destination.records[0]!.errorMessage).toBe('boom');
    expect(destination.records[0]!.fields().err).toMatchObject({ type: 'Error', message: 'boom' });
  });

  it('writes to the stream exactly the lines pino writes', () => {
    const routed = capture();
    const direct = capture();
    const now = vi.spyOn(Date, 'now').mockReturnValue(1_700_000_000_123);
    try {
      const loggers: Logger[] = [createRootLogger({ level: 'debug', stream: routed }).logger, pino({ level: 'debug' }, direct)];
      for (const logger of loggers) {
        const child = logger.child({ plugin: 'x' });
        child.info({ externalPort: 8080, description: 'quote " and \n' }, 'hello %s');
        child.error({ err: new Error('boom', { cause: new Error('cause') }) }, 'failed');
        logger.debug({ msg: 'from the object' });
        logger.warn('é€\u0001');
      }
    } finally {
      now.mockRestore();
    }
    expect(routed.text()).not.toBe('');
    expect(routed.text()).toBe(direct.text());
  });

  it('gives each record its own fields even when a destination logs while writing', () => {
    const { logger, output } = createRootLogger({ level: 'info', stream: capture() });
    const seen: [number, string | undefined][] = [];
    output.use([
      {
        write: (record) => {
          if (record.msg === 'outer') logger.warn('inner');
          seen.push([record.level, record.msg]);
        },
        flush: async () => {},
      },
    ]);
    logger.info('outer');
    expect(seen).toEqual([
      [40, 'inner'],
      [30, 'outer'],
    ]);
  });

  it('drops records after close, and flushes every destination', async () => {
    const { logger, output } = createRootLogger({ level: 'info', stream: capture() });
    let flushed = 0;
    const destination = {
      ...recorder(),
      flush: () => {
        flushed++;
        return Promise.resolve();
      },
    };
    output.use([destination]);
    await output.flush();
    expect(flushed).toBe(1);
    await output.close();
    expect(flushed).toBe(2);
    logger.info('too late');
    output.use([destination]);
    logger.info('still too late');
    expect(destination.records).toEqual([]);
  });

  it('a failing destination does not fail the logging call nor the other destinations, and is reported once', async () => {
    const { logger, output } = createRootLogger({ level: 'info', stream: capture() });
    const good = recorder();
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.message);
    process.on('warning', onWarning);
    try {
      output.use([
        {
          write: () => {
            throw new Error('socket gone');
          },
          flush: async () => {},
        },
        good,
      ]);
      expect(() => {
        logger.info('one');
        logger.info('two');
      }).not.toThrow();
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off('warning', onWarning);
    }
    expect(good.records.map((r) => r.msg)).toEqual(['one', 'two']);
    expect(warnings).toEqual(['a log destination failed and its records are lost: socket gone']);
  });

  it('a stream that fails (reader gone) stops being written instead of crashing the daemon', async () => {
    const stream = capture();
    const { logger, output } = createRootLogger({ level: 'info', stream });
    stream.destroy(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
    await new Promise((resolve) => setImmediate(resolve));
    expect(() => logger.info('nobody reads this')).not.toThrow();
    await expect(output.flush()).resolves.toBeUndefined();
  });
});
