import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../core/logger.js';
import type { CommandExit, CommandRunner, RunningCommand } from '../../core/command-runner.js';
import { isRulesetLoss, watchRuleset } from '../../plugins/nftables/monitor.js';
import { settle } from '../support/fakes.js';

// Lines as nft 1.0.6 prints them for an admin's `flush ruleset`, a reload of `table inet filter`,
// and upnpd's own change sets.
const LOSSES = [
  'delete table inet upnpd',
  'delete chain inet filter forward',
  'delete rule inet filter forward handle 4',
  'delete set inet filter upnpd-accept',
  'delete map inet upnpd dnat-any',
  'flush ruleset',
];
const OWN_CHANGES = [
  'add element inet upnpd dnat-any { tcp . 80 : 192.168.77.10 . 80 }',
  'delete element inet upnpd dnat-any { tcp . 80 : 192.168.77.10 . 80 }',
  '# new generation 6 by process 26313 (nft)',
  'add table inet filter',
];

describe('nft monitor', () => {
  it('calls a deleted table, chain, rule, set or map a possible loss, and element changes not', () => {
    expect(LOSSES.filter(isRulesetLoss)).toEqual(LOSSES);
    expect(OWN_CHANGES.filter(isRulesetLoss)).toEqual([]);
  });

  it('runs `nft monitor destroy tables` with its output read, reports losses line by line, and kills it when stopped', async () => {
    const stdout = new PassThrough();
    let killed = false;
    let exit!: (e: CommandExit) => void;
    const started: string[][] = [];
    const runner: CommandRunner = {
      run: () => Promise.reject(new Error('not used')),
      start: (file, args, options): RunningCommand => {
        started.push([file, ...args, options?.stdout ? '(stdout)' : '']);
        return { pid: 1, stdin: new PassThrough(), stderr: new PassThrough(), stdout, exited: new Promise((r) => (exit = r)), kill: () => (killed = true) };
      },
    };
    let changes = 0;
    const stop = watchRuleset(runner, silentLogger, () => changes++);
    expect(started).toEqual([['nft', '--echo', 'monitor', 'destroy', 'tables', '(stdout)']]);
    stdout.write([...OWN_CHANGES, ...LOSSES].join('\n') + '\n');
    await settle();
    expect(changes).toBe(LOSSES.length);
    stop();
    expect(killed).toBe(true);
    exit({ signal: 'SIGKILL' });
    await settle();
    expect(started).toHaveLength(1);
  });

  it('keeps one nft monitor running (a new one would load every element into its cache), and starts it again, with a warning, when it ends', async () => {
    const children: Array<{ killed: boolean; exit: (e: CommandExit) => void }> = [];
    const runner: CommandRunner = {
      run: () => Promise.reject(new Error('not used')),
      start: (): RunningCommand => {
        const entry = { killed: false, exit: (_e: CommandExit) => {} };
        const exited = new Promise<CommandExit>((r) => (entry.exit = r));
        children.push(entry);
        return {
          pid: children.length,
          stdin: new PassThrough(),
          stderr: new PassThrough(),
          stdout: new PassThrough(),
          exited,
          kill: () => ((entry.killed = true), entry.exit({ signal: 'SIGTERM' })),
        };
      },
    };
    const warnings: string[] = [];
    const logger = { ...silentLogger, warn: ((_o: unknown, m?: string) => void warnings.push(m ?? '')) as typeof silentLogger.warn };
    const stop = watchRuleset(runner, logger, () => {});
    try {
      await new Promise((r) => setTimeout(r, 300));
      expect(children).toHaveLength(1);
      expect(children[0]!.killed).toBe(false);
      children[0]!.exit({ exitCode: 1 }); // nft died
      await settle();
      expect(warnings).toEqual(['nftables: nft monitor ended (exit 1); firewall changes are noticed by the periodic check until it runs again in 2000 ms']);
      const deadline = Date.now() + 5_000;
      while (children.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(children).toHaveLength(2);
    } finally {
      stop();
    }
    expect(children[1]!.killed).toBe(true);
  });
});
