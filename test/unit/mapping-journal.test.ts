import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { toUpnpFault } from '../../core/errors.js';
import { DurableMappingJournal, type WriteFailurePolicy } from '../../core/mapping/journal.js';
import { JOURNAL_FILE, MAPPINGS_FILE, MappingStateFile, type LeaseHolder } from '../../core/mapping/state-file.js';
import { keyString, type MappingRequest } from '../../core/mapping/types.js';
import { ManualClock, RecordingLogger, makeMappings, settle } from '../support/fakes.js';
import { MemoryStateFs, fsError } from '../support/memory-state-fs.js';
import { useTempDir } from '../support/temp-dir.js';
import { APPEND_HANDLE_IDLE_MS } from '../../core/mapping/state-fs.js';

const DIR = '/var/lib/upnpd';
const SNAPSHOT = `${DIR}/${MAPPINGS_FILE}`;
const JOURNAL = `${DIR}/${JOURNAL_FILE}`;
const WALL_NOW = Date.parse('2026-12-06T12:00:00Z');
const client = { address: '192.168.1.10', via: 'upnp-igd:2' };

function request(externalPort: number, overrides: Partial<MappingRequest> = {}): MappingRequest {
  return {
    remoteHost: '',
    externalPort,
    protocol: 'TCP',
    internalClient: '192.168.1.10',
    internalPort: externalPort,
    enabled: true,
    description: `game ${externalPort}`,
    leaseSeconds: 3600,
    ...overrides,
  };
}

/** A MappingService journaling into a MemoryStateFs, as the daemon wires it. */
function persisted(options: { onWriteFailure?: WriteFailurePolicy; compactAfterRecords?: number } = {}) {
  const fs = new MemoryStateFs();
  const logger = new RecordingLogger();
  const clock = new ManualClock();
  const { mappings, backend } = makeMappings({ clock });
  const file = new MappingStateFile(DIR, logger, () => WALL_NOW, fs);
  const journal = new DurableMappingJournal(
    file,
    { mappings: () => mappings.values(), remainingMs: (m) => mappings.leaseLeftMs(m) },
    logger,
    { compactAfterRecords: options.compactAfterRecords ?? 1000, errorLogIntervalMs: 60_000 },
    () => WALL_NOW,
  );
  mappings.persistTo(journal, options.onWriteFailure ?? 'refuse');
  /** What a restart would restore from what is on disk now: key>target, in order. */
  const restart = async () => {
    const loaded = await new MappingStateFile(DIR, logger, () => WALL_NOW, fs).load();
    return loaded.mappings.map((m) => `${keyString(m)}>${m.internalClient}:${m.internalPort}`);
  };
  const table = () => [...mappings.values()].map((m) => `${keyString(m)}>${m.internalClient}:${m.internalPort}`);
  return { fs, logger, clock, mappings, backend, journal, restart, table };
}

const codeOf = (p: Promise<unknown>) =>
  p.then(
    () => 200,
    (err: unknown) => toUpnpFault(err).upnpCode,
  );

