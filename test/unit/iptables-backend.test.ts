import 'reflect-metadata';
import { describe, expect, it } from 'vitest';
import type { CommandExit, CommandResult, CommandRunner, RunningCommand, StartOptions } from '../../core/command-runner.js';
import { BackendError } from '../../core/errors.js';
import { silentLogger } from '../../core/logger.js';
import type { RuleSpec } from '../../core/mapping/types.js';
import { IptablesBackend, iptables } from '../../plugins/iptables/index.js';
import { backendFromSpec } from 'upnpd/testing';
import { FakeIptablesRestore } from '../support/fake-iptables-restore.js';
import {
  buildInitScript,
  buildRestoreScript,
  buildResyncScript,
  iptablesOptionsSchema,
  parseSave,
  shardsOfRules,
  type IptablesOptions,
} from '../../plugins/iptables/rules.js';

interface Call {
  readonly file: string;
  readonly args: readonly string[];
  readonly input: string | undefined;
}

const ruleOptions = { ...iptablesOptionsSchema.parse({}), wanInterface: 'wan0' };

/** What iptables-save prints for `table` right after init, plus `rules` (lines of a restore script). */
function savedAfterInit(table: string, ...rules: string[]): string {
  const init = buildInitScript(parseSave(''), ruleOptions).replace(/^-I /gm, '-A ');
  const section = init.split('COMMIT\n').find((s) => s.startsWith(`*${table}`))!;
  return `${section}${rules.map((r) => r.replace(/^-I /, '-A ')).join('\n')}${rules.length ? '\n' : ''}COMMIT\n`;
}

/** A CommandRunner that records calls and answers with `respond` (default: success; iptables-save shows upnpd's chains, empty). */
class ScriptedRunner implements CommandRunner {
  readonly calls: Call[] = [];
  /** While false, every call succeeds and is not recorded (setting a backend up). */
  armed = true;
  constructor(private readonly respond: (call: Call) => Partial<CommandResult> | Error = () => ({})) {}
  run(file: string, args: readonly string[], options: { input?: string } = {}): Promise<CommandResult> {
    const call = { file, args, input: options.input };
    if (this.armed) this.calls.push(call);
    const answer = this.armed ? this.respond(call) : {};
    if (answer instanceof Error) return Promise.reject(answer);
    const stdout = file.endsWith('-save') ? savedAfterInit(args[args.indexOf('-t') + 1]!) : '';
    return Promise.resolve({ exitCode: 0, stdout, stderr: '', ...answer });
  }
  start(file: string, args: readonly string[], options?: StartOptions): RunningCommand {
    throw new Error(`no long-lived command here (${[file, ...args].join(' ')}, ${JSON.stringify(options)})`);
  }
  restores(): string[] {
    return this.calls.filter((c) => c.file.endsWith('-restore')).map((c) => c.input!);
  }
}

function backendWith(runner: CommandRunner, options: Partial<IptablesOptions> = {}): IptablesBackend {
  return new IptablesBackend({ ...iptablesOptionsSchema.parse({}), wanInterface: 'wan0', ...options }, runner, silentLogger, undefined);
}

const rule = (externalPort: number): RuleSpec => ({
  remoteHost: '',
  externalPort,
  protocol: 'TCP',
  internalClient: '192.168.77.10',
  internalPort: externalPort,
});

/** The shard chains with the mapping on port 80 installed (its leaf holds 80 to 127). */
const WITH_80 = shardsOfRules([rule(80)], ruleOptions);

/** A backend that has installed the mapping on port 80, so it knows its shard chains; `runner` records what comes after. */
async function backendWith80(runner: ScriptedRunner, options: Partial<IptablesOptions> = {}): Promise<IptablesBackend> {
  const backend = backendWith(runner, options);
  runner.armed = false;
  await backend.apply({ remove: [], add: [rule(80)] });
  runner.armed = true;
  return backend;
}

const failsRestores =
  (answer: Partial<CommandResult>) =>
  (call: Call): Partial<CommandResult> =>
    call.file.endsWith('-restore') ? answer : {};

