import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { Logger } from '../../core/logger.js';
import { createRootLogger } from '../../core/logging.js';
import { priority, severityOf, type FacilityName } from '../../plugins/logging/priority.js';
import { chooseStdoutFormat, stdoutDestination } from '../../plugins/logging/stdout.js';
import { bsdTimestamp, formatRfc3164, formatRfc5424, type SyslogMessage } from '../../plugins/logging/syslog-format.js';
import { messageText, truncateUtf8 } from '../../plugins/logging/text.js';

const TEXT = 'AddPortMap: Proto:UDP ExtPort:57875 Int:192.168.1.118:57875 RemoteHost:(any) Lease:3600 by 192.168.1.118 via upnp-igd:2';

const message: SyslogMessage = {
  facility: 'daemon',
  severity: 6,
  time: new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 678)),
  hostname: 'gw.example.net',
  tag: 'upnpd',
  pid: 4242,
  text: TEXT,
};

describe('syslog priority', () => {
  it.each<[FacilityName, number, number]>([
    ['daemon', 6, 30],
    ['daemon', 2, 26],
    ['user', 7, 15],
    ['local0', 4, 132],
    ['local3', 4, 156],
    ['local7', 3, 187],
  ])('%s with severity %i is PRI %i (facility * 8 + severity)', (facility, severity, pri) => {
    expect(priority(facility, severity as never)).toBe(pri);
  });

  it.each([
    [60, 2],
    [50, 3],
    [40, 4],
    [30, 6],
    [20, 7],
    [10, 7],
  ])('pino level %i is severity %i', (level, severity) => {
    expect(severityOf(level)).toBe(severity);
  });
});

describe('RFC 5424', () => {
  it('formats header and message', () => {
    expect(formatRfc5424(message)).toBe(`<30>1 2024-01-02T03:04:05.678Z gw.example.net upnpd 4242 - - ${TEXT}`);
  });

  it('writes "-" for an unknown host name and replaces what a header field may not contain', () => {
    expect(formatRfc5424({ ...message, hostname: '', facility: 'local3', severity: 4 })).toBe(`<156>1 2024-01-02T03:04:05.678Z - upnpd 4242 - - ${TEXT}`);
    expect(formatRfc5424({ ...message, hostname: 'my gw' })).toContain(' my_gw upnpd ');
  });

  it('keeps a datagram within 2048 bytes without splitting a character', () => {
    const formatted = formatRfc5424({ ...message, text: 'é'.repeat(3000) });
    expect(Buffer.byteLength(formatted)).toBeLessThanOrEqual(2048);
    expect(Buffer.byteLength(formatted)).toBeGreaterThan(2040);
    expect(formatted).not.toContain('\uFFFD');
  });
});

describe('RFC 3164', () => {
  // Built from local fields: RFC 3164 timestamps are local time, whatever TZ the test runs in.
  const local = new Date(2024, 0, 2, 3, 4, 5);

  it('formats header and message, with the host name cut at the first dot', () => {
    expect(formatRfc3164({ ...message, time: local })).toBe(`<30>Jan  2 03:04:05 gw upnpd[4242]: ${TEXT}`);
  });

  it('pads the day with a space and the time with zeros', () => {
    expect(bsdTimestamp(new Date(2024, 10, 24, 9, 1, 2))).toBe('Nov 24 09:01:02');
    expect(bsdTimestamp(new Date(2024, 11, 9, 23, 59, 59))).toBe('Dec  9 23:59:59');
  });

  it('keeps a packet within 1024 bytes', () => {
    const formatted = formatRfc3164({ ...message, time: local, facility: 'local7', severity: 3, text: 'x'.repeat(5000) });
    expect(formatted.startsWith('<187>Jan  2 03:04:05 gw upnpd[4242]: xxx')).toBe(true);
    expect(Buffer.byteLength(formatted)).toBe(1024);
  });
});

