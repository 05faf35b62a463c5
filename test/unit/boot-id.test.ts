import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { clockBootId, persistedBootId } from '../../core/boot-id.js';
import { silentLogger } from '../../core/logger.js';
import { useTempDir } from '../support/temp-dir.js';

const NOW = Date.parse('2026-11-24T12:00:00Z');
const EPOCH_BOOT = Date.parse('1970-01-01T00:00:42Z'); // a gateway without a real-time clock, before NTP

describe('BOOTID.UPNP.ORG across restarts', () => {
  const temp = useTempDir('upnpd-boot-');

  it('comes from the clock on the first start, and is saved', async () => {
    expect(await persistedBootId(temp.path, silentLogger, NOW)).toBe(clockBootId(NOW));
    expect(readFileSync(join(temp.path, 'boot-id'), 'utf8')).toBe(`${clockBootId(NOW)}\n`);
  });

  it('still increases when the gateway boots with its clock at 1970', async () => {
    const first = await persistedBootId(temp.path, silentLogger, NOW);
    const second = await persistedBootId(temp.path, silentLogger, EPOCH_BOOT);
    const third = await persistedBootId(temp.path, silentLogger, EPOCH_BOOT);
    expect([second, third]).toEqual([first + 1, first + 2]);
  });

  it('follows the clock when it is ahead of the last value', async () => {
    await persistedBootId(temp.path, silentLogger, NOW);
    expect(await persistedBootId(temp.path, silentLogger, NOW + 60_000)).toBe(clockBootId(NOW) + 60);
  });

  it('falls back to the clock for a file that holds no BOOTID, and wraps to 0 after the 31-bit maximum', async () => {
    writeFileSync(join(temp.path, 'boot-id'), 'garbage\n');
    expect(await persistedBootId(temp.path, silentLogger, NOW)).toBe(clockBootId(NOW));
    writeFileSync(join(temp.path, 'boot-id'), `${2 ** 31 - 1}\n`);
    expect(await persistedBootId(temp.path, silentLogger, NOW)).toBe(0);
  });

  it('uses the clock where the directory cannot be written, without failing', async () => {
    expect(await persistedBootId(join(temp.path, 'missing', 'temp.path'), silentLogger, NOW)).toBe(clockBootId(NOW));
  });
});