describe('the mapping journal', () => {
  it('answers no request of a batch before the batch is appended and fsynced, and writes once for requests that arrive together', async () => {
    const { fs, mappings, restart } = persisted();
    fs.holdAppends = true;
    const answered: number[] = [];
    const adds = [1, 2, 3, 4, 5].map((port) => mappings.add(request(20000 + port), client).then(() => answered.push(port)));
    await settle(20);
    expect(fs.pendingAppends).toBe(1);
    expect(answered).toEqual([]);
    fs.releaseAppends();
    await Promise.all(adds);
    expect(answered).toHaveLength(5);
    expect(fs.calls.filter((c) => c.startsWith('append'))).toEqual([`append ${JOURNAL}`]);
    expect(fs.calls.indexOf(`synced ${JOURNAL}`)).toBeGreaterThan(fs.calls.indexOf(`append ${JOURNAL}`));
    expect(await restart()).toHaveLength(5);
  });

  it('replays to exactly the acknowledged table: adds, replacements, deletions, removals and re-adds, in table order', async () => {
    const { mappings, restart, table } = persisted();
    for (const port of [1, 2, 3, 4]) await mappings.add(request(port), client);
    await mappings.add(request(2, { internalPort: 22 }), client);
    await mappings.delete(request(1), client);
    await Promise.all([mappings.delete(request(3), client), mappings.add(request(3, { internalPort: 33 }), client), mappings.add(request(5), client)]);
    expect(await restart()).toEqual(table());
    expect(table()).toEqual(['TCP/2/>192.168.1.10:22', 'TCP/4/>192.168.1.10:4', 'TCP/3/>192.168.1.10:33', 'TCP/5/>192.168.1.10:5']);
  });

  it('ignores a torn last record (upnpd killed while writing it), saying so, and keeps every earlier one', async () => {
    const { fs, logger, mappings, restart } = persisted();
    await mappings.add(request(1), client);
    await mappings.add(request(2), client);
    fs.files.set(JOURNAL, `${fs.files.get(JOURNAL)}{"t":1,"c":[{"map":{"protocol":"TC`);
    expect(await restart()).toEqual(['TCP/1/>192.168.1.10:1', 'TCP/2/>192.168.1.10:2']);
    expect(logger.messages()).toContainEqual(expect.stringMatching(/mappings\.journal: the last record is incomplete .* ignored/));
  });

  it('compacts after the configured number of records: a new snapshot, an empty journal, the same table after a restart', async () => {
    const { fs, mappings, restart, table } = persisted({ compactAfterRecords: 3 });
    for (const port of [1, 2, 3, 4, 5, 6]) await mappings.add(request(port), client);
    const lines = fs.files.get(JOURNAL)!.split('\n').filter(Boolean);
    expect(lines.length).toBeLessThan(3);
    expect((JSON.parse(fs.files.get(SNAPSHOT)!) as { mappings: unknown[] }).mappings.length).toBeGreaterThanOrEqual(4);
    expect(await restart()).toEqual(table());
  });

  it('compact() writes the table as the snapshot and empties the journal (at shutdown)', async () => {
    const { fs, journal, mappings, restart, table } = persisted();
    await mappings.add(request(1), client);
    await mappings.add(request(2), client);
    await journal.compact();
    expect(fs.files.get(JOURNAL)).toBe('');
    expect(await restart()).toEqual(table());
  });

  it('replaying a journal that a new snapshot already holds changes nothing (a crash between the two writes)', async () => {
    const { fs, journal, mappings, restart, table } = persisted();
    await mappings.add(request(1), client);
    await mappings.delete(request(1), client);
    await mappings.add(request(2), client);
    const journalBefore = fs.files.get(JOURNAL)!;
    await journal.compact();
    fs.files.set(JOURNAL, journalBefore);
    expect(await restart()).toEqual(table());
  });

  it('takes over a mappings.json written by the previous release', async () => {
    const fs = new MemoryStateFs();
    fs.files.set(
      SNAPSHOT,
      JSON.stringify({
        version: 1,
        savedAt: '2026-12-06T11:59:00.000Z',
        mappings: [
          {
            protocol: 'UDP',
            externalPort: 51413,
            remoteHost: '',
            internalClient: '192.168.1.20',
            internalPort: 51413,
            enabled: true,
            description: 'Transmission',
            leaseSeconds: 3600,
            expiresAtWallMs: WALL_NOW + 1_800_000,
            createdBy: { address: '192.168.1.20', via: 'upnp-igd:1' },
          },
        ],
      }),
    );
    const loaded = await new MappingStateFile(DIR, new RecordingLogger(), () => WALL_NOW, fs).load();
    expect(loaded.mappings).toEqual([
      expect.objectContaining({ protocol: 'UDP', externalPort: 51413, internalClient: '192.168.1.20', remainingMs: 1_800_000 }),
    ]);
  });

  it('never restores a lease longer than was left at the write, nor longer than asked, even when the clock at boot is behind', async () => {
    const { fs, mappings } = persisted();
    await mappings.add(request(1, { leaseSeconds: 600 }), client);
    const behind = await new MappingStateFile(DIR, new RecordingLogger(), () => WALL_NOW - 86_400_000, fs).load();
    expect(behind.mappings[0]!.remainingMs).toBe(600_000);
  });
});