describe('IptablesBackend.apply', () => {
  it('applies a change set with one iptables-restore --noflush run that waits for the xtables lock, once it knows its shard chains', async () => {
    const runner = new ScriptedRunner();
    const backend = await backendWith80(runner);
    const changes = { remove: [rule(80)], add: [rule(81)] };
    await backend.apply(changes);
    expect(runner.calls).toEqual([
      { file: 'iptables-restore', args: ['-w', '10', '--noflush'], input: buildRestoreScript(changes, ruleOptions, WITH_80).script },
    ]);
  });

  it('reads its shard chains from iptables-save before its first change, and after a failed one', async () => {
    let failing = true;
    const runner = new ScriptedRunner((call) =>
      call.file === 'iptables-restore' && failing ? { exitCode: 1, stderr: 'iptables-restore: line 2 failed\n' } : {},
    );
    const backend = backendWith(runner);
    await expect(backend.apply({ remove: [], add: [rule(80)] })).rejects.toThrow(BackendError);
    failing = false;
    await backend.apply({ remove: [], add: [rule(80)] });
    await backend.apply({ remove: [], add: [rule(81)] });
    expect(runner.calls.map((c) => c.file)).toEqual([
      ...['iptables-save', 'iptables-save', 'iptables-restore'],
      ...['iptables-save', 'iptables-save', 'iptables-restore'],
      'iptables-restore',
    ]);
  });

  it('runs the legacy programs for the legacy flavour', async () => {
    const runner = new ScriptedRunner();
    await backendWith(runner, { flavour: 'iptables-legacy' }).apply({ remove: [], add: [rule(80)] });
    expect(runner.calls.map((c) => c.file)).toEqual(['iptables-legacy-save', 'iptables-legacy-save', 'iptables-legacy-restore']);
  });

  it('does nothing for an empty change set', async () => {
    const runner = new ScriptedRunner();
    await backendWith(runner).apply({ remove: [], add: [] });
    expect(runner.calls).toEqual([]);
  });

  it('undoes the committed nat part when the filter part fails, and reports the failing line', async () => {
    const changes = { remove: [rule(80)], add: [rule(81)] };
    // 1 *nat, 2 -D, 3 -A, 4 COMMIT, 5 *filter, 6 -D, 7 -A, 8 COMMIT
    let restores = 0;
    const runner = new ScriptedRunner(() =>
      restores++ === 0 ? { exitCode: 1, stderr: 'iptables-restore: line 6 failed: Bad rule (does a matching rule exist in that chain?).\n' } : {},
    );
    const error = await (await backendWith80(runner)).apply(changes).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BackendError);
    expect((error as Error).message).toMatch(/line 6 failed.*\[line 6: -D UPNPD-FORWARD.t001 .*--dport 80 /);
    expect(runner.restores()).toEqual([
      buildRestoreScript(changes, ruleOptions, WITH_80).script,
      buildRestoreScript({ remove: [rule(81)], add: [rule(80)] }, { ...ruleOptions, insertForwardRules: false }, WITH_80).script,
    ]);
  });

  it('undoes nothing when the nat part failed (iptables-restore committed nothing)', async () => {
    const runner = new ScriptedRunner(
      failsRestores({
        exitCode: 2,
        stderr: "iptables-restore v1.8.9 (nf_tables): interface name `x' must be shorter than IFNAMSIZ (15)\nError occurred at line: 2\n",
      }),
    );
    await expect(backendWith(runner).apply({ remove: [], add: [rule(80)] })).rejects.toThrow(/Error occurred at line: 2/);
    expect(runner.restores()).toHaveLength(1);
  });

  it('undoes nothing when there is no filter part', async () => {
    const runner = new ScriptedRunner(failsRestores({ exitCode: 1, stderr: 'iptables-restore: line 3 failed\n' }));
    await expect(backendWith(runner, { insertForwardRules: false }).apply({ remove: [], add: [rule(80)] })).rejects.toThrow(BackendError);
    expect(runner.restores()).toHaveLength(1);
  });

  it('without a line number, reads the nat table back to decide whether to undo', async () => {
    const natOnly = { ...ruleOptions, insertForwardRules: false };
    const natLines = (script: string) => script.split('\n').filter((line) => line.startsWith('-'));
    const committedNat = savedAfterInit(
      'nat',
      ...natLines(buildRestoreScript({ remove: [], add: [rule(80)] }, natOnly).script),
      ...natLines(buildRestoreScript({ remove: [], add: [rule(81)] }, natOnly, WITH_80).script),
    );
    let restores = 0;
    const runner = new ScriptedRunner((call) => {
      if (call.file === 'iptables-save') return call.args.includes('nat') ? { stdout: committedNat } : {};
      return restores++ === 0 ? { exitCode: 4, stderr: 'Another app is currently holding the xtables lock.\n' } : {};
    });
    await expect((await backendWith80(runner)).apply({ remove: [], add: [rule(81)] })).rejects.toThrow(/xtables lock/);
    expect(runner.restores()[1]).toBe(buildRestoreScript({ remove: [rule(81)], add: [] }, natOnly, shardsOfRules([rule(80), rule(81)], ruleOptions)).script);

    const untouched = new ScriptedRunner(failsRestores({ exitCode: 4, stderr: 'Another app is currently holding the xtables lock.\n' }));
    await expect((await backendWith80(untouched)).apply({ remove: [], add: [rule(81)] })).rejects.toThrow(/xtables lock/);
    expect(untouched.restores()).toHaveLength(1);
  });

  it('after a firewall reload, check names what is missing and resync puts it all back in one iptables-restore run', async () => {
    const reloaded = (table: string) => `*${table}\n:${table === 'nat' ? 'PREROUTING' : 'FORWARD'} ACCEPT [0:0]\nCOMMIT\n`;
    const runner = new ScriptedRunner((call) => (call.file === 'iptables-save' ? { stdout: reloaded(call.args[1]!) } : {}));
    const backend = backendWith(runner);
    expect((await backend.check([rule(80)])).missing).toEqual([
      'chain UPNPD-PREROUTING (nat)',
      'the jump from PREROUTING to UPNPD-PREROUTING (nat)',
      'chain UPNPD-FORWARD (filter)',
      'the jump from FORWARD to UPNPD-FORWARD (filter)',
      'the rules of 1 of 1 mapping(s)',
    ]);
    await backend.resync([rule(80)]);
    expect(runner.restores()).toEqual([buildResyncScript(parseSave(''), [rule(80)], ruleOptions)]);
  });

  it('check gives the same answer for the same rules under a new timestamp and new counters, and a new one once the rules or what is expected change', async () => {
    const stamped = (table: string, stamp: string, counters: string) =>
      `# Generated by iptables-save v1.8.9 on ${stamp}\n${savedAfterInit(table).replace(/\[0:0\]/g, counters)}# Completed on ${stamp}\n`;
    let listing = (table: string) => stamped(table, 'Mon Dec  7 02:00:00 2026', '[0:0]');
    const runner = new ScriptedRunner((call) => (call.file === 'iptables-save' ? { stdout: listing(call.args[1]!) } : {}));
    const backend = backendWith(runner);
    const rulesMissing = ['the rules of 1 of 1 mapping(s)'];
    expect((await backend.check([rule(80)])).missing).toEqual(rulesMissing);

    listing = (table) => stamped(table, 'Mon Dec  7 02:00:02 2026', '[1234:56789]');
    expect((await backend.check([rule(80)])).missing).toEqual(rulesMissing);
    expect((await backend.check([])).missing).toEqual([]);
    expect((await backend.check([rule(80), rule(81)])).missing).toEqual(['the rules of 2 of 2 mapping(s)']);

    listing = (table) => `*${table}\n:${table === 'nat' ? 'PREROUTING' : 'FORWARD'} ACCEPT [0:0]\nCOMMIT\n`;
    expect((await backend.check([rule(80)])).missing).toEqual([
      'chain UPNPD-PREROUTING (nat)',
      'the jump from PREROUTING to UPNPD-PREROUTING (nat)',
      'chain UPNPD-FORWARD (filter)',
      'the jump from FORWARD to UPNPD-FORWARD (filter)',
      ...rulesMissing,
    ]);
  });

  it('says so when the undo fails too', async () => {
    // 1 *nat, 2 -A, 3 COMMIT, 4 *filter, 5 -A, 6 COMMIT
    const runner = new ScriptedRunner(failsRestores({ exitCode: 1, stderr: 'iptables-restore: line 5 failed\n' }));
    await expect((await backendWith80(runner)).apply({ remove: [], add: [rule(81)] })).rejects.toThrow(
      /applying the change set.*; iptables-restore failed undoing the nat part/,
    );
  });
});

