import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { UpnpError, UpnpErrorCode } from '../../core/errors.js';
import { silentLogger } from '../../core/logger.js';
import { MappingStateFile, type RestoredMapping } from '../../core/mapping/state-file.js';
import type { MappedEvent, Plugin } from '../../core/plugins/types.js';
import type { Pinhole } from '../../core/mapping/pinhole.js';
import type { PortMapping } from '../../core/mapping/types.js';
import { DEFAULT_LEASE, RecordingLogger, makeMappings, settle } from '../support/fakes.js';
import { readSavedState } from '../support/saved-state.js';
import { useTempDir } from '../support/temp-dir.js';

const WALL_NOW = Date.parse('2026-11-24T12:00:00Z');
const HOUR_MS = 3_600_000;
const client = { address: '192.168.1.10', via: 'upnp-igd:2' };

function mapping(externalPort: number, expiresAt: number | null, overrides: Partial<PortMapping> = {}): PortMapping {
  return {
    remoteHost: '',
    externalPort,
    protocol: 'TCP',
    internalClient: '192.168.1.10',
    internalPort: externalPort,
    enabled: true,
    description: `game ${externalPort}`,
    leaseSeconds: 3600,
    expiresAt,
    createdBy: client,
    ...overrides,
  };
}

function restored(externalPort: number, remainingMs: number | null, overrides: Partial<RestoredMapping> = {}): RestoredMapping {
  const { expiresAt: _unused, ...request } = mapping(externalPort, null);
  return { ...request, remainingMs, ...overrides };
}

describe('MappingStateFile', () => {
  const temp = useTempDir('upnpd-state-');
  /** Not there yet: prepare creates it. */
  let dir: string;
  beforeEach(() => {
    dir = join(temp.path, 'state');
  });

  it('creates its directory for root alone, and reads a missing file as no mappings', async () => {
    const file = new MappingStateFile(dir, silentLogger, () => WALL_NOW);
    await file.prepare();
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(await file.load()).toEqual({ mappings: [], pinholes: [], lastPinholeId: 0, expired: 0, invalid: 0, state: 'none' });
  });

  it('keeps each lease as the wall-clock time it ends, and gives back the time left when read later', async () => {
    let wall = WALL_NOW;
    const file = new MappingStateFile(dir, silentLogger, () => wall);
    await file.prepare();
    const monotonicNow = 5_000;
    const leaseLeft = (m: { readonly expiresAt: number | null }) => (m.expiresAt === null ? null : m.expiresAt - monotonicNow);
    await file.save([mapping(8080, monotonicNow + HOUR_MS), mapping(9000, null, { protocol: 'UDP', remoteHost: '203.0.113.7' })], leaseLeft);
    expect(statSync(file.path).mode & 0o777).toBe(0o600);

    wall += 10 * 60_000; // upnpd was down for ten minutes
    const loaded = await file.load();
    expect(loaded).toEqual({
      mappings: [restored(8080, 50 * 60_000), restored(9000, null, { protocol: 'UDP', remoteHost: '203.0.113.7' })],
      pinholes: [],
      lastPinholeId: 0,
      expired: 0,
      invalid: 0,
      state: 'intact',
    });
  });

  it('drops leases that ended while upnpd was stopped', async () => {
    let wall = WALL_NOW;
    const file = new MappingStateFile(dir, silentLogger, () => wall);
    await file.prepare();
    await file.save([mapping(1, 60_000), mapping(2, 2 * HOUR_MS), mapping(3, null)], (m) => m.expiresAt);
    wall += HOUR_MS;
    const loaded = await file.load();
    expect(loaded.mappings.map((m) => m.externalPort)).toEqual([2, 3]);
    expect(loaded.expired).toBe(1);
  });

  it('skips entries that are not valid mappings, naming each, and keeps the rest', async () => {
    const logger = new RecordingLogger();
    const file = new MappingStateFile(dir, logger, () => WALL_NOW);
    await file.prepare();
    await file.save([mapping(8080, null)], () => null);
    const state = readSavedState(file.path);
    const saved = state.mappings[0]!;
    writeFileSync(
      file.path,
      JSON.stringify({ ...state, mappings: [...state.mappings, { ...saved, externalPort: 70000 }, { ...saved, internalClient: 'evil; rm -rf /' }, 'junk'] }),
    );
    const loaded = await file.load();
    expect(loaded.mappings.map((m) => m.externalPort)).toEqual([8080]);
    expect(loaded.invalid).toBe(3);
    expect(logger.lines.filter((l) => l.level === 'warn').map((l) => l.message)).toEqual([
      expect.stringMatching(/mappings\.json: mappings\[1\] skipped: .*externalPort/),
      expect.stringMatching(/mappings\[2\] skipped: .*internalClient/),
      expect.stringMatching(/mappings\[3\] skipped/),
    ]);
  });

  it('sets aside a file it cannot parse, says where, and starts empty', async () => {
    const logger = new RecordingLogger();
    const file = new MappingStateFile(dir, logger, () => WALL_NOW);
    await file.prepare();
    writeFileSync(file.path, '{"version": 1, "mappings": [');
    expect(await file.load()).toEqual({ mappings: [], pinholes: [], lastPinholeId: 0, expired: 0, invalid: 0, state: 'lost' });
    expect(readdirSync(dir)).toEqual(['mappings.json.unreadable-2026-11-24T12-00-00-000Z']);
    expect(logger.lines).toEqual([
      { level: 'error', message: expect.stringMatching(/mappings\.json is not a mappings file upnpd can read .*moved it to .*unreadable-2026/) as unknown },
    ]);
  });

  it('keeps a copy of the file as it was read, named for why (after a restore the backend refused in part)', async () => {
    const file = new MappingStateFile(dir, silentLogger, () => WALL_NOW);
    await file.prepare();
    await file.save([mapping(8080, null)], () => null);
    const copy = await file.keepCopy('restore-failed');
    expect(copy).toBe(`${file.path}.restore-failed-2026-11-24T12-00-00-000Z`);
    expect(readFileSync(copy, 'utf8')).toBe(readFileSync(file.path, 'utf8'));
  });

  it('sets aside a file of a format version it does not know', async () => {
    const file = new MappingStateFile(dir, new RecordingLogger(), () => WALL_NOW);
    await file.prepare();
    writeFileSync(file.path, JSON.stringify({ version: 2, savedAt: '', mappings: [] }));
    expect((await file.load()).mappings).toEqual([]);
    expect(readdirSync(dir)).toHaveLength(1);
  });
});

