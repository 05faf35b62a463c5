import { createSocket } from 'node:dgram';
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { LogRecord } from '../../core/logging.js';
import { DropCounter, OUTAGE_QUIET_MS } from '../../plugins/logging/drops.js';
import { UdpSyslogDestination } from '../../plugins/logging/syslog-udp.js';
import { UnixSyslogDestination, type UnixSyslogOptions } from '../../plugins/logging/syslog-unix.js';
import { ManualClock } from '../support/fakes.js';
import { useTempDir } from '../support/temp-dir.js';

/** A record as syslog destinations read it (level, time, text); they never look at the line. */
const record = (msg: string): LogRecord => ({ level: 30, time: Date.now(), msg, errorMessage: undefined, line: '', fields: () => ({}) });

async function waitFor(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** A DropCounter whose warnings the test reads. */
function counter(clock = new ManualClock()) {
  const warnings: Array<{ dropped: number; reason: string }> = [];
  const drops = new DropCounter(clock, (dropped, reason) => warnings.push({ dropped, reason }));
  return { drops, warnings, clock };
}

describe('DropCounter', () => {
  it('warns once per outage, and again after a quiet minute', async () => {
    const { drops, warnings, clock } = counter();
    drops.drop('refused');
    drops.drop('refused');
    await clock.advance(OUTAGE_QUIET_MS - 1);
    drops.drop('refused');
    await Promise.resolve();
    expect(warnings).toEqual([{ dropped: 1, reason: 'refused' }]);
    await clock.advance(OUTAGE_QUIET_MS);
    drops.drop('gone');
    await Promise.resolve();
    expect(warnings).toEqual([
      { dropped: 1, reason: 'refused' },
      { dropped: 4, reason: 'gone' },
    ]);
    expect(drops.dropped).toBe(4);
  });

  it('warns after the drop returns, not inside it (the warning goes through the same logger)', () => {
    const { drops, warnings } = counter();
    drops.drop('refused');
    expect(warnings).toEqual([]);
  });
});

describe('unix datagram syslog through util-linux logger', () => {
  const tmp = useTempDir('upnpd-syslog-');
  const options = (overrides: Partial<UnixSyslogOptions> = {}): UnixSyslogOptions => ({
    path: join(tmp.path, 'log.sock'),
    format: 'rfc3164',
    facility: 'daemon',
    tag: 'upnpd',
    pid: process.pid,
    ...overrides,
  });

  it('refuses to start, with a clear message, when the helper program is missing', async () => {
    const { drops, warnings, clock } = counter();
    const destination = new UnixSyslogDestination(options({ command: join(tmp.path, 'no-such-logger') }), drops, clock);
    await expect(destination.start()).rejects.toThrow(/cannot run ".*no-such-logger" \(util-linux logger, Debian package bsdutils\)/);
    await destination.close();
    await new Promise((resolve) => setImmediate(resolve));
    expect(warnings).toEqual([]);
  });

  it('a helper that dies costs records, counted and warned once, never an exception; it is started again later', async () => {
    const { drops, warnings, clock } = counter();
    const destination = new UnixSyslogDestination(options({ command: 'true' }), drops, clock);
    await destination.start();
    await waitFor(() => drops.dropped === 1);
    expect(() => {
      for (let i = 0; i < 10; i++) destination.write(record(`lost ${i}`));
    }).not.toThrow();
    expect(drops.dropped).toBe(11);
    await clock.advance(5_000);
    destination.write(record('handed to a new helper'));
    expect(drops.dropped).toBe(11);
    await waitFor(() => drops.dropped === 12);
    expect(warnings).toEqual([{ dropped: 1, reason: 'the syslog helper exited (exit code 0)' }]);
    await destination.close();
  });

  it('a helper that stops reading makes records drop instead of queueing without bound, and is killed at close', async () => {
    const stalled = join(tmp.path, 'stalled-logger');
    await writeFile(stalled, '#!/bin/sh\nexec sleep 30\n');
    await chmod(stalled, 0o755);
    const { drops, warnings, clock } = counter();
    const destination = new UnixSyslogDestination(options({ command: stalled }), drops, clock);
    await destination.start();
    for (let i = 0; i < 300; i++) destination.write(record(`${i} ${'x'.repeat(1000)}`));
    expect(drops.dropped).toBeGreaterThan(100);
    await Promise.resolve();
    expect(warnings).toEqual([{ dropped: 1, reason: expect.stringContaining('not keeping up') as unknown }]);
    const started = Date.now();
    await destination.close();
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(() => destination.write(record('after close'))).not.toThrow();
  });
});

describe('UDP syslog', () => {
  it('flush waits for the datagrams in flight; writing after close is a no-op', async () => {
    const receiver = createSocket('udp4');
    const received: string[] = [];
    receiver.on('message', (m) => received.push(m.toString()));
    await new Promise<void>((resolve) => receiver.bind(0, '127.0.0.1', resolve));
    try {
      const { drops } = counter();
      const destination = new UdpSyslogDestination(
        { host: '127.0.0.1', port: receiver.address().port, format: 'rfc5424', facility: 'daemon', tag: 'upnpd', hostname: 'gw', pid: 7 },
        drops,
      );
      await destination.start();
      for (let i = 0; i < 20; i++) destination.write(record(`n${i}`));
      await destination.flush();
      await destination.close();
      await destination.close();
      expect(() => destination.write(record('after close'))).not.toThrow();
      await waitFor(() => received.length === 20);
      expect(received[0]).toMatch(/^<30>1 \S+ gw upnpd 7 - - n0$/);
      expect(drops.dropped).toBe(0);
    } finally {
      await new Promise<void>((resolve) => receiver.close(resolve));
    }
  });
});
