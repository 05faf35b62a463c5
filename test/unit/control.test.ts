import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { Listing } from '../../app/control/protocol.js';
import { DESCRIPTION_URL, killStartedDaemons, soapAction, startUpnpd, type UpnpdRun } from '../support/upnpd-process.js';

// The control socket and the admin commands, against the real daemon (dry-run on loopback).

const REPO = join(import.meta.dirname, '..', '..');
const BIN = join(REPO, 'bin', 'upnpd.js');
const scratch = mkdtempSync(join(tmpdir(), 'upnpd-control-'));

function mapping(port: number, client = '127.0.0.1'): Record<string, string | number> {
  return {
    NewRemoteHost: '',
    NewExternalPort: port,
    NewProtocol: 'TCP',
    NewInternalPort: port,
    NewInternalClient: client,
    NewEnabled: 1,
    NewPortMappingDescription: `app ${port}`,
    NewLeaseDuration: 3600,
  };
}

/** Runs `upnpd ARGS` (a subcommand) and resolves with its exit status and output. */
function upnpd(args: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env, timeout: 15_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

async function daemonIn(runtimeDir: string, env?: NodeJS.ProcessEnv): Promise<{ run: UpnpdRun; url: string }> {
  const run = startUpnpd(['--dry-run', '--runtime-dir', runtimeDir], { lifetimeMs: 60_000, ...(env ? { env } : {}) });
  const url = await run.waitFor(DESCRIPTION_URL, 15_000);
  return { run, url };
}

afterEach(() => killStartedDaemons());
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('the control socket', () => {
  it('lists, deletes and purges mappings through the lifecycle, and reports status', async () => {
    const dir = join(scratch, 'run-a');
    const { run, url } = await daemonIn(dir);
    await run.waitFor(/control socket/, 10_000);
    expect(statSync(join(dir, 'upnpd.sock')).mode & 0o777).toBe(0o600);
    for (const port of [8080, 8081, 8082]) expect((await soapAction(url, 'AddPortMapping', mapping(port))).status).toBe(200);

    const list = await upnpd(['list', '--json', '--runtime-dir', dir]);
    expect(list.code).toBe(0);
    const { mappings: listed, pinholes } = JSON.parse(list.stdout) as Listing;
    expect(pinholes).toEqual([]);
    expect(listed).toHaveLength(3);
    expect(listed[0]).toMatchObject({
      protocol: 'TCP',
      externalPort: 8080,
      internalClient: '127.0.0.1',
      internalPort: 8080,
      remoteHost: '',
      description: 'app 8080',
      source: 'upnp-igd:2',
      createdBy: '127.0.0.1',
    });
    expect(listed[0]!.leaseSecondsLeft).toBeGreaterThan(3500);
    expect(Object.keys(listed[0]!).sort()).toEqual([
      'createdBy',
      'description',
      'externalPort',
      'internalClient',
      'internalPort',
      'leaseSecondsLeft',
      'protocol',
      'remoteHost',
      'source',
    ]);

    const deleted = await upnpd(['delete', 'tcp', '8080', '--runtime-dir', dir]);
    expect(deleted).toMatchObject({ code: 0, stdout: expect.stringMatching(/^deleted TCP {2}8080 -> 127\.0\.0\.1:8080/) as unknown });
    // Through the lifecycle: logged as any deletion, and gone from what clients see.
    await run.waitFor(/DeletePortMap.*8080.*by admin via control|by admin via control/, 5_000);
    expect((await soapAction(url, 'GetSpecificPortMappingEntry', { NewRemoteHost: '', NewExternalPort: 8080, NewProtocol: 'TCP' })).status).toBe(500);

    const missing = await upnpd(['delete', 'TCP', '8080', '--runtime-dir', dir]);
    expect(missing).toMatchObject({ code: 1, stderr: expect.stringContaining('no mapping TCP 8080') as unknown });

    const status = JSON.parse((await upnpd(['status', '--json', '--runtime-dir', dir])).stdout) as {
      backend: string;
      mappings: { total: number; byClient: Record<string, number> };
      frontEnds: Record<string, { externalAddress: string }>;
    };
    expect(status).toMatchObject({
      backend: 'dry-run',
      mappings: { total: 2, byClient: { '127.0.0.1': 2 } },
      frontEnds: { 'upnp-igd': { externalAddress: '203.0.113.1' } },
    });

    const purged = await upnpd(['purge', '--client', '127.0.0.1', '--runtime-dir', dir]);
    expect(purged.code).toBe(0);
    expect(purged.stdout.trim().split('\n')).toHaveLength(2);
    expect(JSON.parse((await upnpd(['list', '--json', '--runtime-dir', dir])).stdout)).toEqual({ mappings: [], pinholes: [] });
  });

  it('answers usage errors with 2 and a missing daemon with 1', async () => {
    expect((await upnpd(['delete', 'icmp', '80', '--runtime-dir', scratch])).code).toBe(2);
    expect(await upnpd(['list', '--runtime-dir', join(scratch, 'nobody-here')])).toMatchObject({
      code: 1,
      stderr: expect.stringContaining('no upnpd answers on') as unknown,
    });
  });

  it("says so, with status 1 and no stack trace, when the socket answers something that is not upnpd's control protocol", async () => {
    // Another program's socket (or another version's), answering a JSON line of its own.
    for (const [name, answer] of [
      ['other-a', '{"ok":true,"result":{}}'],
      ['other-b', '{"hello":1}'],
      ['other-c', 'null'],
    ] as const) {
      const dir = join(scratch, name);
      const { mkdirSync } = await import('node:fs');
      mkdirSync(dir, { recursive: true });
      const other = createServer((socket) => socket.once('data', () => socket.end(`${answer}\n`)));
      await new Promise<void>((resolve) => other.listen(join(dir, 'upnpd.sock'), resolve));
      try {
        for (const command of [['status'], ['list'], ['purge'], ['status', '--json']]) {
          const result = await upnpd([...command, '--runtime-dir', dir]);
          expect(result, `${name} ${command.join(' ')}`).toMatchObject({ code: 1, stdout: '' });
          expect(result.stderr).toBe(
            `upnpd ${command[0]}: ${join(dir, 'upnpd.sock')} answered something that is not upnpd's control protocol (another program's socket, or another upnpd version?)\n`,
          );
        }
      } finally {
        other.close();
      }
    }
  });

  it('refuses an external port outside 1-65535 before asking the daemon (usage: 2)', async () => {
    for (const port of ['0', '65536', '99999']) {
      const result = await upnpd(['delete', 'TCP', port, '--runtime-dir', join(scratch, 'nobody-here')]);
      expect(result.code).toBe(2);
      expect(result.stderr).toContain('EXTERNAL_PORT (1-65535)');
    }
  });

  it('replaces a stale socket left by a crash, and leaves a live one to its daemon', async () => {
    const dir = join(scratch, 'run-b');
    // A socket file nobody answers on, as a kill -9 leaves it.
    const stale = createServer();
    await new Promise<void>((resolve) => stale.listen(join(scratch, 'tmp.sock'), resolve));
    const { mkdirSync, renameSync } = await import('node:fs');
    mkdirSync(dir, { recursive: true });
    renameSync(join(scratch, 'tmp.sock'), join(dir, 'upnpd.sock'));
    stale.close();
    const first = await daemonIn(dir);
    await first.run.waitFor(/control socket/, 10_000);
    expect((await upnpd(['status', '--runtime-dir', dir])).code).toBe(0);
    const second = await daemonIn(dir);
    await second.run.waitFor(/another upnpd answers on/, 10_000);
    expect((await upnpd(['status', '--json', '--runtime-dir', dir])).code).toBe(0);
  });

  it('falls back to $XDG_RUNTIME_DIR/upnpd when the runtime dir cannot be created, and starts without a socket when neither can', async () => {
    const xdg = join(scratch, 'xdg');
    const blocked = '/dev/null/upnpd';
    const withXdg = await daemonIn(blocked, { ...process.env, XDG_RUNTIME_DIR: xdg });
    await withXdg.run.waitFor(/control socket/, 10_000);
    expect(existsSync(join(xdg, 'upnpd', 'upnpd.sock'))).toBe(true);
    expect((await upnpd(['status'], { ...process.env, XDG_RUNTIME_DIR: xdg })).code).toBe(0);
    const env = { ...process.env };
    delete env.XDG_RUNTIME_DIR;
    const without = await daemonIn(blocked, env);
    expect(await without.run.waitFor(/no control socket: \/dev\/null\/upnpd cannot be created or written/, 10_000)).toBeTruthy();
  });
});
