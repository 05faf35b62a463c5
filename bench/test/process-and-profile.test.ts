import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import {
  cpuSeconds,
  medianResidentBytes,
  medianResidentSizes,
  parentPid,
  parseCpuTicks,
  parseVmRss,
  processGone,
  processTree,
  residentBytes,
  vmRssOrZero,
} from '../process-stats.js';
import { parseCommandLine } from '../profile.js';

describe('process memory', () => {
  it('reads VmRSS in bytes', () => {
    expect(parseVmRss('Name:\tnode\nVmPeak:\t  900 kB\nVmRSS:\t   84212 kB\nRssAnon:\t 1 kB\n')).toBe(84212 * 1024);
    expect(() => parseVmRss('Name:\tkthreadd\n')).toThrow(/no VmRSS/);
  });

  it("reads this process's own RSS", () => {
    expect(residentBytes(process.pid)).toBeGreaterThan(1024 * 1024);
  });

  it('counts a child that has just exited (a zombie: no VmRSS line) as holding nothing, instead of failing the sample', () => {
    expect(vmRssOrZero('Name:\tnft\nState:\tZ (zombie)\nPid:\t4242\n')).toBe(0);
    expect(vmRssOrZero('Name:\tnode\nVmRSS:\t   84212 kB\n')).toBe(84212 * 1024);
  });

  it('takes the median of several samples a second apart', async () => {
    const started = Date.now();
    const median = await medianResidentBytes(process.pid);
    expect(Date.now() - started).toBeGreaterThanOrEqual(3_900);
    expect(median).toBeGreaterThan(1024 * 1024);
  }, 20_000);

  it("adds user, system and reaped children's CPU ticks, whatever the command name holds", () => {
    expect(parseCpuTicks('1234 (my (odd) name) S 1 2 3 4 5 6 7 8 9 10 100 200 300 400 20 0 1 0 99')).toBe(1000);
    expect(cpuSeconds(process.pid)).toBeGreaterThan(0);
  });

  it('counts the processes a daemon runs: the tree holds its live children, and their RSS adds to its own', async () => {
    expect(parentPid('1234 (my (odd) name) S 77 2 3')).toBe(77);
    const alone = processTree(process.pid);
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      await once(child, 'spawn');
      expect(processTree(process.pid)).toEqual(expect.arrayContaining([process.pid, child.pid]));
      expect(processTree(process.pid).length).toBe(alone.length + 1);
      expect(residentBytes(process.pid)).toBeGreaterThan(residentBytes(child.pid!));
    } finally {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
  });

  it("tells the daemon's own process from the helpers it runs, and names each of them", async () => {
    const child = spawn('sleep', ['31'], { stdio: 'ignore' });
    try {
      await once(child, 'spawn');
      const sizes = await medianResidentSizes(process.pid);
      const childBytes = residentBytes(child.pid!);
      expect(childBytes).toBeGreaterThan(0);
      expect(sizes.main).toBeGreaterThan(1024 * 1024);
      // The child's share (a few hundred kB for sleep) is in the total and not in the main process's.
      expect(sizes.total - sizes.main).toBeGreaterThanOrEqual(childBytes * 0.5);
      expect(sizes.parts).toMatch(/^\d+\.\d \S+ \(anon \d+\.\d, file \d+\.\d\) \+ .*\d+\.\d sleep 31\b/);
    } finally {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
  }, 20_000);

  it('tells a running process from one that does not exist', () => {
    expect(processGone(process.pid)).toBe(false);
    // Above the kernel's pid_max (at most 2^22), so never a live process.
    expect(processGone(2 ** 23)).toBe(true);
  });
});

describe('bench command line', () => {
  it('runs the full profile by default and the quick one with --quick', () => {
    expect(parseCommandLine([])).toMatchObject({ help: false, profile: { name: 'full', repeats: 3, budgetMs: 55 * 60_000, comparisons: 'all' } });
    expect(parseCommandLine(['--quick'])).toMatchObject({ help: false, profile: { name: 'quick', repeats: 1, budgetMs: 6 * 60_000, comparisons: 'all' } });
  });

  it('leaves the iptables comparison out with --no-iptables', () => {
    expect(parseCommandLine(['--quick', '--no-iptables'])).toMatchObject({ profile: { name: 'quick', comparisons: 'nftables' } });
    expect(parseCommandLine(['--quick', '--only-iptables'])).toMatchObject({ profile: { name: 'quick', comparisons: 'iptables' } });
    expect(() => parseCommandLine(['--no-iptables', '--only-iptables'])).toThrow(/exclude each other/);
  });

  it('takes --repeats within bounds', () => {
    expect(parseCommandLine(['--quick', '--repeats', '2'])).toMatchObject({ profile: { name: 'quick', repeats: 2 } });
    expect(() => parseCommandLine(['--repeats', '0'])).toThrow(/--repeats/);
    expect(() => parseCommandLine(['--repeats', 'many'])).toThrow(/--repeats/);
  });

  it('refuses unknown flags and answers --help', () => {
    expect(() => parseCommandLine(['--fast'])).toThrow();
    expect(parseCommandLine(['--help'])).toEqual({ help: true });
  });
});
