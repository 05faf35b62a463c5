import 'reflect-metadata';
import { describe, expect, it } from 'vitest';
import { startDaemon } from '../../app/compose.js';
import { configSchema, type ResolvedConfig } from '../../core/config/schema.js';
import { toUpnpFault } from '../../core/errors.js';
import { createRootLogger } from '../../core/logging.js';
import type { MappingRequest, Requester } from '../../core/mapping/types.js';
import { defineBackend } from '../../core/plugins/define.js';
import type { AnyPluginSpec } from '../../core/plugins/types.js';
import { permissions } from '../../plugins/permissions/index.js';
import { quota } from '../../plugins/quota/index.js';
import { RecordingBackend, RecordingLogger } from '../support/fakes.js';

/** SIGHUP (Daemon.reload, as app/cli.ts calls it): new policy options apply to new requests; mappings already made stay. */

const CLIENT: Requester = { address: '127.0.0.1', via: 'upnp-igd:2' };
const firewall = new RecordingBackend();
const memory = defineBackend({ name: 'memory', create: () => firewall });

function config(plugins: readonly AnyPluginSpec[], extra: Record<string, unknown> = {}): ResolvedConfig {
  return {
    ...configSchema.parse({ lan: ['lo'], externalIp: '203.0.113.1', logLevel: 'info', ...extra }),
    source: 'test',
    lanFromCommandLine: true,
    plugins,
  };
}

function request(externalPort: number): MappingRequest {
  return {
    remoteHost: '',
    externalPort,
    protocol: 'TCP',
    internalClient: '127.0.0.1',
    internalPort: externalPort,
    enabled: true,
    description: 'app',
    leaseSeconds: 3600,
  };
}

async function codeOf(run: Promise<unknown>): Promise<number> {
  try {
    await run;
    return 0;
  } catch (err) {
    return toUpnpFault(err).upnpCode;
  }
}

describe('reloading the policies on SIGHUP', () => {
  it('applies a new deny rule and a lower quota to new requests; existing mappings stay', async () => {
    const logger = new RecordingLogger();
    const { output } = createRootLogger({ level: 'silent' });
    const daemon = await startDaemon(config([permissions({ rules: [] }), quota({ perClient: 10 }), memory()]), { logger, logOutput: output });
    try {
      for (const port of [7000, 7001, 8000]) await daemon.mappings.add(request(port), CLIENT);

      const needRestart = daemon.reload(config([permissions({ rules: ['deny 7000-7999 0.0.0.0/0 0-65535'] }), quota({ perClient: 2 }), memory()]));

      expect(needRestart).toEqual([]);
      expect([...daemon.mappings.values()].map((m) => m.externalPort)).toEqual([7000, 7001, 8000]);
      expect(await codeOf(daemon.mappings.add(request(7500), CLIENT))).toBe(606);
      expect(await codeOf(daemon.mappings.add(request(9000), CLIENT))).toBe(728);
      // A renewal is a request like any other: the new rule refuses it; the mapping ends with its lease.
      expect(await codeOf(daemon.mappings.add(request(7000), CLIENT))).toBe(606);
      expect(await codeOf(daemon.mappings.add(request(8000), CLIENT))).toBe(0);
      expect(daemon.mappings.size).toBe(3);
    } finally {
      await daemon.stop();
    }
  });

  it('names in the warning what still needs a restart (a plugin added or removed); a default policy no longer listed is back to its defaults', async () => {
    const logger = new RecordingLogger();
    const { output } = createRootLogger({ level: 'silent' });
    const daemon = await startDaemon(config([quota({ perClient: 1 }), permissions({ rules: [] }), memory()]), { logger, logOutput: output });
    try {
      await daemon.mappings.add(request(7000), CLIENT);
      expect(await codeOf(daemon.mappings.add(request(7001), CLIENT))).toBe(728);
      const needRestart = daemon.reload(config([memory()], { httpPort: 5999 }));
      expect(needRestart.sort()).toEqual(['httpPort', 'plugins: permissions removed']);
      expect(logger.messages()).toContainEqual(expect.stringMatching(/these changes need a restart: plugins: permissions removed, httpPort/));
      expect(await codeOf(daemon.mappings.add(request(7001), CLIENT))).toBe(0);
    } finally {
      await daemon.stop();
    }
  });

  it('a plugin added by the new config needs a restart and does not run meanwhile', async () => {
    const { output } = createRootLogger({ level: 'silent' });
    const daemon = await startDaemon(config([memory()]), { logger: new RecordingLogger(), logOutput: output });
    try {
      expect(daemon.reload(config([permissions({ rules: [], defaultAction: 'deny' }), memory()]))).toEqual(['plugins: permissions added']);
      expect(await codeOf(daemon.mappings.add(request(7000), CLIENT))).toBe(0);
    } finally {
      await daemon.stop();
    }
  });

  it('a bad new config changes nothing', async () => {
    const logger = new RecordingLogger();
    const { output } = createRootLogger({ level: 'silent' });
    const daemon = await startDaemon(config([quota({ perClient: 1 }), memory()]), { logger, logOutput: output });
    try {
      expect(daemon.reload(config([quota({ perClient: -1 }), memory()]))).toEqual([]);
      expect(logger.messages()).toContainEqual(expect.stringMatching(/configuration not reloaded.*perClient/));
      await daemon.mappings.add(request(7000), CLIENT);
      expect(await codeOf(daemon.mappings.add(request(7001), CLIENT))).toBe(728);
    } finally {
      await daemon.stop();
    }
  });

  it('a default policy listed after the start is reconfigured in place (the default quota becomes the listed one)', async () => {
    const { output } = createRootLogger({ level: 'silent' });
    const daemon = await startDaemon(config([memory()]), { logger: new RecordingLogger(), logOutput: output });
    try {
      await daemon.mappings.add(request(7000), CLIENT);
      expect(daemon.reload(config([quota({ perClient: 1 }), memory()]))).toEqual([]);
      expect(await codeOf(daemon.mappings.add(request(7001), CLIENT))).toBe(728);
    } finally {
      await daemon.stop();
    }
  });
});
