import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../core/logger.js';
import type { CommandExit, CommandRunner, RunningCommand } from '../../core/command-runner.js';
import { NFT_MONITOR, XTABLES_MONITOR, isRulesetLoss, watchRuleset } from '../../plugins/nftables/monitor.js';
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

// Lines as xtables-monitor 1.8.9 prints them: `flush ruleset` over tables of every family, and
// what comes before (tables, chains and rules added, upnpd's element changes: a NEWGEN line each).
const XTABLES_LOSSES = [
  ' EVENT: nft: DEL table: table upnpd inet flags 0 use 0 handle 1',
  ' EVENT: nft: DEL table: table t4 ip flags 0 use 0 handle 2',
  ' EVENT: nft: DEL table: table ta arp flags 0 use 0 handle 4',
  ' EVENT: nft: DEL table: table tn netdev flags 0 use 0 handle 6',
];
const XTABLES_OTHERS = [
  'NEWGEN: GENID=11 PID=31804 NAME=nft',
  ' EVENT: nft: NEW table: table nat ip flags 0 use 1 handle 3',
  ' EVENT: # nft: ip nat PREROUTING use 1 type nat hook prerouting prio -100 policy accept packets 0 bytes 0 flags 1',
  ' EVENT: -4 -t nat -A PREROUTING -p tcp -m tcp --dport 77 -j DNAT --to-destination 7.7.7.7',
  ' EVENT: -4 -t nat -D PREROUTING -p tcp -m tcp --dport 77 -j DNAT --to-destination 7.7.7.7',
  ' EVENT: # nft: inet upnpd c use 0',
  ' EVENT: ',
];

/** A runner whose every start is a fake monitor: its stdout and stderr are written by the test, and it ends when told. */
class FakeMonitors implements CommandRunner {
  readonly started: Array<{
    file: string;
    args: readonly string[];
    readStdout: boolean;
    stdout: PassThrough;
    stderr: PassThrough;
    killed: boolean;
    exit: (e: CommandExit) => void;
  }> = [];
  constructor(private readonly onStart: (file: string, args: readonly string[]) => CommandExit | undefined = () => undefined) {}

  run(): never {
    throw new Error('not used');
  }

  start(file: string, args: readonly string[], options?: { stdout?: boolean }): RunningCommand {
    const entry = {
      file,
      args,
      readStdout: options?.stdout === true,
      stdout: new PassThrough(),
      stderr: new PassThrough(),
      killed: false,
      exit: (_e: CommandExit) => {},
    };
    const exited = new Promise<CommandExit>((resolve) => (entry.exit = resolve));
    this.started.push(entry);
    const immediate = this.onStart(file, args);
    if (immediate) entry.exit(immediate);
    return {
      pid: this.started.length,
      stdin: new PassThrough(),
      stderr: entry.stderr,
      stdout: entry.stdout,
      exited,
      kill: () => ((entry.killed = true), entry.exit({ signal: 'SIGTERM' })),
    };
  }
}

function recordingLogger() {
  const lines: Array<{ level: 'info' | 'warn'; message: string }> = [];
  const record = (level: 'info' | 'warn') => ((_o: unknown, m?: string) => void lines.push({ level, message: m ?? '' })) as typeof silentLogger.warn;
  return { lines, logger: { ...silentLogger, info: record('info'), warn: record('warn') } };
}

async function waitFor(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
}

