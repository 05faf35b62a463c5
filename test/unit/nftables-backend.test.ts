import 'reflect-metadata';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { CommandResult, CommandRunner, RunningCommand } from '../../core/command-runner.js';
import { BackendError } from '../../core/errors.js';
import { silentLogger } from '../../core/logger.js';
import { NftablesBackend, nftables } from '../../plugins/nftables/index.js';
import { RULESET_MONITORS } from '../../plugins/nftables/monitor.js';
import { forwardProblems, parseInstalledRules } from '../../plugins/nftables/rules.js';
import { backendFromSpec } from 'upnpd/testing';
import { nftablesOptionsSchema, type NftablesUserOptions } from '../../plugins/nftables/options.js';
import { GOLDEN_ADMIN_TABLE, GOLDEN_LISTING, mapping } from '../../plugins/nftables/testing/golden-scripts.js';
import { FakeInteractiveNft } from '../support/fake-nft-interactive.js';

interface Call {
  readonly args: readonly string[];
  readonly input: string | undefined;
}

/**
 * A CommandRunner that records nft calls and answers them with `respond` (default: success, empty
 * output). A transaction of the `nft -i` session is recorded as a call with args ['-i'] and its
 * line turned back into the script it came from.
 */
class FakeNft implements CommandRunner {
  readonly calls: Call[] = [];
  readonly sessions: FakeInteractiveNft[] = [];
  /** Each ruleset monitor started (xtables-monitor, or nft monitor); write a line to its stdout to play an event. */
  readonly monitors: Array<{ readonly stdout: PassThrough; killed: boolean; startedAfterCalls: number }> = [];
  constructor(private readonly respond: (call: Call) => Partial<CommandResult> | undefined = () => undefined) {}

  run(file: string, args: readonly string[], options: { input?: string } = {}): Promise<CommandResult> {
    expect(file).toBe('nft');
    const call = { args, input: options.input };
    this.calls.push(call);
    return Promise.resolve({ exitCode: 0, stdout: '', stderr: '', ...this.respond(call) });
  }

  start(file: string, args: readonly string[], options: { env?: Readonly<Record<string, string>> } = {}): RunningCommand {
    if (RULESET_MONITORS.some((m) => m.file === file && m.args.join(' ') === args.join(' '))) {
      const monitor = { stdout: new PassThrough(), killed: false, startedAfterCalls: this.calls.length };
      this.monitors.push(monitor);
      let exit!: (e: { signal: NodeJS.Signals }) => void;
      const exited = new Promise<{ signal: NodeJS.Signals }>((resolve) => (exit = resolve));
      const kill = () => ((monitor.killed = true), exit({ signal: 'SIGTERM' }));
      return { pid: 2000 + this.monitors.length, stdin: new PassThrough(), stderr: new PassThrough(), stdout: monitor.stdout, exited, kill };
    }
    expect([file, ...args]).toEqual(['nft', '-i']);
    // nft -i would otherwise read and write root's ~/.nft.history with every change set.
    expect(options.env).toEqual({ HOME: '/dev/null' });
    const session = new FakeInteractiveNft(1000 + this.sessions.length, (line) => {
      if (line === '') return {};
      const call = { args: ['-i'], input: `${line.split('; ').join('\n')}\n` };
      this.calls.push(call);
      const answer = { exitCode: 0, stderr: '', ...this.respond(call) };
      return { stderr: answer.exitCode === 0 ? answer.stderr : answer.stderr || 'Error: failed\n' };
    });
    this.sessions.push(session);
    return session;
  }

  /** Scripts run by `nft -f -` and transactions run by the session, in order. */
  scripts(): string[] {
    return this.calls.filter((c) => ['-f -', '-i'].includes(c.args.join(' '))).map((c) => c.input ?? '');
  }
}

const VERSION = { stdout: 'nftables v1.0.6 (Lester Gooch #5)\n' };
const WITH_JUMP = { wanInterface: 'wan0', forwardJump: GOLDEN_ADMIN_TABLE };

/** `nft -j list table inet filter`: the admin's table with these chains (and extra objects). */
function adminTable(chains: string[], extra: object[] = []): Partial<CommandResult> {
  return {
    stdout: JSON.stringify({
      nftables: [...chains.map((name, handle) => ({ chain: { family: 'inet', table: 'filter', name, handle } })), ...extra],
    }),
  };
}

