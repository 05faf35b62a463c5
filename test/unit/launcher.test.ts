import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { DESCRIPTION_URL, freePort, killStartedDaemons, startUpnpd } from '../support/upnpd-process.js';

// The installed command's memory settings (bin/upnpd.js's shebang) and the parts of the daemon
// that are loaded only when a run needs them.

const REPO = join(import.meta.dirname, '..', '..');
const BIN = join(REPO, 'bin', 'upnpd.js');
const scratch = mkdtempSync(join(tmpdir(), 'upnpd-launcher-'));

/** An --import module that appends the URL of every ES module loaded to the file in UPNPD_TEST_MODULES. */
const tracer = join(scratch, 'trace-modules.mjs');
writeFileSync(
  tracer,
  [
    "import { register } from 'node:module';",
    'const hooks = `',
    "import { appendFileSync } from 'node:fs';",
    'export async function load(url, context, next) {',
    '  appendFileSync(process.env.UPNPD_TEST_MODULES, url + "\\\\n");',
    '  return next(url, context);',
    '}`;',
    "register('data:text/javascript,' + encodeURIComponent(hooks));",
    '',
  ].join('\n'),
);

/** The modules a dry-run daemon on loopback has loaded once it serves (and its admin listener, if asked for, listens). */
async function modulesLoaded(name: string, extraArgs: readonly string[]): Promise<string[]> {
  const list = join(scratch, `${name}.txt`);
  writeFileSync(list, '');
  const run = startUpnpd(['--dry-run', '--log-level', 'info', '--runtime-dir', join(scratch, name), ...extraArgs], {
    lifetimeMs: 60_000,
    env: { ...process.env, NODE_OPTIONS: `--import=${pathToFileURL(tracer).href}`, UPNPD_TEST_MODULES: list },
  });
  await run.waitFor(DESCRIPTION_URL, 30_000);
  if (extraArgs.includes('--admin-listen')) await run.waitFor(/admin listener/, 15_000);
  run.signal('SIGTERM');
  expect(await run.exitCode(30_000)).toBe(0);
  return readFileSync(list, 'utf8').split('\n').filter(Boolean);
}

afterEach(() => killStartedDaemons());
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('the upnpd command', () => {
  it('runs node with the memory settings of its shebang when executed (small young generation, gc for the heap trimmer, one malloc arena)', async () => {
    const shebang = readFileSync(BIN, 'utf8').split('\n')[0]!;
    expect(shebang).toMatch(/^#!\/usr\/bin\/env -S /);
    const child = spawn(BIN, ['--dry-run', '--log-level', 'info', '--runtime-dir', join(scratch, 'shebang')], { stdio: ['ignore', 'pipe', 'pipe'] });
    const killer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    try {
      let output = '';
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
      const deadline = Date.now() + 30_000;
      while (!DESCRIPTION_URL.test(output) && child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(output).toMatch(DESCRIPTION_URL);
      // env execs node in place: the pid is node's.
      const argv = readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').split('\0');
      const environ = readFileSync(`/proc/${child.pid}/environ`, 'utf8').split('\0');
      expect(argv).toEqual(expect.arrayContaining(['--max-semi-space-size=1', '--expose-gc', BIN]));
      expect(environ).toContain('MALLOC_ARENA_MAX=1');
      // Every flag and variable of the shebang reaches the process, none is lost on the way.
      for (const word of shebang.replace('#!/usr/bin/env -S ', '').split(/\s+/)) {
        if (word.includes('=') && !word.startsWith('--')) expect(environ).toContain(word);
        else if (word.startsWith('--')) expect(argv).toContain(word);
      }
    } finally {
      child.kill('SIGTERM');
      await new Promise((resolve) => (child.exitCode === null ? child.on('exit', resolve) : resolve(undefined)));
      clearTimeout(killer);
    }
  });

  it('the systemd unit runs the command itself, so that the shebang applies', () => {
    const unit = readFileSync(join(REPO, 'contrib', 'systemd', 'upnpd.service'), 'utf8');
    expect(unit).toMatch(/^ExecStart=upnpd /m);
  });

  it('loads the admin page and prom-client only when the admin listener is configured', async () => {
    const plain = await modulesLoaded('plain', []);
    expect(plain.some((url) => url.endsWith('/dist/app/cli.js'))).toBe(true);
    expect(plain.filter((url) => /\/dist\/app\/admin\/|\/prom-client\//.test(url))).toEqual([]);

    const admin = await modulesLoaded('admin', ['--admin-listen', `127.0.0.1:${await freePort()}`]);
    expect(admin.some((url) => url.includes('/dist/app/admin/server.js'))).toBe(true);
    expect(admin.some((url) => url.includes('/prom-client/'))).toBe(true);
  });
});