describe('MappingStateFile, with a wall clock that is wrong at boot', () => {
  const temp = useTempDir('upnpd-state-');

  it('never gives a lease more time than it had left when saved, nor more than its client asked for', async () => {
    let wall = WALL_NOW;
    const file = new MappingStateFile(temp.path, silentLogger, () => wall);
    // Saved with 30 minutes left of a one-hour lease, and with a stored end far away (a clock that was ahead).
    await file.save([mapping(1, 30 * 60_000)], (m) => m.expiresAt);
    const state = readSavedState(file.path);
    const saved = state.mappings[0]!;
    writeFileSync(
      file.path,
      JSON.stringify({ ...state, mappings: [...state.mappings, { ...saved, externalPort: 2, expiresAtWallMs: WALL_NOW + 30 * 24 * HOUR_MS }] }),
    );

    wall = WALL_NOW - 365 * 24 * HOUR_MS; // booted with the clock a year behind
    const loaded = await file.load();
    expect(loaded.mappings.map((m) => [m.externalPort, m.remainingMs])).toEqual([
      [1, 30 * 60_000],
      [2, HOUR_MS],
    ]);
  });
});

describe('MappingStateFile, pinholes with a wall clock that is wrong at boot', () => {
  const temp = useTempDir('upnpd-state-');
  const pinhole = (id: number, expiresAt: number): Pinhole => ({
    id,
    remoteHost: '',
    remotePort: 0,
    internalClient: '2001:db8::10',
    internalPort: 8000 + id,
    protocol: 'TCP',
    leaseSeconds: 3600,
    expiresAt,
    createdBy: { address: '2001:db8::10', via: 'upnp-igd:2' },
  });

  it('never gives a pinhole more time than it had left when written, in the snapshot or the journal', async () => {
    let wall = WALL_NOW;
    const file = new MappingStateFile(temp.path, silentLogger, () => wall);
    const left = (p: { readonly expiresAt: number | null }) => p.expiresAt;
    // 30 minutes left of one-hour leases: one in the snapshot, one in a journal line.
    await file.save([], left, [pinhole(1, 30 * 60_000)]);
    await file.append({ mapped: [], unmapped: [], pinholes: [pinhole(2, 30 * 60_000)] }, left);

    wall = WALL_NOW - 365 * 24 * HOUR_MS; // booted with the clock a year behind
    const loaded = await file.load();
    expect(loaded.pinholes.map((p) => [p.id, p.remainingMs])).toEqual([
      [1, 30 * 60_000],
      [2, 30 * 60_000],
    ]);
  });
});

