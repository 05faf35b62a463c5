import { mkdir, mkdtemp, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig, type LoadConfigOptions } from '../../core/config/load.js';

// Where upnpd.config.{js,mjs,cjs} is found: the working directory, its parents, then the system
// directory (injected here; /etc/upnpd by default). The files only export plain objects, so they
// can live outside the repo.
let root: string;
let cwd: string;
let etc: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'upnpd-config-search-'));
  cwd = join(root, 'project', 'sub');
  etc = join(root, 'etc', 'upnpd');
  await mkdir(cwd, { recursive: true });
  await mkdir(etc, { recursive: true });
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

async function writeConfig(dir: string, name: string, wan: string): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, `export default { wan: '${wan}' };\n`);
  return file;
}

function load(options: LoadConfigOptions = {}) {
  return loadConfig({ cwd, systemConfigDir: etc, ...options });
}

/** An error as fs gives it when the caller may not look into a directory. */
function accessDenied(path: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`EACCES: permission denied, stat '${path}'`), { code: 'EACCES', path });
}

describe('config file search', () => {
  it('finds the file in the working directory', async () => {
    const file = await writeConfig(cwd, 'upnpd.config.mjs', 'eth1');
    expect(await load()).toMatchObject({ source: file, wan: 'eth1' });
  });

  it('finds the file in a parent directory', async () => {
    const file = await writeConfig(join(root, 'project'), 'upnpd.config.js', 'eth2');
    expect(await load()).toMatchObject({ source: file, wan: 'eth2' });
  });

  it('falls back to the system directory when there is none upwards', async () => {
    const file = await writeConfig(etc, 'upnpd.config.cjs', 'eth3');
    expect(await load()).toMatchObject({ source: file, wan: 'eth3' });
  });

  it('prefers the working directory over the system directory', async () => {
    const file = await writeConfig(cwd, 'upnpd.config.js', 'near');
    await writeConfig(etc, 'upnpd.config.js', 'system');
    expect(await load()).toMatchObject({ source: file, wan: 'near' });
  });

  it('runs on defaults when there is no file anywhere, the system directory missing too', async () => {
    await rm(etc, { recursive: true });
    expect((await load()).source).toBe('(no config file)');
  });

  // The tests run as root, where mode 000 does not stop a stat: EACCES is injected through `stat`,
  // the way fs reports it for `sudo -u nobody upnpd` with HOME or the working directory in /root.
  it('skips a directory it may not look into, and keeps searching', async () => {
    const denied = join(root, 'project');
    const skipped: [string, string | undefined][] = [];
    const file = await writeConfig(etc, 'upnpd.config.js', 'system');
    await writeConfig(denied, 'upnpd.config.js', 'unreachable');
    const config = await load({
      stat: (path) => (path.startsWith(`${denied}/`) ? Promise.reject(accessDenied(path)) : stat(path)),
      onSkip: (dir, error) => skipped.push([dir, (error as NodeJS.ErrnoException).code]),
    });
    expect(config).toMatchObject({ source: file, wan: 'system' });
    expect(skipped).toEqual([
      [cwd, 'EACCES'],
      [denied, 'EACCES'],
    ]);
  });

  it('skips a directory whose stat fails for real (a symlink loop), without an injected stat', async () => {
    const loop = join(root, 'loop');
    await symlink(loop, loop);
    const file = await writeConfig(root, 'upnpd.config.js', 'above-the-loop');
    const skipped: string[] = [];
    const config = await load({ cwd: join(loop, 'sub'), onSkip: (dir) => skipped.push(dir) });
    expect(config).toMatchObject({ source: file, wan: 'above-the-loop' });
    expect(skipped).toEqual([join(loop, 'sub'), loop]);
  });

  it('lets --config win over every searched place', async () => {
    await writeConfig(cwd, 'upnpd.config.js', 'near');
    await writeConfig(etc, 'upnpd.config.js', 'system');
    const chosen = await writeConfig(root, 'chosen.mjs', 'chosen');
    expect(await load({ configFile: '../../chosen.mjs' })).toMatchObject({ source: chosen, wan: 'chosen' });
  });
});
