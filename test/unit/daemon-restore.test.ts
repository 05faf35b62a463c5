import 'reflect-metadata';
import { mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configSchema, type ResolvedConfig } from '../../core/config/schema.js';
import { startDaemon } from '../../app/compose.js';
import { silentLogger } from '../../core/logger.js';
import { createRootLogger } from '../../core/logging.js';
import { MappingStateFile } from '../../core/mapping/state-file.js';
import type { PortMapping } from '../../core/mapping/types.js';
import { defineBackend } from '../../core/plugins/define.js';
import { RecordingBackend, RecordingLogger } from '../support/fakes.js';
import { readSavedState } from '../support/saved-state.js';
import { useTempDir } from '../support/temp-dir.js';

/** A backend that refuses any change set holding external port 20001 (as a firewall might refuse one rule). */
function refusingPort20001(): RecordingBackend {
  const backend = new RecordingBackend();
  backend.failWhen = (changes) => changes.add.some((r) => r.externalPort === 20001);
  return backend;
}

function savedMapping(externalPort: number): PortMapping {
  return {
    remoteHost: '',
    externalPort,
    protocol: 'TCP',
    internalClient: '127.0.0.1',
    internalPort: externalPort,
    enabled: true,
    description: 'kept',
    leaseSeconds: 3600,
    expiresAt: 0,
    createdBy: { address: '127.0.0.1', via: 'upnp-igd:2' },
  };
}

describe('Daemon start with a state directory', () => {
  const temp = useTempDir('upnpd-state-');

  it('starts when the firewall refuses some saved mappings: restores the rest and keeps the file as it was read', async () => {
    const stateDir = temp.path;
    await new MappingStateFile(stateDir, silentLogger).save([20000, 20001, 20002].map(savedMapping), () => 3_600_000);
    const original = readFileSync(join(stateDir, 'mappings.json'), 'utf8');
    const backend = refusingPort20001();
    const refusing = defineBackend({ name: 'refusing', create: () => backend });
    const config: ResolvedConfig = {
      ...configSchema.parse({ lan: ['lo'], externalIp: '203.0.113.1', stateDir }),
      source: 'test',
      lanFromCommandLine: true,
      plugins: [refusing()],
    };
    const logger = new RecordingLogger();
    // The logging plugin writes to the root logger's output; this test reads the logger instead.
    const { output } = createRootLogger({ level: 'silent' });
    const daemon = await startDaemon(config, { logger, logOutput: output });
    try {
      expect([...daemon.mappings.values()].map((m) => m.externalPort).sort()).toEqual([20000, 20002]);
      expect([...backend.installed.values()].map((r) => r.externalPort).sort()).toEqual([20000, 20002]);
      expect(logger.messages()).toContainEqual(expect.stringMatching(/restored 2 mapping\(s\) from .*mappings\.json \(1 refused by the firewall backend\)/));
      const copies = readdirSync(stateDir).filter((name) => name.startsWith('mappings.json.restore-failed-'));
      expect(copies).toHaveLength(1);
      expect(readFileSync(join(stateDir, copies[0]!), 'utf8')).toBe(original);
    } finally {
      await daemon.stop();
    }
    // Saved at shutdown: what was restored, not the refused one.
    const saved = readSavedState(join(stateDir, 'mappings.json'));
    expect(saved.mappings.map((m) => m.externalPort)).toEqual([20000, 20002]);
    // The rules removed at shutdown are not recorded as removals: the next start reinstalls them.
    expect((await new MappingStateFile(stateDir, silentLogger).load()).mappings.map((m) => m.externalPort)).toEqual([20000, 20002]);
    // The SSDP BOOTID is kept there too, so that it increases with each start whatever the clock says.
    expect(readFileSync(join(stateDir, 'boot-id'), 'utf8')).toMatch(/^\d+\n$/);
  });
});

