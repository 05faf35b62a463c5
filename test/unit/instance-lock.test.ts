import { execFile, spawn } from 'node:child_process';
import { cpSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { InstanceLockedError, LOCK_KEY_FILE, lockInstance, lockName, type InstanceLock } from '../../app/instance-lock.js';
import { silentLogger } from '../../core/logger.js';
import { RecordingLogger } from '../support/fakes.js';
import { useTempDir } from '../support/temp-dir.js';
import { DESCRIPTION_URL, addPortMappingArgs, killStartedDaemons, soapAction, startUpnpd, type UpnpdRun } from '../support/upnpd-process.js';

// One upnpd per state directory: a second one (an admin starting it by hand while the systemd unit
// runs) would write the first one's journal. A daemon that crashed leaves no lock behind.

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'upnpd.js');
const temp = useTempDir('upnpd-instance-lock-');

/** Runs `upnpd ARGS` (a subcommand) and resolves with its exit status and output. */
function upnpd(args: readonly string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { timeout: 15_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, output: stdout + stderr });
    });
  });
}

async function daemon(stateDir: string, runtimeDir: string): Promise<{ run: UpnpdRun; url: string; pid: number }> {
  const run = startUpnpd(['--dry-run', '--http-port', '0', '--state-dir', stateDir, '--runtime-dir', runtimeDir], { lifetimeMs: 60_000 });
  const url = await run.waitFor(DESCRIPTION_URL, 15_000);
  await run.waitFor(/control socket \//, 10_000);
  return { run, url, pid: run.records()[0]!.pid as number };
}

const held: InstanceLock[] = [];

/** Listens on the abstract socket named by its argument (without the leading NUL) and answers as an upnpd would, with a pid not its own. */
const SQUATTER = `require('node:net').createServer((s) => s.end('{"upnpd":true,"pid":1}\\n')).listen({ path: '\\0' + process.argv[1] }, () => console.log('ready'));`;
afterEach(async () => {
  killStartedDaemons();
  await Promise.all(held.splice(0).map((lock) => lock.release()));
});

describe('a second upnpd on the same state directory', () => {
  it(
    'is refused with exit status 1, naming the running one’s pid and the directory; the running one serves on, its state untouched',
    { timeout: 60_000 },
    async () => {
      const stateDir = join(temp.path, 'state');
      const first = await daemon(stateDir, join(temp.path, 'run-1'));
      expect((await soapAction(first.url, 'AddPortMapping', addPortMappingArgs(8080, 'first'))).status).toBe(200);
      const journal = readFileSync(join(stateDir, 'mappings.journal'), 'utf8');
      const bootId = readFileSync(join(stateDir, 'boot-id'), 'utf8');

      const second = startUpnpd(['--dry-run', '--http-port', '0', '--state-dir', stateDir, '--runtime-dir', join(temp.path, 'run-2')]);
      expect(await second.exitCode(15_000)).toBe(1);
      expect(second.output()).toContain(`upnpd: another upnpd (pid ${first.pid}) is running on the state directory ${stateDir}; not starting a second one`);
      expect(second.output()).not.toMatch(/UPnP IGD listening|upnpd running/);
      // It read and wrote nothing there: no restore, no new BOOTID, no snapshot over the first one's journal.
      expect(readFileSync(join(stateDir, 'mappings.journal'), 'utf8')).toBe(journal);
      expect(readFileSync(join(stateDir, 'boot-id'), 'utf8')).toBe(bootId);

      // The admin commands still reach the running one; check validates as before.
      const list = await upnpd(['list', '--json', '--runtime-dir', join(temp.path, 'run-1')]);
      expect(list.code, list.output).toBe(0);
      expect(JSON.parse(list.output)).toMatchObject({ mappings: [{ externalPort: 8080, description: 'first' }] });
      const status = await upnpd(['status', '--runtime-dir', join(temp.path, 'run-1')]);
      expect(status.code, status.output).toBe(0);
      const config = join(temp.path, 'upnpd.config.mjs');
      writeFileSync(config, `export default { dryRun: true, stateDir: ${JSON.stringify(stateDir)} };\n`);
      const check = await upnpd(['check', '--config', config]);
      expect(check.code, check.output).toBe(0);
    },
  );

  it('starts once the running one has stopped, and after one killed with SIGKILL (no lock is left behind)', { timeout: 60_000 }, async () => {
    const stateDir = join(temp.path, 'state');
    const first = await daemon(stateDir, join(temp.path, 'run-1'));
    expect((await soapAction(first.url, 'AddPortMapping', addPortMappingArgs(8080, 'kept'))).status).toBe(200);
    first.run.signal('SIGKILL');
    await first.run.exited;

    const second = await daemon(stateDir, join(temp.path, 'run-2'));
    const list = await upnpd(['list', '--json', '--runtime-dir', join(temp.path, 'run-2')]);
    expect(JSON.parse(list.output)).toMatchObject({ mappings: [{ externalPort: 8080, description: 'kept' }] });
    second.run.signal('SIGTERM');
    expect(await second.run.exitCode(15_000)).toBe(0);

    const third = await daemon(stateDir, join(temp.path, 'run-3'));
    third.run.signal('SIGTERM');
    expect(await third.run.exitCode(15_000)).toBe(0);
  });

  it('dry-run daemons on different state directories, and without one, run side by side', { timeout: 60_000 }, async () => {
    const a = await daemon(join(temp.path, 'state-a'), join(temp.path, 'run-a'));
    const b = await daemon(join(temp.path, 'state-b'), join(temp.path, 'run-b'));
    const c = startUpnpd(['--dry-run', '--http-port', '0', '--runtime-dir', join(temp.path, 'run-c')]);
    const d = startUpnpd(['--dry-run', '--http-port', '0', '--runtime-dir', join(temp.path, 'run-c')]);
    await c.waitFor(/upnpd running/, 15_000);
    await d.waitFor(/upnpd running/, 15_000);
    for (const run of [a.run, b.run, c, d]) run.signal('SIGTERM');
    for (const run of [a.run, b.run, c, d]) expect(await run.exitCode(15_000)).toBe(0);
  });
});

describe('lockInstance', () => {
  const directory = (dir: string) => ({ dir, role: 'state directory', instead: 'give this one another --state-dir' });

  it('refuses a second lock on a directory while the first is held, naming the holder’s pid; released, it can be taken again', async () => {
    const dir = join(temp.path, 'state');
    held.push(await lockInstance([directory(dir)], silentLogger));
    const refused = lockInstance([directory(dir)], silentLogger);
    await expect(refused).rejects.toBeInstanceOf(InstanceLockedError);
    await expect(refused).rejects.toThrow(`another upnpd (pid ${process.pid}) is running on the state directory ${dir}`);
    await held.pop()!.release();
    held.push(await lockInstance([directory(dir)], silentLogger));
  });

  it('is not kept from starting by another user who took the lock’s name first (the name is no secret: /proc/net/unix lists it)', async () => {
    const dir = join(temp.path, 'state');
    const name = await lockName(dir);
    // A local user (nobody) listening on the name, and claiming to be an upnpd at that.
    const squatter = spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '-e', SQUATTER, name.slice(1)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      await new Promise<void>((resolve, reject) => {
        squatter.stdout.once('data', () => resolve());
        squatter.once('exit', (code) => reject(new Error(`the squatter ended (${code})`)));
      });
      const logger = new RecordingLogger();
      held.push(await lockInstance([directory(dir)], logger));
      expect(logger.lines).toContainEqual({ level: 'warn', message: expect.stringContaining(`is held by pid ${squatter.pid}`) as unknown });
      expect(logger.messages().join('\n')).toContain('uid 65534, not an upnpd of this user: starting without it');
    } finally {
      squatter.kill('SIGKILL');
    }
  });

  it('keeps nothing it took when a later directory is held (a refused start holds no lock)', async () => {
    const [free, taken] = [join(temp.path, 'free'), join(temp.path, 'taken')];
    held.push(await lockInstance([directory(taken)], silentLogger));
    await expect(lockInstance([directory(free), directory(taken)], silentLogger)).rejects.toBeInstanceOf(InstanceLockedError);
    held.push(await lockInstance([directory(free)], silentLogger));
  });

  it('keys the lock by a random key kept in the directory (0600); one that is not a key is made again', async () => {
    const dir = join(temp.path, 'state');
    const lock = await lockInstance([directory(dir)], silentLogger);
    const key = readFileSync(join(dir, LOCK_KEY_FILE), 'utf8');
    expect(key).toMatch(/^[0-9a-f]{32}\n$/);
    await lock.release();
    writeFileSync(join(dir, LOCK_KEY_FILE), 'garbage');
    held.push(await lockInstance([directory(dir)], silentLogger));
    expect(readFileSync(join(dir, LOCK_KEY_FILE), 'utf8')).toMatch(/^[0-9a-f]{32}\n$/);
    await expect(lockInstance([directory(dir)], silentLogger)).rejects.toBeInstanceOf(InstanceLockedError);
  });

  it("is the same lock through another path to the directory (a symbolic link), naming the holder's path; a copy of the directory, key and all, is another", async () => {
    const dir = join(temp.path, 'state');
    held.push(await lockInstance([directory(dir)], silentLogger));
    const link = join(temp.path, 'link');
    symlinkSync(dir, link);
    await expect(lockInstance([directory(link)], silentLogger)).rejects.toThrow(
      `another upnpd (pid ${process.pid}) is running on the state directory ${link} (which it names ${dir}); not starting a second one`,
    );
    const copy = join(temp.path, 'copy');
    cpSync(dir, copy, { recursive: true });
    expect(readFileSync(join(copy, LOCK_KEY_FILE), 'utf8')).toBe(readFileSync(join(dir, LOCK_KEY_FILE), 'utf8'));
    held.push(await lockInstance([directory(copy)], silentLogger));
  });

  it('does not stop a start when the directory cannot be created (the start never fails for the state)', async () => {
    const file = join(temp.path, 'a-file');
    writeFileSync(file, '');
    held.push(await lockInstance([directory(join(file, 'state'))], silentLogger));
  });
});