describe('MappingService.restore', () => {
  it('reinstalls the mappings in one transaction, with the lease time they had left', async () => {
    const { mappings, backend, clock } = makeMappings();
    const outcome = await mappings.restore([restored(1, 30 * 60_000), restored(2, null), restored(3, 5_000)]);
    expect(outcome).toEqual({ restored: 3, refused: 0, failed: 0 });
    expect(backend.applied).toHaveLength(1);
    expect(backend.applied[0]!.add.map((r) => r.externalPort)).toEqual([1, 2, 3]);
    expect([...mappings.values()].map((m) => mappings.remainingSeconds(m))).toEqual([1800, 0, 5]);
    await clock.advance(5_000);
    await settle();
    expect([...mappings.values()].map((m) => m.externalPort)).toEqual([1, 2]);
  });

  it('cuts a restored lease to the lease policy’s maximum, and gives a permanent one the default where permanent leases are off', async () => {
    const { mappings } = makeMappings({ lease: { ...DEFAULT_LEASE, maxSeconds: 600, allowPermanent: false, defaultSeconds: 120 } });
    await mappings.restore([restored(1, 24 * HOUR_MS), restored(2, null)]);
    expect([...mappings.values()].map((m) => mappings.remainingSeconds(m))).toEqual([600, 120]);
  });

  it('asks the policies again, as the mapping’s creator, and drops what they now refuse', async () => {
    const asked: string[] = [];
    const noLowPorts: Plugin = {
      name: 'no-low-ports',
      hooks: {
        beforeMap: (request, context) => {
          asked.push(`${request.externalPort} by ${context.requester.address}`);
          if (request.externalPort < 1024) throw new UpnpError(UpnpErrorCode.NotAuthorized, 'ports below 1024 are not mapped');
          return request;
        },
      },
    };
    const { mappings, backend } = makeMappings({ plugins: [noLowPorts] });
    expect(await mappings.restore([restored(80, null), restored(8080, null)])).toEqual({ restored: 1, refused: 1, failed: 0 });
    expect(asked).toEqual(['80 by 192.168.1.10', '8080 by 192.168.1.10']);
    expect(backend.applied[0]!.add.map((r) => r.externalPort)).toEqual([8080]);
  });

  it('settled waits for the changes already queued, so the last save at shutdown holds them', async () => {
    const { mappings } = makeMappings();
    const requests = [1, 2, 3].map((port) => mappings.add({ ...restored(port, null), leaseSeconds: 60 }, client));
    await mappings.settled();
    expect(mappings.size).toBe(3);
    await Promise.all(requests);
  });

  it('tells the plugins each mapping was restored', async () => {
    const events: MappedEvent[] = [];
    const { mappings } = makeMappings({ plugins: [{ name: 'watch', hooks: { onMapped: (e) => void events.push(e) } }] });
    await mappings.restore([restored(8080, null)]);
    await settle();
    expect(events).toEqual([
      expect.objectContaining({ restored: true, previous: undefined, requester: client, mapping: expect.objectContaining({ externalPort: 8080 }) as unknown }),
    ]);
  });

  it('when the backend refuses the whole, restores each mapping on its own and counts those it still refuses', async () => {
    const { mappings, backend } = makeMappings();
    // The backend refuses any change set that holds port 2: the combined one, then port 2's own.
    backend.failWhen = (changes) => changes.add.some((r) => r.externalPort === 2);
    expect(await mappings.restore([restored(1, null), restored(2, null), restored(3, null)])).toEqual({ restored: 2, refused: 0, failed: 1 });
    expect([...mappings.values()].map((m) => m.externalPort).sort()).toEqual([1, 3]);
    expect([...backend.installed.values()].map((r) => r.externalPort).sort()).toEqual([1, 3]);
  });

  it('drops a mapping whose policy check throws an error that is not a UPnP refusal, and restores the rest', async () => {
    const broken: Plugin = {
      name: 'broken-policy',
      hooks: {
        beforeMap: (request) => {
          if (request.externalPort === 2) throw new TypeError('cannot read properties of undefined');
          return request;
        },
      },
    };
    const { mappings } = makeMappings({ plugins: [broken] });
    expect(await mappings.restore([restored(1, null), restored(2, null)])).toEqual({ restored: 1, refused: 1, failed: 0 });
  });
});