describe.each(['ENOSPC', 'EROFS', 'EIO'] as const)('when the state cannot be written (%s)', (code) => {
  it('refuses new mappings with 501 and leaves nothing of them in the firewall; existing ones keep forwarding; removals proceed; it says so', async () => {
    const { fs, logger, mappings, backend, journal, restart } = persisted();
    await mappings.add(request(1), client);
    await mappings.add(request(2), client);
    fs.failWith = code;
    expect(await codeOf(mappings.add(request(3), client))).toBe(501);
    expect(await codeOf(mappings.add(request(4), client))).toBe(501);
    expect([...backend.installed.keys()].sort()).toEqual(['TCP/1/', 'TCP/2/']);
    expect([...mappings.values()].map((m) => m.externalPort)).toEqual([1, 2]);
    // A renewal of an existing mapping (same target) is not new: granted.
    expect(await codeOf(mappings.add(request(1), client))).toBe(200);
    expect(await codeOf(mappings.delete(request(2), client))).toBe(200);
    expect([...backend.installed.keys()]).toEqual(['TCP/1/']);
    expect(journal.persistence.state).toBe('failing');
    expect(journal.persistence.lastError).toContain(code);
    expect(logger.lines.filter((l) => l.level === 'error' && /cannot write the mapping state/.test(l.message))).toHaveLength(1);

    fs.failWith = undefined;
    expect(await codeOf(mappings.add(request(5), client))).toBe(200);
    expect(journal.persistence.state).toBe('ok');
    expect(await restart()).toEqual(['TCP/1/>192.168.1.10:1', 'TCP/5/>192.168.1.10:5']);
  });

  it('logs the failure again after a minute even when the wall clock was set back meanwhile (NTP)', async () => {
    const fs = new MemoryStateFs();
    const logger = new RecordingLogger();
    const clock = new ManualClock();
    const { mappings } = makeMappings({ clock });
    let wallShift = 0;
    const wall = () => WALL_NOW + clock.now() + wallShift;
    const file = new MappingStateFile(DIR, logger, wall, fs);
    const table = { mappings: () => mappings.values(), remainingMs: (m: LeaseHolder) => mappings.leaseLeftMs(m) };
    mappings.persistTo(new DurableMappingJournal(file, table, logger, { compactAfterRecords: 1000, errorLogIntervalMs: 60_000 }, wall, clock), 'refuse');
    const errors = () => logger.lines.filter((l) => l.level === 'error' && /cannot write the mapping state/.test(l.message)).length;
    fs.failWith = code;
    await codeOf(mappings.add(request(1), client));
    expect(errors()).toBe(1);
    // The clock was a day ahead: NTP sets it back. The disk keeps failing (tried every 5 s).
    wallShift = -86_400_000;
    await clock.advance(50_000);
    expect(errors()).toBe(1);
    await clock.advance(20_000);
    expect(errors()).toBe(2);
  });

  it('recovers by itself, without a request, once writes work again', async () => {
    const { fs, clock, mappings, journal, restart } = persisted();
    await mappings.add(request(1), client);
    fs.failWith = code;
    await mappings.delete(request(1), client);
    expect(journal.persistence.state).toBe('failing');
    fs.failWith = undefined;
    await clock.advance(5_000);
    await settle(20);
    expect(journal.persistence.state).toBe('ok');
    expect(await restart()).toEqual([]);
  });

  it('recovers by itself, without a request, when it could not write at start either', async () => {
    const fs = new MemoryStateFs();
    const logger = new RecordingLogger();
    const clock = new ManualClock();
    const { mappings } = makeMappings({ clock });
    const file = new MappingStateFile(DIR, logger, () => WALL_NOW, fs);
    const table = { mappings: () => mappings.values(), remainingMs: (m: LeaseHolder) => mappings.leaseLeftMs(m) };
    const journal = new DurableMappingJournal(file, table, logger, { compactAfterRecords: 1000, errorLogIntervalMs: 60_000 }, () => WALL_NOW, clock);
    await mappings.restore([{ ...request(1), remainingMs: 600_000, createdBy: client }]);
    journal.startedUnavailable(fsError(code, SNAPSHOT));
    mappings.persistTo(journal, 'refuse');
    expect(journal.persistence.state).toBe('unavailable');
    expect(journal.persistence.lastError, 'the code is not said twice').toBe(`${code}: injected, ${SNAPSHOT}`);
    await clock.advance(5_000);
    await settle(20);
    expect(journal.persistence.state).toBe('ok');
    expect((await new MappingStateFile(DIR, logger, () => WALL_NOW, fs).load()).mappings.map((m) => m.externalPort)).toEqual([1]);
  });

  it("with onWriteFailure 'best-effort', grants new mappings in memory and writes them once it can", async () => {
    const { fs, clock, mappings, journal, restart } = persisted({ onWriteFailure: 'best-effort' });
    fs.failWith = code;
    expect(await codeOf(mappings.add(request(7), client))).toBe(200);
    expect(journal.persistence.state).toBe('failing');
    fs.failWith = undefined;
    await clock.advance(5_000);
    await settle(20);
    expect(await restart()).toEqual(['TCP/7/>192.168.1.10:7']);
  });
});