/** A ScriptedRunner whose `-V` names `variant`, and whose long-lived commands are fake iptables-restore sessions (or fail to start). */
class SessionRunner extends ScriptedRunner {
  readonly sessions: { file: string; args: readonly string[]; options?: StartOptions; restore: FakeIptablesRestore }[] = [];
  constructor(
    variant: 'nf_tables' | 'legacy',
    private readonly startFails = false,
  ) {
    super((call) => (call.args[0] === '-V' ? { stdout: `${call.file} v1.8.9 (${variant})\n` } : {}));
  }
  override start(file: string, args: readonly string[], options?: StartOptions): RunningCommand {
    const restore = new FakeIptablesRestore(400 + this.sessions.length);
    this.sessions.push({ file, args, options, restore });
    if (!this.startFails) return restore;
    // As execa reports a program it could not start: no process reads the input.
    restore.stdin.destroy();
    const failed: Promise<CommandExit> = Promise.resolve({ error: 'spawnSync stdbuf ENOENT' });
    return Object.assign(restore, { exited: failed });
  }
  oneShotRestores(): number {
    return this.calls.filter((c) => c.file.endsWith('-restore') && c.args[0] !== '-V').length;
  }
}

describe('IptablesBackend change sets through one long-lived iptables-restore', () => {
  it('under iptables-nft: one `stdbuf -oL iptables-restore --noflush` takes every change set, and ends at shutdown', async () => {
    const runner = new SessionRunner('nf_tables');
    const backend = backendWith(runner);
    await backend.probe();
    await backend.init();
    await backend.apply({ remove: [], add: [rule(80)] });
    await backend.apply({ remove: [rule(80)], add: [rule(81)] });
    expect(runner.oneShotRestores()).toBe(0);
    expect(runner.sessions.map(({ file, args, options }) => ({ file, args, options }))).toEqual([
      { file: 'stdbuf', args: ['-oL', 'iptables-restore', '-w', '10', '--noflush'], options: { stdout: true } },
    ]);
    const { restore } = runner.sessions[0]!;
    expect(restore.committed.filter((l) => / -j (DNAT|ACCEPT)\b/.test(l))).toEqual([
      expect.stringMatching(/^-A UPNPD-PREROUTING\.t001 .*--dport 80 /),
      expect.stringMatching(/^-A UPNPD-FORWARD\.t001 .*--dport 80 /),
      expect.stringMatching(/^-D UPNPD-PREROUTING\.t001 .*--dport 80 /),
      expect.stringMatching(/^-A UPNPD-PREROUTING\.t001 .*--dport 81 /),
      expect.stringMatching(/^-D UPNPD-FORWARD\.t001 .*--dport 80 /),
      expect.stringMatching(/^-A UPNPD-FORWARD\.t001 .*--dport 81 /),
    ]);
    await backend.shutdown();
    expect(await restore.exited).toEqual({ exitCode: 0 });
  });

  it('probed again, it ends the session of the previous probe', async () => {
    const runner = new SessionRunner('nf_tables');
    const backend = backendWith(runner);
    await backend.probe();
    await backend.apply({ remove: [], add: [rule(80)] });
    await backend.probe();
    // At once, not when its idle time (10 s) runs out.
    const stillRunning = new Promise((resolve) => setTimeout(() => resolve('still running after 1 s'), 1_000));
    expect(await Promise.race([runner.sessions[0]!.restore.exited, stillRunning])).toEqual({ exitCode: 0 });
    await backend.apply({ remove: [], add: [rule(81)] });
    expect(runner.sessions).toHaveLength(2);
  });

  it('under x_tables (iptables-restore says legacy): one iptables-restore per change set, as each COMMIT rewrites the whole table', async () => {
    const runner = new SessionRunner('legacy');
    const backend = backendWith(runner);
    await backend.probe();
    await backend.apply({ remove: [], add: [rule(80)] });
    expect(runner.sessions).toEqual([]);
    expect(runner.oneShotRestores()).toBe(1);
  });

  it('when the session cannot start (no stdbuf): the change runs on its own iptables-restore, and so do the next ones', async () => {
    const runner = new SessionRunner('nf_tables', true);
    const backend = backendWith(runner);
    await backend.probe();
    await backend.apply({ remove: [], add: [rule(80)] });
    await backend.apply({ remove: [], add: [rule(81)] });
    expect(runner.sessions).toHaveLength(1);
    expect(runner.oneShotRestores()).toBe(2);
    expect(runner.restores().join('')).toMatch(/--dport 80 [\s\S]*--dport 81 /);
  });
});

