import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { describeRequiring } from '../support/requirements.js';
import { oneClientLoadConfig } from '../support/load-limits.js';
import { DESCRIPTION_URL, addPortMappingArgs, killStartedDaemons, soapAction, startUpnpd } from '../support/upnpd-process.js';

// The state directory on a small or read-only filesystem: a tmpfs mounted in a private mount
// namespace (`unshare -m`), never in the root one. The daemon runs in dry-run on loopback; what
// it acknowledged is compared with what a restart restores from a copy of the tmpfs.

const REPO = join(import.meta.dirname, '..', '..');
const BIN = join(REPO, 'bin', 'upnpd.js');
/** The loop of the shell that owns the mount waits at most this many 100 ms steps. */
const SHELL_STEPS = 1_200;
const CONCURRENCY = 16;
/** The per-client bounds and quota raised: this test drives one client hard on purpose. */
const LOAD_CONFIG = join(mkdtempSync(join(tmpdir(), 'upnpd-durable-config-')), 'upnpd.config.mjs');
writeFileSync(LOAD_CONFIG, oneClientLoadConfig(new URL('../../dist/core/index.js', import.meta.url).href));

interface TmpfsDaemon {
  readonly url: string;
  output(): string;
  /** Remounts the tmpfs read-only or read-write (the shell in the mount namespace does it). */
  remount(mode: 'ro' | 'rw'): Promise<void>;
  /** SIGTERM; resolves once the daemon exited and the tmpfs was copied to `copyDir`. */
  stop(): Promise<void>;
}

async function startOnTmpfs(size: string, stateDir: string, copyDir: string, controlDir: string): Promise<TmpfsDaemon> {
  const script = `
set -u
mount -t tmpfs -o size=${size},mode=0700 none "$STATE" || exit 90
"$NODE" "$BIN" --dry-run --http-port 0 --config "$CONFIG" --state-dir "$STATE" & pid=$!
trap 'kill -TERM $pid' TERM
i=0
while kill -0 $pid 2>/dev/null && [ $i -lt ${SHELL_STEPS} ]; do
  # Tried until it works: it fails (EBUSY) while upnpd holds its journal open, up to 500 ms after the last append.
  if [ -e "$CONTROL/ro" ] && mount -o remount,ro "$STATE" 2>/dev/null; then rm -f "$CONTROL/ro"; echo REMOUNTED-ro; fi
  if [ -e "$CONTROL/rw" ]; then rm -f "$CONTROL/rw"; mount -o remount,rw "$STATE" && echo REMOUNTED-rw; fi
  sleep 0.1; i=$((i+1))
done
kill -KILL $pid 2>/dev/null
wait $pid
cp -a "$STATE/." "$COPY/"
`;
  const child = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script], {
    env: { ...process.env, NO_COLOR: '1', STATE: stateDir, COPY: copyDir, CONTROL: controlDir, NODE: process.execPath, BIN, CONFIG: LOAD_CONFIG },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (output += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (output += c));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const waitFor = async (pattern: RegExp, timeoutMs = 15_000): Promise<string> => {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const match = pattern.exec(output);
      if (match) return match[1] ?? match[0];
      if (child.exitCode !== null) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`no ${String(pattern)} in the output:\n${output}`);
  };
  const url = await waitFor(DESCRIPTION_URL);
  return {
    url,
    output: () => output,
    async remount(mode) {
      const before = output.split(`REMOUNTED-${mode}`).length;
      writeFileSync(join(controlDir, mode), '');
      const deadline = Date.now() + 10_000;
      while (output.split(`REMOUNTED-${mode}`).length === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      if (output.split(`REMOUNTED-${mode}`).length === before) throw new Error(`the tmpfs was not remounted ${mode}:\n${output}`);
    },
    async stop() {
      child.kill('SIGTERM');
      const timeout = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(timeout);
    },
  };
}

const addArgs = (port: number) => addPortMappingArgs(port, `durable ${port}`);

