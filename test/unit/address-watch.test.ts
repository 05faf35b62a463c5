import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { OsNetworkInfo } from '../../core/net/network-info.js';
import { childProcesses } from '../support/processes.js';
import { describeRequiring, missingPrograms } from '../support/requirements.js';

/** This process's children running `ip -o monitor label address neigh` (nothing in the network is changed). */
const addressMonitors = () => childProcesses(process.pid, 'ip -o monitor label address neigh').length;

/** Whether `condition` holds within 10 s (processes start slowly on a loaded machine), checked every 20 ms. */
async function eventually(condition: () => boolean): Promise<boolean> {
  for (let i = 0; i < 500 && !condition(); i += 1) await new Promise((resolve) => setTimeout(resolve, 20));
  return condition();
}

describeRequiring('address events', missingPrograms(['ip']), () => {
  it('runs one ip monitor however many watch addresses or neighbours, until the last stops watching', async () => {
    const network = new OsNetworkInfo();
    const stopWan = network.watchAddresses(() => {});
    const stopLan = network.watchAddresses(() => {});
    const stopNeighbours = network.watchNeighbours(() => {});
    expect(await eventually(() => addressMonitors() === 1)).toBe(true);
    stopWan();
    stopNeighbours();
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(addressMonitors()).toBe(1);
    stopLan();
    expect(await eventually(() => addressMonitors() === 0)).toBe(true);
    const again = network.watchAddresses(() => {});
    expect(await eventually(() => addressMonitors() === 1)).toBe(true);
    again();
    expect(await eventually(() => addressMonitors() === 0)).toBe(true);
  });
});

describe('an ip monitor that ends unasked', () => {
  let dir: string;
  let savedPath: string | undefined;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'upnpd-fake-ip-'));
    // A stand-in `ip`: its first run reports a neighbour and dies; later runs report an address and stay.
    writeFileSync(
      join(dir, 'ip'),
      [
        '#!/bin/sh',
        `runs=$(cat "${dir}/runs" 2>/dev/null || echo 0); runs=$((runs + 1)); echo $runs > "${dir}/runs"`,
        'if [ $runs -eq 1 ]; then echo "[NEIGH]2001:db8::10 dev lan0 lladdr 02:00:00:00:00:0a REACHABLE"; sleep 0.2; exit 1; fi',
        'echo "[ADDR]2: lan0    inet 192.168.1.1/24 scope global lan0"',
        'exec sleep 30',
      ].join('\n'),
      { mode: 0o755 },
    );
    savedPath = process.env.PATH;
    process.env.PATH = `${dir}:${savedPath ?? ''}`;
  });
  afterEach(() => {
    process.env.PATH = savedPath;
    rmSync(dir, { recursive: true, force: true });
  });
  const runs = () => Number(readFileSync(join(dir, 'runs'), 'utf8'));

  it('is started again after a delay: neighbour watchers hear lost, then resumed; address watchers are told; the admin reads why', async () => {
    const reports: string[] = [];
    const network = new OsNetworkInfo({ delaysMs: [100], stableMs: 60_000, settleMs: 50, report: (message, level) => reports.push(`${level}: ${message}`) });
    const neighbourEvents: string[] = [];
    let addressChanges = 0;
    const stopNeighbours = network.watchNeighbours((event) => neighbourEvents.push(event.kind === 'neighbour' ? event.address : event.kind));
    const stopAddresses = network.watchAddresses(() => addressChanges++);
    try {
      expect(await eventually(() => neighbourEvents.includes('resumed'))).toBe(true);
      expect(neighbourEvents).toEqual(['2001:db8::10', 'lost', 'resumed']);
      expect(runs()).toBe(2);
      // The new monitor's own line, and the notice that something may have changed while none ran.
      expect(await eventually(() => addressChanges >= 2)).toBe(true);
      expect(reports).toEqual([
        expect.stringMatching(/^warn: ip monitor ended \(exit code 1\): address and neighbour events stop until it runs again; retrying in 0.1 s$/),
        'info: ip monitor runs again: address and neighbour events are back',
      ]);
    } finally {
      stopNeighbours();
      stopAddresses();
    }
    // Stopped on purpose: not started again.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(runs()).toBe(2);
    expect(neighbourEvents.at(-1)).toBe('resumed');
  });

  it('that cannot run at all is retried at the longest delay, reported once', async () => {
    writeFileSync(join(dir, 'ip'), `#!/bin/sh\nruns=$(cat "${dir}/runs" 2>/dev/null || echo 0); echo $((runs + 1)) > "${dir}/runs"\nexit 2\n`, { mode: 0o755 });
    const reports: string[] = [];
    const network = new OsNetworkInfo({ delaysMs: [20, 150], stableMs: 60_000, settleMs: 100, report: (message) => reports.push(message) });
    const started = performance.now();
    const stop = network.watchNeighbours(() => {});
    try {
      expect(await eventually(() => existsSync(join(dir, 'runs')) && runs() >= 4)).toBe(true);
      const elapsedMs = performance.now() - started;
      // Runs at 0, 20 ms, then every 150 ms at most: not one every 20 ms.
      expect(runs()).toBeLessThanOrEqual(3 + Math.floor(elapsedMs / 150));
      expect(elapsedMs).toBeGreaterThanOrEqual(20 + 150 + 150);
      expect(reports).toHaveLength(1);
    } finally {
      stop();
    }
  });
});