function backendWith(runner: CommandRunner, options: NftablesUserOptions = WITH_JUMP): NftablesBackend {
  return new NftablesBackend(nftablesOptionsSchema.parse(options), runner, silentLogger, undefined);
}

const web = mapping('TCP', 8080, '192.168.1.10', 80);
const webAlias = mapping('TCP', 8081, '192.168.1.10', 80);

describe('NftablesBackend.probe', () => {
  it('names the package when nft cannot be run', async () => {
    const enoent = () => Object.assign(new Error('cannot run nft: spawn nft ENOENT'), { code: 'ENOENT' });
    const runner: CommandRunner = {
      run: () => Promise.reject(enoent()),
      start: () => {
        throw enoent();
      },
    };
    await expect(backendWith(runner).probe()).rejects.toThrow(/install the "nftables" package/);
  });

  it('refuses an nft older than 0.9.4', async () => {
    const runner = new FakeNft(() => ({ stdout: 'nftables v0.9.3 (Topsy)\n' }));
    await expect(backendWith(runner).probe()).rejects.toThrow(/0\.9\.3 is too old/);
  });

  it('checks the real table definition with nft -c and reports what failed', async () => {
    const runner = new FakeNft((call) => (call.args[0] === '-c' ? { exitCode: 1, stderr: 'Error: Could not process rule: Operation not permitted' } : VERSION));
    await expect(backendWith(runner).probe()).rejects.toThrow(/CAP_NET_ADMIN.*\n?.*Operation not permitted/s);
    expect(runner.calls[1]!.args).toEqual(['-c', '-f', '-']);
    expect(runner.calls[1]!.input).toContain('dnat ip to meta l4proto . th dport map @dnat-any');
    // The admin table part is init's to check, with a message naming forwardJump.
    expect(runner.calls[1]!.input).not.toContain('inet filter');
  });

  it('needs a WAN interface', async () => {
    await expect(backendWith(new FakeNft(() => VERSION), {}).probe()).rejects.toThrow(/no WAN interface/);
  });

  it('reports its dialect, remote-host support, IPv6 pinholes (forwardJump into an inet table) and what it found', async () => {
    const capabilities = await backendWith(new FakeNft(() => VERSION)).probe();
    expect(capabilities).toEqual({
      dialect: 'nftables',
      remoteHost: true,
      pinholes: true,
      details: {
        program: 'nft',
        version: '1.0.6',
        table: 'inet upnpd',
        wanInterface: 'wan0',
        forward: 'accepted through a jump from chain forward of table inet filter',
        transactions: 'one long-lived nft -i',
        pinholes: 'sets in chain forward of table inet filter',
      },
    });
  });
});