describe('Daemon start with a hostile or broken state directory', () => {
  const temp = useTempDir('upnpd-state-');

  async function start(stateDir: string, httpPort = 0) {
    const config: ResolvedConfig = {
      ...configSchema.parse({ lan: ['lo'], externalIp: '203.0.113.1', stateDir, httpPort }),
      source: 'test',
      lanFromCommandLine: true,
      plugins: [defineBackend({ name: 'memory', create: () => new RecordingBackend() })()],
    };
    const logger = new RecordingLogger();
    const { output } = createRootLogger({ level: 'silent' });
    return { daemon: await startDaemon(config, { logger, logOutput: output }), logger };
  }

  function stored(overrides: Record<string, unknown>): Record<string, unknown> {
    return {
      protocol: 'TCP',
      externalPort: 20000,
      remoteHost: '',
      internalClient: '127.0.0.1',
      internalPort: 20000,
      enabled: true,
      description: 'kept',
      leaseSeconds: 3600,
      expiresAtWallMs: Date.now() + 3_600_000,
      createdBy: { address: '127.0.0.1', via: 'upnp-igd:2' },
      ...overrides,
    };
  }

  it('restores nothing a live request could not get: the daemon’s own HTTP port, port 0, a bad address or protocol, an oversized description', async () => {
    const httpPort = await freePort();
    const hostile = [
      stored({ externalPort: 8080, internalPort: httpPort, description: 'expose the control URL' }),
      stored({ externalPort: 0 }),
      stored({ externalPort: 20001, internalPort: 70000 }),
      stored({ externalPort: 20002, internalClient: '999.1.1.1' }),
      stored({ externalPort: 20003, protocol: 'SCTP' }),
      stored({ externalPort: 20004, description: 'x'.repeat(16 * 1024 + 1) }),
      stored({ externalPort: 20005 }),
    ];
    writeFileSync(join(temp.path, 'mappings.json'), JSON.stringify({ version: 1, savedAt: new Date().toISOString(), mappings: hostile }));
    const { daemon } = await start(temp.path, httpPort);
    try {
      expect([...daemon.mappings.values()].map((m) => m.externalPort)).toEqual([20005]);
      // A live request for the same target is refused too.
      await expect(
        daemon.mappings.add(
          {
            remoteHost: '',
            externalPort: 8081,
            protocol: 'TCP',
            internalClient: '127.0.0.1',
            internalPort: httpPort,
            enabled: true,
            description: '',
            leaseSeconds: 60,
          },
          { address: '127.0.0.1', via: 'upnp-igd:2' },
        ),
      ).rejects.toThrow(/own HTTP endpoint/);
    } finally {
      await daemon.stop();
    }
  });

  it('starts when mappings.json cannot be read: sets it aside, says so, and keeps persisting', async () => {
    // A directory where the file should be: reading it fails (EISDIR), as an unreadable file would.
    mkdirSync(join(temp.path, 'mappings.json'));
    const { daemon, logger } = await start(temp.path);
    try {
      expect(daemon.mappings.size).toBe(0);
      expect(logger.messages()).toContainEqual(expect.stringMatching(/mappings\.json cannot be read .*moved it to .*mappings\.json\.unreadable-/));
      expect(readdirSync(temp.path).filter((n) => n.startsWith('mappings.json.unreadable-'))).toHaveLength(1);
      expect(daemon.persistence.state).toBe('ok');
    } finally {
      await daemon.stop();
    }
  });

  it('when the state cannot be written at start, refuses new mappings as it does after a write failed while running, and persists again once it can', async () => {
    writeFileSync(join(temp.path, 'mappings.json'), JSON.stringify({ version: 1, savedAt: new Date().toISOString(), mappings: [stored({})] }));
    // Where the snapshot's temporary file goes, a directory: the write at start fails (EISDIR), as on a full disk.
    const blocker = join(temp.path, `mappings.json.tmp-${process.pid}`);
    mkdirSync(blocker);
    const { daemon, logger } = await start(temp.path);
    const add = (externalPort: number) =>
      daemon.mappings.add(
        {
          remoteHost: '',
          externalPort,
          protocol: 'UDP',
          internalClient: '127.0.0.1',
          internalPort: externalPort,
          enabled: true,
          description: '',
          leaseSeconds: 60,
        },
        { address: '127.0.0.1', via: 'upnp-igd:2' },
      );
    try {
      expect([...daemon.mappings.values()].map((m) => m.externalPort)).toEqual([20000]);
      expect(daemon.persistence.state).toBe('unavailable');
      expect(daemon.persistence.lastError).toMatch(/^EISDIR/);
      expect(logger.messages()).toContainEqual(expect.stringMatching(/cannot write the mapping state .*new mappings are refused/));
      // Answered with success, it would be gone after a restart: refused (501), as while running.
      await expect(add(20010)).rejects.toMatchObject({ upnpCode: 501 });
      expect(daemon.mappings.get({ remoteHost: '', externalPort: 20010, protocol: 'UDP' })).toBeUndefined();
      rmdirSync(blocker);
      await add(20011);
      expect(daemon.persistence.state).toBe('ok');
      const restored = await new MappingStateFile(temp.path, silentLogger).load();
      expect(restored.mappings.map((m) => m.externalPort)).toEqual([20000, 20011]);
    } finally {
      await daemon.stop();
    }
  });

  it('takes over the previous release’s mappings.json and journals from then on; reports persistence', async () => {
    writeFileSync(join(temp.path, 'mappings.json'), JSON.stringify({ version: 1, savedAt: new Date().toISOString(), mappings: [stored({})] }));
    const { daemon } = await start(temp.path);
    try {
      expect([...daemon.mappings.values()].map((m) => m.externalPort)).toEqual([20000]);
      expect(daemon.persistence).toMatchObject({ state: 'ok', directory: temp.path });
      await daemon.mappings.add(
        {
          remoteHost: '',
          externalPort: 20010,
          protocol: 'UDP',
          internalClient: '127.0.0.1',
          internalPort: 20010,
          enabled: true,
          description: '',
          leaseSeconds: 60,
        },
        { address: '127.0.0.1', via: 'upnp-igd:2' },
      );
      // On disk before the add was answered.
      expect(readFileSync(join(temp.path, 'mappings.journal'), 'utf8')).toMatch(/"externalPort":20010/);
    } finally {
      await daemon.stop();
    }
  });
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
