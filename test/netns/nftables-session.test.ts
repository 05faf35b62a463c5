import 'reflect-metadata';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { silentLogger } from '../../core/logger.js';
import type { RuleSpec } from '../../core/mapping/types.js';
import { NftablesBackend } from '../../plugins/nftables/backend.js';
import { nftablesOptionsSchema } from '../../plugins/nftables/options.js';
import { DEFAULT_SESSION_LIMITS, NFT_SESSION_ENV, NftSession } from '../../plugins/nftables/session.js';
import { mapping } from '../../plugins/nftables/testing/golden-scripts.js';
import { describeNetns, TestNamespace } from './netns.js';

const PORTS = `table inet t {
	set ports { type inet_service; }
}
`;

const portMappings = (count: number, from = 10_000): RuleSpec[] => Array.from({ length: count }, (_, i) => mapping('TCP', from + i, '192.168.77.10', from + i));

/** The command line of a process, its arguments joined by spaces. */
describeNetns('the nft -i session against a real kernel', ['nft', 'stdbuf', 'xtables-monitor'], () => {
  let ns: TestNamespace;
  const nft = (args: string[], input?: string) => ns.exec('nft', args, { input });
  const ports = async () => (await nft(['list', 'set', 'inet', 't', 'ports'])).replace(/\s+/g, ' ');
  /** The `nft -i` sessions in this namespace (other tests run nft in namespaces of their own). */
  const nftPids = () => ns.pidsRunning('nft -i');
  /** The ruleset monitor: stdbuf has exec'd xtables-monitor. */
  const monitorPids = () => ns.pidsRunning('xtables-monitor --event');
  const sessionIn = (limits = {}) => new NftSession(() => ns.runner().start('nft', ['-i'], { env: NFT_SESSION_ENV }), { ...DEFAULT_SESSION_LIMITS, ...limits });

  beforeEach(async () => {
    ns = await TestNamespace.create('nftsess');
  });
  afterEach(async () => {
    await ns?.destroy();
  });

  it('commits a transaction whole or not at all, and tells which one failed', async () => {
    await nft(['-f', '-'], PORTS);
    const session = sessionIn();
    try {
      expect(await session.run('add element inet t ports { 80 }\n')).toEqual({ ok: true, output: '' });
      const failed = await session.run('add element inet t ports { 81 }\ndelete element inet t ports { 9 }\n');
      expect(failed.ok).toBe(false);
      expect(failed.output).toMatch(/^Error: .*No such file or directory\nadd element inet t ports \{ 81 \}; delete element inet t ports \{ 9 \}\n/);
      expect(await session.run('add element inet t ports { 82 }\n')).toEqual({ ok: true, output: '' });
      expect(await ports()).toContain('elements = { 80, 82 }');
    } finally {
      await session.close();
    }
  });

  it('replaces its nft after maxTransactions: each change lands, and the old process has exited', async () => {
    await nft(['-f', '-'], PORTS);
    const session = sessionIn({ maxTransactions: 3 });
    const pids = new Set<number>();
    try {
      for (let port = 1; port <= 10; port += 1) {
        expect((await session.run(`add element inet t ports { ${port} }\n`)).ok).toBe(true);
        if (session.pid) pids.add(session.pid);
      }
      expect(pids.size).toBe(4);
      expect(await nftPids()).toEqual([session.pid]);
      expect(await ports()).toContain('elements = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }');
    } finally {
      await session.close();
    }
    expect(await nftPids()).toEqual([]);
  });

  it('the backend keeps one nft for its change sets, starts another after that one is killed, and ends it at shutdown; its one ruleset monitor (xtables-monitor) as well', async () => {
    const backend = new NftablesBackend(nftablesOptionsSchema.parse({ wanInterface: 'wan0' }), ns.runner(), silentLogger, undefined);
    await backend.probe();
    await backend.init();
    await expect.poll(monitorPids, { timeout: 5_000 }).toHaveLength(1);
    const [first, second, third] = portMappings(3);
    await backend.apply({ remove: [], add: [first!] });
    const pid = backend.sessionPid;
    await backend.apply({ remove: [], add: [second!] });
    expect(backend.sessionPid).toBe(pid);
    expect(await nftPids()).toEqual([pid]);

    await ns.exec('kill', ['-9', String(pid)]);
    await expect.poll(nftPids, { timeout: 5_000 }).toEqual([]);
    await backend.apply({ remove: [first!], add: [third!] });
    expect(backend.sessionPid).not.toBe(pid);
    expect((await backend.list()).map((r) => r.externalPort).sort()).toEqual([10_001, 10_002]);

    expect(await monitorPids()).toHaveLength(1);
    await backend.shutdown();
    expect(await nftPids()).toEqual([]);
    await expect.poll(monitorPids, { timeout: 5_000 }).toEqual([]);
  });

  it('leaves no history file in the home directory, where a plain nft -i keeps every line it ran', async () => {
    const home = mkdtempSync(join(tmpdir(), 'upnpd-home-'));
    const homeBefore = process.env.HOME;
    process.env.HOME = home; // what the backend's nft would inherit
    try {
      // The control: nft -i, as anyone runs it, writes ~/.nft.history at exit.
      await ns.exec('nft', ['-i'], { input: 'add table inet control\n' });
      expect(readdirSync(home)).toEqual(['.nft.history']);
      rmSync(join(home, '.nft.history'));

      const backend = new NftablesBackend(nftablesOptionsSchema.parse({ wanInterface: 'wan0' }), ns.runner(), silentLogger, undefined);
      await backend.probe();
      await backend.init();
      await backend.apply({ remove: [], add: portMappings(2) });
      await backend.shutdown();
      expect(readdirSync(home)).toEqual([]);
    } finally {
      process.env.HOME = homeBefore;
      rmSync(home, { recursive: true, force: true });
    }
  });

  it('applies 5000 mappings as one transaction line, and removes them again', async () => {
    const backend = new NftablesBackend(nftablesOptionsSchema.parse({ wanInterface: 'wan0' }), ns.runner(), silentLogger, undefined);
    await backend.probe();
    await backend.init();
    const many = portMappings(5000);
    await backend.apply({ remove: [], add: many });
    expect(await backend.list()).toHaveLength(5000);
    await backend.apply({ remove: many, add: [] });
    expect(await backend.list()).toEqual([]);
    await backend.shutdown();
  });
});