describe('the text of a record', () => {
  /** The text of the record a logging call makes, as the root logger hands it to destinations. */
  function textOf(log: (logger: Logger) => void): string {
    const { logger, output } = createRootLogger({ level: 'info', stream: new PassThrough() });
    const texts: string[] = [];
    output.use([{ write: (record) => texts.push(messageText(record)), flush: async () => {} }]);
    log(logger);
    expect(texts).toHaveLength(1);
    return texts[0]!;
  }

  it('is the message, with the error message when the message does not say it already', () => {
    expect(textOf((l) => l.error({ err: new Error('iptables-restore: exit 1') }, 'apply failed'))).toBe('apply failed: iptables-restore: exit 1');
    expect(textOf((l) => l.error({ err: new Error('boom') }, 'apply failed: boom'))).toBe('apply failed: boom');
    expect(textOf((l) => l.error({ err: new Error('boom') }))).toBe('boom');
    expect(textOf((l) => l.error(new Error('boom')))).toBe('boom');
    expect(textOf((l) => l.info({ port: 1 }))).toBe('');
  });

  it("says the error's causes, as the JSON line does; a value that is not an error adds nothing", () => {
    const err = new Error('apply failed', { cause: new Error('exit 1') });
    expect(textOf((l) => l.error({ err }, 'rules'))).toBe('rules: apply failed: exit 1');
    expect(textOf((l) => l.error({ err: 'a string' }, 'odd'))).toBe('odd');
    expect(textOf((l) => l.error({ err: null }, 'odd'))).toBe('odd');
  });

  it("is the object's msg when the call gives no message, as in the JSON line", () => {
    expect(textOf((l) => l.info({ msg: 'from the object' }))).toBe('from the object');
    expect(textOf((l) => l.info({ msg: 'from the object' }, 'from the call'))).toBe('from the call');
  });

  it('escapes control characters, so that no one can forge a line', () => {
    expect(textOf((l) => l.info('desc "a\nDeletePortMap: forged"\r\t\x1b[31m\x7f'))).toBe('desc "a\\nDeletePortMap: forged"\\r\\t\\x1b[31m\\x7f');
  });

  it('is cut at a character boundary', () => {
    expect(truncateUtf8('aé€', 10)).toBe('aé€');
    expect(truncateUtf8('aé€', 5)).toBe('aé');
    expect(truncateUtf8('aé€', 2)).toBe('a');
    expect(truncateUtf8('aé€', 0)).toBe('');
  });
});

describe('journald output', () => {
  it('prefixes each line with the severity of its level (sd-daemon(3))', () => {
    const stream = new PassThrough();
    let text = '';
    stream.on('data', (chunk) => (text += chunk));
    const { logger, output } = createRootLogger({ level: 'trace', stream });
    output.use([stdoutDestination(stream, 'journald')]);
    logger.trace('t');
    logger.debug('d');
    logger.info({ port: 1 }, 'i');
    logger.warn('w');
    logger.error({ err: new Error('bad\nthing') }, 'e');
    logger.fatal('f');
    expect(text).toBe('<7>t\n<7>d\n<6>i\n<4>w\n<3>e: bad\\nthing\n<2>f\n');
  });
});

describe("stdout: 'auto'", () => {
  it.each([
    [{ isTerminal: true, journalStream: '8:1234', streamIdentity: '8:1234' }, 'pretty'],
    [{ isTerminal: false, journalStream: '8:1234', streamIdentity: '8:1234' }, 'journald'],
    [{ isTerminal: false, journalStream: '8:1234', streamIdentity: undefined }, 'journald'],
    // Inherited from a parent under systemd, but our stdout was redirected elsewhere.
    [{ isTerminal: false, journalStream: '8:1234', streamIdentity: '8:999' }, 'json'],
    [{ isTerminal: false, journalStream: undefined, streamIdentity: '8:1234' }, 'json'],
    [{ isTerminal: false, journalStream: '', streamIdentity: undefined }, 'json'],
  ] as const)('%o → %s', (facts, format) => {
    expect(chooseStdoutFormat(facts)).toBe(format);
  });
});
