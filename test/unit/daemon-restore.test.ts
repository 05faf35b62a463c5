import 'reflect-metadata';
import { readdirSync, readFileSync } from 'node:fs';
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
    // The SSDP BOOTID is kept there too, so that it increases with each start whatever the clock says.
    expect(readFileSync(join(stateDir, 'boot-id'), 'utf8')).toMatch(/^\d+\n$/);
  });
});
