import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { loadConfig } from '../../core/config/load.js';
import { ConfigError } from '../../core/errors.js';
import { definePlugin } from '../../core/plugins/define.js';

// Config files live inside the repo so that they can import packages from its node_modules.
let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(import.meta.dirname, '..', '.tmp-config-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function writeConfig(name: string, body: string): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, body);
  return file;
}

async function errorOf(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ConfigError);
  return (error as Error).message;
}

const quota = definePlugin({
  name: 'quota',
  optionsSchema: z.object({ maxPerClient: z.number().int().min(1).default(16) }).strict(),
  create: () => ({ name: 'quota' }),
});

describe('configuration', () => {
  it('runs with no config file at all, on defaults', async () => {
    const config = await loadConfig({ cwd: dir, systemConfigDir: dir });
    expect(config.source).toBe('(no config file)');
    expect(config).toMatchObject({ secureMode: true, dryRun: false, httpPort: 0, lease: { defaultSeconds: 3600, maxSeconds: 604800, allowPermanent: true } });
  });

  it.each(['upnpd.config.js', 'upnpd.config.mjs'])('finds %s by searching from the working directory', async (name) => {
    await writeConfig(name, `export default { lan: ['br-lan'], wan: 'eth0', lease: { maxSeconds: 7200 } };\n`);
    const config = await loadConfig({ cwd: dir });
    expect(config.source).toBe(join(dir, name));
    expect(config).toMatchObject({ lan: ['br-lan'], wan: 'eth0', lease: { maxSeconds: 7200, defaultSeconds: 3600 } });
  });

  it('loads a CommonJS upnpd.config.cjs', async () => {
    await writeConfig('upnpd.config.cjs', `module.exports = { wan: 'ppp0' };\n`);
    expect((await loadConfig({ cwd: dir })).wan).toBe('ppp0');
  });

  it('names the file and the key path of an unknown key, also a nested one', async () => {
    const file = await writeConfig('upnpd.config.js', `export default { leese: 1, lease: { maxSecs: 5 } };\n`);
    const message = await errorOf(loadConfig({ cwd: dir }));
    expect(message).toContain(`${file}: leese: unknown key`);
    expect(message).toContain(`${file}: lease.maxSecs: unknown key`);
  });

  it('names the file and the key path of a bad value', async () => {
    const file = await writeConfig(
      'upnpd.config.js',
      `export default { lease: { maxSeconds: 'long' }, externalIp: '300.1.1.1', lan: ['this-name-is-too-long'] };\n`,
    );
    const message = await errorOf(loadConfig({ cwd: dir }));
    expect(message).toMatch(new RegExp(`${file}: lease.maxSeconds: .*expected number`));
    expect(message).toContain(`${file}: externalIp: must be an IPv4 address`);
    expect(message).toContain(`${file}: lan[0]: must be a network interface name`);
  });

  it('lets flags win over the file, and names the flag when a flag value is bad', async () => {
    await writeConfig('upnpd.config.js', `export default { httpPort: 5000, wan: 'eth0' };\n`);
    const config = await loadConfig({ cwd: dir, overrides: { httpPort: 6000 } });
    expect(config.httpPort).toBe(6000);
    expect(config.wan).toBe('eth0');
    const message = await errorOf(loadConfig({ cwd: dir, overrides: { httpPort: 'x' as never }, flagNames: { httpPort: '--http-port' } }));
    expect(message).toMatch(/^command line --http-port: httpPort: .*expected number/);
  });

  it('reports a missing --config file and a file that does not load', async () => {
    expect(await errorOf(loadConfig({ configFile: join(dir, 'nope.js') }))).toBe(`${join(dir, 'nope.js')}: no such file`);
    const broken = await writeConfig('broken.js', 'export default {;\n');
    expect(await errorOf(loadConfig({ configFile: broken }))).toMatch(new RegExp(`^${broken}: cannot load: `));
  });

  it('requires the file to export an object', async () => {
    const file = await writeConfig('upnpd.config.js', 'export default 42;\n');
    expect(await errorOf(loadConfig({ cwd: dir }))).toBe(`${file}: must export an object (export default defineConfig({...}))`);
  });

  it.each([
    ['an empty file', 'upnpd.config.mjs', ''],
    ['no default export', 'upnpd.config.mjs', `export const lan = ['br-lan'];\n`],
    ['a default export of undefined', 'upnpd.config.mjs', 'export default undefined;\n'],
  ])('names the file when it exports no configuration: %s', async (_what, name, body) => {
    const file = await writeConfig(name, body);
    expect(await errorOf(loadConfig({ cwd: dir }))).toBe(`${file}: exports no configuration (export default defineConfig({...}))`);
  });

  it.each([
    ['export default null', 'upnpd.config.mjs', 'export default null;\n'],
    ['module.exports = null', 'upnpd.config.cjs', 'module.exports = null;\n'],
  ])('requires an object, not null: %s', async (_what, name, body) => {
    const file = await writeConfig(name, body);
    expect(await errorOf(loadConfig({ cwd: dir }))).toBe(`${file}: must export an object (export default defineConfig({...}))`);
  });

  it('loads an async config: a default export that is a promise, a top-level await', async () => {
    await writeConfig('upnpd.config.mjs', `export default Promise.resolve({ wan: 'ppp0' });\n`);
    expect((await loadConfig({ cwd: dir })).wan).toBe('ppp0');
    await writeConfig('upnpd.config.mjs', `const wan = await new Promise((resolve) => setTimeout(() => resolve('ppp1'), 10));\nexport default { wan };\n`);
    expect((await loadConfig({ cwd: dir })).wan).toBe('ppp1');
  });

  it.each([
    ['a top-level await', 'await new Promise(() => {});\nexport default {};\n'],
    ['an exported promise', 'export default new Promise(() => {});\n'],
  ])('fails a load that never settles (%s) after its time, naming the file', async (_what, body) => {
    const file = await writeConfig('upnpd.config.mjs', body);
    expect(await errorOf(loadConfig({ cwd: dir, loadTimeoutMs: 200 }))).toBe(
      `${file}: cannot load: did not finish loading in 0.2 s (a top-level await or an exported promise that never settles)`,
    );
  });

  it('validates plugin options with the plugin schema, naming the entry and the key', async () => {
    const message = await errorOf(loadConfig({ cwd: dir, systemConfigDir: dir, overrides: { plugins: [quota({ maxPerClient: 0 })] } }));
    expect(message).toMatch(/^\(no config file\): plugins\[0\] \(quota\)\.maxPerClient: .*>=1/);
  });

  it('names a plugin by its place in the file, falsy entries before it counted', async () => {
    const message = await errorOf(loadConfig({ cwd: dir, systemConfigDir: dir, overrides: { plugins: [false, null, quota({ maxPerClient: 0 })] } }));
    expect(message).toMatch(/^\(no config file\): plugins\[2\] \(quota\)\.maxPerClient: /);
  });

  it('ignores falsy plugin entries (so `cond && plugin()` works) and applies plugin option defaults', async () => {
    const config = await loadConfig({ cwd: dir, overrides: { plugins: [false, null, undefined, quota()] } });
    expect(config.plugins.map((p) => [p.name, p.options])).toEqual([['quota', { maxPerClient: 16 }]]);
  });

  it('refuses a plugin entry that is not a factory call', async () => {
    const file = await writeConfig('upnpd.config.js', `export default { plugins: ['iptables'] };\n`);
    expect(await errorOf(loadConfig({ cwd: dir }))).toBe(`${file}: plugins[0]: must be a plugin factory call such as iptables({...}), or a falsy value`);
  });
});

describe('policy plugin options in a config file', () => {
  it('a bad permission rule names the file, the plugin and the key path', async () => {
    const file = await writeConfig(
      'upnpd.config.js',
      `import { permissions } from 'upnpd';\nexport default { plugins: [permissions({ rules: ['allow 1024-65535 192.168.1.0/24 1024-65535', 'allow 1-2 10.0.0.0/8 1-2 (a+)+'] })] };\n`,
    );
    expect(await errorOf(loadConfig({ cwd: dir }))).toMatch(
      new RegExp(
        `^${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: plugins\\[0\\] \\(permissions\\)\\.rules\\[1\\]: description pattern "\\(a\\+\\)\\+": .*catastrophic backtracking`,
      ),
    );
  });
});