describe('NftablesBackend.apply', () => {
  it('runs change sets through one long-lived nft -i', async () => {
    const runner = new FakeNft(() => VERSION);
    const backend = backendWith(runner);
    await backend.probe();
    for (let port = 1; port <= 3; port += 1) await backend.apply({ remove: [], add: [mapping('TCP', port, '192.168.1.10', port)] });
    expect(runner.sessions).toHaveLength(1);
    expect(runner.sessions[0]!.transactions()).toHaveLength(1 + 3);
    expect(runner.calls.filter((c) => c.args.join(' ') === '-f -')).toEqual([]);
  });

  it('runs each change set with nft -f - where nft -i does not work (an nft built without its CLI)', async () => {
    const runner = new FakeNft(() => VERSION);
    runner.start = () => {
      const nft = new FakeInteractiveNft(1, () => ({}));
      // What such an nft prints before it exits.
      nft.stderr.write('nft: interactive CLI not supported in this build\n');
      nft.kill();
      return nft;
    };
    const backend = backendWith(runner);
    expect((await backend.probe()).details?.transactions).toBe('one nft -f - per change set (this nft has no interactive mode)');
    await backend.apply({ remove: [], add: [web] });
    expect(runner.calls.at(-1)).toEqual({
      args: ['-f', '-'],
      input: expect.stringContaining('add element inet upnpd dnat-any { tcp . 8080 : 192.168.1.10 . 80 }') as unknown,
    });
  });

  it('runs one nft transaction per change set, none for an empty one', async () => {
    const runner = new FakeNft();
    const backend = backendWith(runner);
    await backend.apply({ remove: [], add: [web, mapping('UDP', 9000, '192.168.1.11', 9000)] });
    await backend.apply({ remove: [], add: [] });
    expect(runner.scripts()).toEqual([
      'add element inet upnpd dnat-any { tcp . 8080 : 192.168.1.10 . 80, udp . 9000 : 192.168.1.11 . 9000 }\n' +
        'add element inet filter upnpd-accept { 192.168.1.10 . tcp . 80, 192.168.1.11 . udp . 9000 }\n',
    ]);
  });

  it('keeps the accept element of a target while another applied mapping uses it', async () => {
    const runner = new FakeNft();
    const backend = backendWith(runner);
    await backend.apply({ remove: [], add: [web] });
    await backend.apply({ remove: [], add: [webAlias] });
    await backend.apply({ remove: [web], add: [] });
    await backend.apply({ remove: [webAlias], add: [] });
    expect(runner.scripts().slice(1)).toEqual([
      'add element inet upnpd dnat-any { tcp . 8081 : 192.168.1.10 . 80 }\n',
      'delete element inet upnpd dnat-any { tcp . 8080 }\n',
      'delete element inet upnpd dnat-any { tcp . 8081 }\ndelete element inet filter upnpd-accept { 192.168.1.10 . tcp . 80 }\n',
    ]);
  });

  it('throws a BackendError with nft’s message and remembers nothing of a failed change set', async () => {
    let fail = false;
    const runner = new FakeNft(() => (fail ? { exitCode: 1, stderr: 'Error: Could not process rule: No such file or directory\n' } : undefined));
    const backend = backendWith(runner);
    fail = true;
    const failure = backend.apply({ remove: [], add: [web] });
    await expect(failure).rejects.toBeInstanceOf(BackendError);
    await expect(failure).rejects.toThrow(/could not apply 0 removal\(s\) and 1 addition\(s\): Error: Could not process rule/);
    fail = false;
    await backend.apply({ remove: [], add: [webAlias] });
    // Had the failed addition been remembered, the target would count as in use and not be added.
    expect(runner.scripts().at(-1)).toContain('add element inet filter upnpd-accept { 192.168.1.10 . tcp . 80 }');
  });
});