describe('the ruleset monitor', () => {
  it('nft monitor: calls a deleted table, chain, rule, set or map a possible loss, and element changes not', () => {
    expect(LOSSES.filter(isRulesetLoss)).toEqual(LOSSES);
    expect(OWN_CHANGES.filter(isRulesetLoss)).toEqual([]);
    expect(LOSSES.filter(NFT_MONITOR.isLoss)).toEqual(LOSSES);
  });

  it('xtables-monitor: calls a deleted table of any family a possible loss, and new tables, chains, rules and generations not', () => {
    expect(XTABLES_LOSSES.filter(XTABLES_MONITOR.isLoss)).toEqual(XTABLES_LOSSES);
    expect(XTABLES_OTHERS.filter(XTABLES_MONITOR.isLoss)).toEqual([]);
    expect(XTABLES_MONITOR.lostEvents?.('cannot receive from nfnetlink socket: No buffer space available\n')).toBe(true);
    expect(XTABLES_MONITOR.lostEvents?.('xtables-monitor: unrecognized option\n')).toBe(false);
  });

  it('runs `stdbuf -oL xtables-monitor --event` with its output read, reports losses line by line, and kills it when stopped', async () => {
    const runner = new FakeMonitors();
    let changes = 0;
    const stop = watchRuleset(runner, silentLogger, () => changes++);
    expect(runner.started.map((s) => [s.file, ...s.args, s.readStdout])).toEqual([['stdbuf', '-oL', 'xtables-monitor', '--event', true]]);
    runner.started[0]!.stdout.write([...XTABLES_OTHERS, ...XTABLES_LOSSES].join('\n') + '\n');
    await settle();
    expect(changes).toBe(XTABLES_LOSSES.length);
    stop();
    expect(runner.started[0]!.killed).toBe(true);
    await settle();
    expect(runner.started).toHaveLength(1);
  });

  it.each([
    ['stdbuf finds no xtables-monitor', { exitCode: 127 }],
    ['xtables-monitor cannot be executed', { exitCode: 126 }],
    ['no stdbuf', { error: 'spawn stdbuf ENOENT' }],
  ])('watches with `nft --echo monitor destroy tables` at once when xtables-monitor cannot run (%s), and says so', async (_why, exit: CommandExit) => {
    const runner = new FakeMonitors((file) => (file === 'stdbuf' ? exit : undefined));
    const { lines, logger } = recordingLogger();
    let changes = 0;
    const stop = watchRuleset(runner, logger, () => changes++);
    try {
      await settle();
      expect(runner.started.map((s) => [s.file, ...s.args])).toEqual([
        ['stdbuf', '-oL', 'xtables-monitor', '--event'],
        ['nft', '--echo', 'monitor', 'destroy', 'tables'],
      ]);
      expect(lines.map((l) => l.level)).toEqual(['info']);
      expect(lines[0]!.message).toMatch(/^nftables: cannot run xtables-monitor \(.+\); watching the ruleset with nft monitor$/);
      // Falling back at start is no restart: nothing was missed.
      expect(changes).toBe(0);
      runner.started[1]!.stdout.write([...OWN_CHANGES, ...LOSSES].join('\n') + '\n');
      await settle();
      expect(changes).toBe(LOSSES.length);
    } finally {
      stop();
    }
    expect(runner.started[1]!.killed).toBe(true);
  });

  it('falls back when starting throws, and where nothing can run, says so once and leaves it to the periodic check', async () => {
    const tried: string[] = [];
    const runner: CommandRunner = {
      run: () => Promise.reject(new Error('not used')),
      start: (file) => {
        tried.push(file);
        throw new Error(`spawn ${file} EACCES`);
      },
    };
    const { lines, logger } = recordingLogger();
    const stop = watchRuleset(runner, logger, () => {});
    await settle();
    stop();
    expect(tried).toEqual(['stdbuf', 'nft']);
    expect(lines).toEqual([
      { level: 'info', message: 'nftables: cannot run xtables-monitor (spawn stdbuf EACCES); watching the ruleset with nft monitor' },
      { level: 'warn', message: 'nftables: cannot run nft monitor: spawn nft EACCES; firewall changes are noticed by the periodic check only' },
    ]);
  });

  it('keeps one monitor running; when it ends it warns, starts it again, and reports a possible loss once the new one runs', async () => {
    const runner = new FakeMonitors();
    const { lines, logger } = recordingLogger();
    let changes = 0;
    const stop = watchRuleset(runner, logger, () => changes++, [NFT_MONITOR]);
    try {
      await new Promise((r) => setTimeout(r, 300));
      expect(runner.started).toHaveLength(1);
      expect(runner.started[0]!.killed).toBe(false);
      runner.started[0]!.exit({ exitCode: 1 }); // nft died
      await settle();
      expect(lines).toEqual([
        { level: 'warn', message: 'nftables: nft monitor ended (exit 1); firewall changes are noticed by the periodic check until it runs again in 2000 ms' },
      ]);
      expect(changes).toBe(0);
      await waitFor(() => runner.started.length >= 2);
      expect(runner.started).toHaveLength(2);
      expect(changes).toBe(1);
    } finally {
      stop();
    }
    expect(runner.started[1]!.killed).toBe(true);
  });

  it('xtables-monitor that lost events (a transaction too large for its socket buffer): told at info, started again, and a check is asked for', async () => {
    const runner = new FakeMonitors();
    const { lines, logger } = recordingLogger();
    let changes = 0;
    const stop = watchRuleset(runner, logger, () => changes++);
    try {
      runner.started[0]!.stderr.write('cannot receive from nfnetlink socket: No buffer space available\n');
      await settle();
      runner.started[0]!.exit({ exitCode: 1 });
      await settle();
      expect(lines).toEqual([
        {
          level: 'info',
          message:
            'nftables: xtables-monitor lost events (a transaction too large for its socket buffer) and ended; it runs again in 2000 ms, and the firewall is checked then',
        },
      ]);
      await waitFor(() => runner.started.length >= 2);
      expect(runner.started.map((s) => s.args[1])).toEqual(['xtables-monitor', 'xtables-monitor']);
      expect(changes).toBe(1);
    } finally {
      stop();
    }
  });
});
