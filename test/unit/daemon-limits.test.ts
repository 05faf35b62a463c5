import 'reflect-metadata';
import { describe, expect, it } from 'vitest';
import { startDaemon } from '../../app/compose.js';
import { configSchema, type ResolvedConfig } from '../../core/config/schema.js';
import { createRootLogger } from '../../core/logging.js';
import { defineBackend } from '../../core/plugins/define.js';
import { addArgs, soap } from '../protocol/fixture.js';
import { RecordingBackend, RecordingLogger } from '../support/fakes.js';

describe('the daemon with limits from its config', () => {
  it('applies limits.stateChanges to every client and counts the refusals where the metrics will read them', async () => {
    const memory = defineBackend({ name: 'memory', create: () => new RecordingBackend() });
    const config: ResolvedConfig = {
      ...configSchema.parse({ lan: ['lo'], externalIp: '203.0.113.1', secureMode: false, limits: { stateChanges: { burst: 2, perSecond: 0.01 } } }),
      source: 'test',
      lanFromCommandLine: true,
      plugins: [memory()],
    };
    const logger = new RecordingLogger();
    const { output } = createRootLogger({ level: 'silent' });
    const daemon = await startDaemon(config, { logger, logOutput: output });
    try {
      const port = Number(new URL(daemon.frontEnds[0]!.describe!()[0]!).port);
      const add = (externalPort: number) => soap({ port }, 'AddPortMapping', addArgs({ NewExternalPort: externalPort }));
      const statuses = [(await add(5001)).status, (await add(5002)).status, (await add(5003)).status];
      expect(statuses).toEqual([200, 200, 503]);
      expect((await soap({ port }, 'GetGenericPortMappingEntry', { NewPortMappingIndex: 1 })).status).toBe(200);
      expect(daemon.limits.stats().refused['state-change-rate']).toBe(1);
      expect(logger.lines).toContainEqual({ level: 'warn', message: 'refused 127.0.0.1: state-changing requests per client (limits.stateChanges)' });
    } finally {
      await daemon.stop();
    }
  });
});