/** Sends the calls, `CONCURRENCY` at a time; returns the UPnP outcome of each: 200, or the fault's errorCode. */
async function callAll(url: string, calls: ReadonlyArray<{ action: string; args: Record<string, string | number> }>): Promise<number[]> {
  const outcomes: number[] = new Array<number>(calls.length);
  let next = 0;
  const worker = async () => {
    while (next < calls.length) {
      const i = next++;
      const { status, body } = await soapAction(url, calls[i]!.action, calls[i]!.args, 10_000);
      outcomes[i] = status === 200 ? 200 : Number(/<errorCode>(\d+)<\/errorCode>/.exec(body)?.[1] ?? status);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return outcomes;
}

/** The external ports of every mapping a daemon holds (GetGenericPortMappingEntry until 713). */
async function listPorts(url: string): Promise<number[]> {
  const ports: number[] = [];
  for (let index = 0; index < 100_000; index++) {
    const { status, body } = await soapAction(url, 'GetGenericPortMappingEntry', { NewPortMappingIndex: index });
    if (status !== 200) break;
    ports.push(Number(/<NewExternalPort>(\d+)<\/NewExternalPort>/.exec(body)![1]));
  }
  return ports.sort((a, b) => a - b);
}

/** What a daemon started on `stateDir` (on an ordinary disk) restores. */
async function restoredFrom(stateDir: string): Promise<number[]> {
  const run = startUpnpd(['--dry-run', '--http-port', '0', '--config', LOAD_CONFIG, '--state-dir', stateDir], { lifetimeMs: 60_000 });
  const url = await run.waitFor(DESCRIPTION_URL, 15_000);
  try {
    return await listPorts(url);
  } finally {
    run.signal('SIGTERM');
    await run.exitCode(15_000);
  }
}

async function whyNot(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root (mount in a private mount namespace)';
  const probe = await new Promise<number | null>((resolve) => {
    const p = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs -o size=4k none /mnt'], { stdio: 'ignore' });
    p.on('exit', (code) => resolve(code));
    p.on('error', () => resolve(-1));
  });
  return probe === 0 ? undefined : 'unshare -m with a tmpfs mount does not work here';
}

describeRequiring('the mapping state on a full or read-only filesystem (private mount namespace)', whyNot(), () => {
  let scratch: string;
  let stateDir: string;
  let copyDir: string;
  let controlDir: string;
  beforeEach(() => {
    scratch = mkdtempSync(join(tmpdir(), 'upnpd-durable-'));
    [stateDir, copyDir, controlDir] = ['state', 'copy', 'control'].map((d) => join(scratch, d)) as [string, string, string];
    for (const d of [stateDir, copyDir, controlDir]) mkdirSync(d, { mode: 0o700 });
  });
  afterEach(() => {
    killStartedDaemons();
    rmSync(scratch, { recursive: true, force: true });
  });

  it('disk full (32 KiB tmpfs): new mappings are refused with 501 once nothing more fits, and a restart restores exactly the acknowledged ones', async () => {
    const daemon = await startOnTmpfs('32k', stateDir, copyDir, controlDir);
    const ports = Array.from({ length: 1000 }, (_, i) => 20000 + i);
    const outcomes = await callAll(
      daemon.url,
      ports.map((p) => ({ action: 'AddPortMapping', args: addArgs(p) })),
    );
    const acknowledged = ports.filter((_, i) => outcomes[i] === 200);
    expect(outcomes.filter((o) => o !== 200 && o !== 501)).toEqual([]);
    expect(acknowledged.length).toBeGreaterThan(0);
    expect(acknowledged.length).toBeLessThan(1000);
    // Existing ones keep forwarding (they are still in the table).
    expect(await listPorts(daemon.url)).toEqual(acknowledged);
    expect(daemon.output()).toMatch(/cannot write the mapping state to .*ENOSPC/);
    await daemon.stop();
    expect(await restoredFrom(copyDir)).toEqual(acknowledged);
  }, 180_000);

  it('read-only mid-run: new mappings answered 501, deletions proceed, and it recovers by itself once writable; a restart restores exactly what was acknowledged', async () => {
    const daemon = await startOnTmpfs('4m', stateDir, copyDir, controlDir);
    const first = Array.from({ length: 20 }, (_, i) => 21000 + i);
    expect(
      await callAll(
        daemon.url,
        first.map((p) => ({ action: 'AddPortMapping', args: addArgs(p) })),
      ),
    ).toEqual(first.map(() => 200));

    await daemon.remount('ro');
    const refused = Array.from({ length: 10 }, (_, i) => 22000 + i);
    expect(
      await callAll(
        daemon.url,
        refused.map((p) => ({ action: 'AddPortMapping', args: addArgs(p) })),
      ),
    ).toEqual(refused.map(() => 501));
    const deleted = first.slice(0, 5);
    expect(
      await callAll(
        daemon.url,
        deleted.map((p) => ({ action: 'DeletePortMapping', args: { NewRemoteHost: '', NewExternalPort: p, NewProtocol: 'TCP' } })),
      ),
    ).toEqual(deleted.map(() => 200));
    expect(await listPorts(daemon.url)).toEqual(first.slice(5));
    expect(daemon.output()).toMatch(/cannot write the mapping state to .*EROFS/);

    await daemon.remount('rw');
    // Recovered on the retry timer, without a request.
    const deadline = Date.now() + 15_000;
    while (!/the mapping state is written to .* again/.test(daemon.output()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    expect(daemon.output()).toMatch(/the mapping state is written to .* again/);
    const later = [23000, 23001, 23002];
    expect(
      await callAll(
        daemon.url,
        later.map((p) => ({ action: 'AddPortMapping', args: addArgs(p) })),
      ),
    ).toEqual(later.map(() => 200));
    await daemon.stop();
    expect(await restoredFrom(copyDir)).toEqual([...first.slice(5), ...later]);
  }, 180_000);
});