describe('IptablesBackend probe, init, list, shutdown', () => {
  it('probes the three programs and lists both tables', async () => {
    const runner = new ScriptedRunner((call) => (call.args[0] === '-V' ? { stdout: `${call.file} v1.8.9 (nf_tables)\n` } : {}));
    const capabilities = await backendWith(runner).probe();
    expect(capabilities).toMatchObject({ dialect: 'iptables', remoteHost: true, details: { version: 'iptables v1.8.9 (nf_tables)', wanInterface: 'wan0' } });
    expect(runner.calls.map((c) => [c.file, ...c.args].join(' '))).toEqual([
      'iptables -V',
      'iptables-restore -V',
      'iptables-save -V',
      'iptables -w 10 -t nat -S PREROUTING',
      'iptables -w 10 -t filter -S FORWARD',
    ]);
  });

  it('names the missing program and the package to install', async () => {
    const missing = Object.assign(new Error('cannot run iptables-legacy: spawn ENOENT'), { code: 'ENOENT' });
    const runner = new ScriptedRunner(() => missing);
    await expect(backendWith(runner, { flavour: 'iptables-legacy' }).probe()).rejects.toThrow(/iptables-legacy not found: install the "iptables" package/);
  });

  it('passes on what iptables says when it cannot list (no privileges, no kernel support)', async () => {
    const runner = new ScriptedRunner((call) =>
      call.args.includes('-S')
        ? { exitCode: 4, stderr: 'iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied (you must be root)\n' }
        : {},
    );
    await expect(backendWith(runner).probe()).rejects.toThrow(/listing the nat table failed .*you must be root/);
  });

  it('needs a WAN interface: from its options or the daemon config', async () => {
    const runner = new ScriptedRunner();
    const withoutWan = new IptablesBackend(iptablesOptionsSchema.parse({}), runner, silentLogger, undefined);
    await expect(withoutWan.probe()).rejects.toThrow(/needs the WAN interface/);
    await expect(withoutWan.apply({ remove: [], add: [rule(80)] })).rejects.toThrow(BackendError);

    const fromConfig = new IptablesBackend(iptablesOptionsSchema.parse({}), runner, silentLogger, { wan: 'ppp0' });
    await fromConfig.apply({ remove: [], add: [rule(80)] });
    expect(runner.restores()[0]).toContain(' -i ppp0 ');
  });

  it('init and shutdown read both tables and run one restore each; shutdown skips it when nothing is left', async () => {
    const runner = new ScriptedRunner((call) => ({ stdout: call.file === 'iptables-save' ? `*${call.args[1]}\nCOMMIT\n` : '' }));
    const backend = backendWith(runner);
    await backend.init();
    expect(runner.calls.map((c) => [c.file, ...c.args].join(' '))).toEqual([
      'iptables-save -t nat',
      'iptables-save -t filter',
      'iptables-restore -w 10 --noflush',
    ]);
    expect(runner.restores()[0]).toContain('-I PREROUTING -m comment --comment "upnpd jump" -j UPNPD-PREROUTING');
    await backend.shutdown();
    expect(runner.restores()).toHaveLength(1);
  });
});

describe('iptables plugin', () => {
  it('builds the backend from its parsed options, the command runner and the config', () => {
    const spec = iptables({ forwardChain: 'FORWARD' });
    expect(spec).toMatchObject({ name: 'iptables', kind: 'backend', options: { forwardChain: 'FORWARD' } });
    const backend = backendFromSpec(spec, { commands: new ScriptedRunner(), config: { wan: 'wan0' } });
    expect(backend).toBeInstanceOf(IptablesBackend);
    expect(
      backend.render({ remove: [], add: [{ remoteHost: '', externalPort: 8080, protocol: 'TCP', internalClient: '192.168.1.2', internalPort: 80 }] }, []),
    ).toContain('iptables -t nat -A UPNPD-PREROUTING.t07e -i wan0 -p tcp -m tcp --dport 8080');
  });
});