describe('NftablesBackend init, list, shutdown', () => {
  it('init creates the table in one transaction and forgets earlier state', async () => {
    const runner = new FakeNft((call) => (call.args[0] === '-j' ? adminTable(['forward']) : undefined));
    const backend = backendWith(runner);
    await backend.apply({ remove: [], add: [web] });
    await backend.init();
    await backend.apply({ remove: [], add: [webAlias] });
    const [, init, afterInit] = runner.scripts();
    expect(init).toMatch(/^add table inet upnpd\ndelete table inet upnpd\ntable inet upnpd \{.*\ninsert rule inet filter forward jump upnpd-forward/s);
    expect(afterInit).toContain('add element inet filter upnpd-accept { 192.168.1.10 . tcp . 80 }');
  });

  it('starts one ruleset monitor right after init creates the table (an nft monitor started then caches no element), reports its losses to watch, and ends it when watching ends', async () => {
    const runner = new FakeNft();
    const backend = backendWith(runner, { wanInterface: 'wan0' });
    await backend.init();
    expect(runner.monitors).toHaveLength(1);
    expect(runner.monitors[0]!.startedAfterCalls).toBe(1); // after init's transaction
    await backend.apply({ remove: [], add: [web] });
    let losses = 0;
    const stopWatching = backend.watch(() => losses++);
    expect(runner.monitors).toHaveLength(1); // watch uses the monitor init started
    runner.monitors[0]!.stdout.write('NEWGEN: GENID=7 PID=2001 NAME=nft\n EVENT: nft: DEL table: table upnpd inet flags 0 use 0 handle 2\n');
    await new Promise((resolve) => setImmediate(resolve));
    expect(losses).toBe(1);
    stopWatching(); // the daemon stops (also when it keeps its rules and never calls shutdown)
    expect(runner.monitors[0]!.killed).toBe(true);
    await backend.shutdown();
    expect(runner.monitors).toHaveLength(1);
  });

  it('ends the monitor at shutdown, before its own table is deleted, when nobody watched', async () => {
    const runner = new FakeNft();
    const backend = backendWith(runner, { wanInterface: 'wan0' });
    await backend.init();
    const callsBefore = runner.calls.length;
    let killedBeforeDelete: boolean | undefined;
    const monitor = runner.monitors[0]!;
    const run = runner.run.bind(runner);
    runner.run = (file, args, options) => {
      if (options?.input?.includes('delete table inet upnpd')) killedBeforeDelete = monitor.killed;
      return run(file, args, options);
    };
    await backend.shutdown();
    expect(runner.calls.length).toBeGreaterThan(callsBefore);
    expect(killedBeforeDelete).toBe(true);
  });

  it('without forwardJump, init lists nothing and touches only its own table', async () => {
    const runner = new FakeNft();
    await backendWith(runner, { wanInterface: 'wan0' }).init();
    expect(runner.calls.map((c) => c.args.join(' '))).toEqual(['-f -']);
    expect(runner.scripts()[0]).not.toMatch(/inet filter|forward|upnpd-accept/);
  });

  it('list reads nft -j list table', async () => {
    const listing = {
      nftables: [{ map: { family: 'inet', table: 'upnpd', name: 'dnat-any', elem: [[{ concat: ['tcp', 8080] }, { concat: ['192.168.1.10', 80] }]] } }],
    };
    const runner = new FakeNft(() => ({ stdout: JSON.stringify(listing) }));
    expect(await backendWith(runner).list()).toEqual([web]);
    expect(runner.calls[0]!.args).toEqual(['-j', 'list', 'table', 'inet', 'upnpd']);
  });

  it('diagnose lists the ruleset without the elements of sets (an admin blocklist would be hundreds of KB of JSON), and reads its forward chains', async () => {
    const ruleset = {
      nftables: [
        { chain: { family: 'inet', table: 'filter', name: 'forward', hook: 'forward', policy: 'drop' } },
        { set: { family: 'inet', table: 'banip', name: 'blocked', type: 'ipv4_addr' } },
      ],
    };
    const runner = new FakeNft(() => ({ stdout: JSON.stringify(ruleset) }));
    const findings = await backendWith(runner, { wanInterface: 'wan0' }).diagnose();
    expect(runner.calls.map((c) => c.args)).toEqual([['-t', '-j', 'list', 'ruleset']]);
    expect(findings.map((f) => [f.check, f.severity])).toEqual([['forward-path', 'error']]);
  });

  it('list fails clearly when the table is gone', async () => {
    const runner = new FakeNft(() => ({ exitCode: 1, stderr: 'Error: No such file or directory\nlist table inet upnpd\n' }));
    await expect(backendWith(runner).list()).rejects.toThrow(/cannot list table inet upnpd/);
  });

  describe('with a jump from the admin chain', () => {
    it('init refuses a jump chain that does not exist', async () => {
      const runner = new FakeNft((call) => (call.args[0] === '-j' ? adminTable(['input']) : undefined));
      await expect(backendWith(runner).init()).rejects.toThrow(/chain forward of table inet filter, but that chain does not exist/);
      expect(runner.scripts()).toEqual([]);
    });

    it('init refuses an admin table that does not exist', async () => {
      const runner = new FakeNft((call) => (call.args[0] === '-j' ? { exitCode: 1, stderr: 'Error: No such file or directory' } : undefined));
      await expect(backendWith(runner).init()).rejects.toThrow(/its table cannot be listed/);
    });

    it('shutdown removes the jump found by listing, by handle', async () => {
      const jump = { rule: { family: 'inet', table: 'filter', chain: 'forward', handle: 42, expr: [{ jump: { target: 'upnpd-forward' } }] } };
      const runner = new FakeNft((call) => (call.args[0] === '-j' ? adminTable(['forward', 'upnpd-forward'], [jump]) : undefined));
      await backendWith(runner).shutdown();
      expect(runner.calls[0]!.args).toEqual(['-j', 'list', 'table', 'inet', 'filter']);
      expect(runner.scripts()).toEqual([
        'add table inet upnpd\ndelete table inet upnpd\ndelete rule inet filter forward handle 42\n' +
          'flush chain inet filter upnpd-forward\ndelete chain inet filter upnpd-forward\n',
      ]);
    });

    it('shutdown still removes upnpd’s own table when the admin table is gone', async () => {
      const runner = new FakeNft((call) => (call.args[0] === '-j' ? { exitCode: 1, stderr: 'Error: No such file or directory' } : undefined));
      await backendWith(runner).shutdown();
      expect(runner.scripts()).toEqual(['add table inet upnpd\ndelete table inet upnpd\n']);
    });
  });
});

describe('nftables plugin', () => {
  it('builds the backend from its parsed options, taking the WAN interface from the daemon config', async () => {
    const runner = new FakeNft(() => VERSION);
    const spec = nftables({ table: 'igd' });
    expect(spec.kind).toBe('backend');
    const backend = backendFromSpec(spec, { commands: runner, config: { wan: 'eth9' } });
    expect(backend).toBeInstanceOf(NftablesBackend);
    await backend.probe();
    await backend.init();
    expect(runner.scripts()[0]).toContain('iifname "eth9" dnat ip to');
    expect(runner.scripts()[0]).toContain('table inet igd {');
  });

  it('without a WAN interface in the config, the wanInterface option must be given', async () => {
    const spec = nftables();
    const backend = backendFromSpec(spec, { commands: new FakeNft(() => VERSION) });
    await expect(backend.probe()).rejects.toThrow(/no WAN interface/);
  });
});

describe('NftablesBackend.check', () => {
  const mappingsMissing = (missing: readonly string[]) => missing.filter((m) => m.includes('mapping(s)'));

  it('compares the accept set in the admin table by content: the same count with a stale element is one missing and one too many', () => {
    const listing = (...elem: unknown[]) =>
      JSON.stringify({
        nftables: [
          { chain: { family: 'inet', table: 'filter', name: 'forward', handle: 1 } },
          { set: { family: 'inet', table: 'filter', name: 'upnpd-accept', elem } },
        ],
      });
    const options = { ...nftablesOptionsSchema.parse(WITH_JUMP), forwardJump: GOLDEN_ADMIN_TABLE };
    const ofSet = (problems: readonly string[]) => problems.filter((p) => p.includes('of set upnpd-accept'));
    const held = listing({ concat: ['192.168.1.10', 'tcp', 80] });
    expect(ofSet(forwardProblems(held, options, [web]))).toEqual([]);
    const other = mapping('UDP', 9000, '192.168.1.11', 9000);
    expect(ofSet(forwardProblems(held, options, [other]))).toEqual([
      '1 of 1 element(s) of set upnpd-accept of table inet filter',
      '1 element(s) of set upnpd-accept of table inet filter that the table does not hold',
    ]);
    expect(ofSet(forwardProblems(listing({ concat: ['192.168.1.11', 17, 9000] }), options, [other]))).toEqual([]);
  });

  it('names the elements of mappings the table does not hold (a reload of a ruleset saved while an old mapping was held)', async () => {
    const runner = new FakeNft((call) => (call.args.join(' ') === '-j list table inet upnpd' ? { stdout: GOLDEN_LISTING } : undefined));
    const backend = backendWith(runner, { wanInterface: 'wan0' });
    const installed = parseInstalledRules(GOLDEN_LISTING, nftablesOptionsSchema.parse({ wanInterface: 'wan0' }));
    expect(installed.length).toBeGreaterThan(1);
    const surplus = (missing: readonly string[]) => missing.filter((m) => m.includes('does not hold'));
    expect(surplus((await backend.check(installed)).missing)).toEqual([]);
    expect(surplus((await backend.check(installed.slice(1))).missing)).toEqual(['1 element(s) in the maps of table inet upnpd that the table does not hold']);
  });

  it('answers for what is expected now when nft lists the same as at the last check (GOLDEN_LISTING has tcp 8080 → 192.168.1.10:80, not 8081) (the parse is reused, never the answer for other rules)', async () => {
    const runner = new FakeNft((call) => (call.args.join(' ') === '-j list table inet upnpd' ? { stdout: GOLDEN_LISTING } : undefined));
    const backend = backendWith(runner, { wanInterface: 'wan0' });
    expect(mappingsMissing((await backend.check([web])).missing)).toEqual([]);
    // Same listing, as many rules, another one: missing.
    expect(mappingsMissing((await backend.check([webAlias])).missing)).toEqual(['1 of 1 mapping(s) in the maps of table inet upnpd']);
    expect(mappingsMissing((await backend.check([web, webAlias])).missing)).toEqual(['1 of 2 mapping(s) in the maps of table inet upnpd']);
    const first = await backend.check([web]);
    const again = await backend.check([web]);
    expect(again.missing).toEqual(first.missing);
    expect(mappingsMissing(again.missing)).toEqual([]);
    // The table gone: reported, whatever the last listing said.
    const gone = new FakeNft((call) =>
      call.args.join(' ') === '-j list table inet upnpd' ? { exitCode: 1, stderr: 'Error: No such file or directory\n' } : undefined,
    );
    const after = backendWith(gone, { wanInterface: 'wan0' });
    expect((await after.check([web])).missing).toEqual(['table inet upnpd']);
  });
});