describe('when the state directory is removed while upnpd runs', () => {
  const temp = useTempDir('upnpd-journal-');

  it('writes the state whole into the directory made again: what is answered survives a restart, and new mappings are not refused', async () => {
    const dir = join(temp.path, 'state');
    const logger = new RecordingLogger();
    const { mappings } = makeMappings({ clock: new ManualClock() });
    const file = new MappingStateFile(dir, logger);
    await file.prepare();
    const table = { mappings: () => mappings.values(), remainingMs: (m: LeaseHolder) => mappings.leaseLeftMs(m) };
    const journal = new DurableMappingJournal(file, table, logger);
    mappings.persistTo(journal, 'refuse');
    const restart = async () => (await new MappingStateFile(dir, logger).load()).mappings.map((m) => m.externalPort);
    try {
      await mappings.add(request(1), client);
      rmSync(dir, { recursive: true });
      // Right after: the journal is still open (appends keep coming).
      expect(await codeOf(mappings.add(request(2), client))).toBe(200);
      expect(await restart()).toEqual([1, 2]);
      rmSync(dir, { recursive: true });
      // Later: the journal was closed meanwhile.
      await new Promise((resolve) => setTimeout(resolve, APPEND_HANDLE_IDLE_MS + 200));
      expect(await codeOf(mappings.add(request(3), client))).toBe(200);
      expect(existsSync(dir)).toBe(true);
      expect(await restart()).toEqual([1, 2, 3]);
      expect(journal.persistence.state).toBe('ok');
    } finally {
      await file.close();
    }
  });
});

describe('when the wall clock steps while upnpd runs (NTP on a gateway without a real-time clock)', () => {
  it('writes the leases again with their new wall-clock ends, so a crash after the step does not drop them as ended', async () => {
    const fs = new MemoryStateFs();
    const logger = new RecordingLogger();
    const clock = new ManualClock();
    const { mappings } = makeMappings({ clock });
    // Booted with the clock at 1970; NTP sets it right later on.
    let wallShift = -WALL_NOW;
    const wall = () => WALL_NOW + clock.now() + wallShift;
    const file = new MappingStateFile(DIR, logger, wall, fs);
    const table = { mappings: () => mappings.values(), remainingMs: (m: LeaseHolder) => mappings.leaseLeftMs(m) };
    mappings.persistTo(new DurableMappingJournal(file, table, logger, { compactAfterRecords: 1000, errorLogIntervalMs: 60_000 }, wall, clock), 'refuse');
    mappings.watchWallClock();
    try {
      await mappings.add(request(1), client);
      await clock.advance(60_000);
      wallShift = 0;
      // No change comes after the step; then the power goes.
      await clock.advance(60_000);
      const loaded = await new MappingStateFile(DIR, logger, wall, fs).load();
      expect(loaded.mappings.map((m) => [m.externalPort, m.remainingMs])).toEqual([[1, 3_600_000 - 120_000]]);
      expect(logger.messages()).toContainEqual(expect.stringMatching(/wall clock .*moved/));
    } finally {
      await mappings.close();
    }
  });
});
