import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { RunningCommand } from '../../core/command-runner.js';
import { BackendError } from '../../core/errors.js';
import { NftSession, transactionLine, type NftSessionLimits } from '../../plugins/nftables/session.js';
import { FakeInteractiveNft, type TransactionAnswer } from '../support/fake-nft-interactive.js';

const LIMITS: NftSessionLimits = { timeoutMs: 2_000, maxTransactions: 100, maxInputBytes: 1 << 20, idleMs: 60_000 };

/** A session over fake `nft -i` processes, started as the session asks for them. */
function sessionWith(
  answer: (line: string) => TransactionAnswer = () => ({}),
  limits: Partial<NftSessionLimits> = {},
  style: ConstructorParameters<typeof FakeInteractiveNft>[2] = {},
) {
  const started: FakeInteractiveNft[] = [];
  const session = new NftSession(
    () => {
      const nft = new FakeInteractiveNft(100 + started.length, answer, style);
      started.push(nft);
      return nft;
    },
    { ...LIMITS, ...limits },
  );
  return { session, started };
}

const NO_ELEMENT =
  'Error: Could not process rule: No such file or directory\ndelete element inet upnpd dnat-any { tcp . 9 }\n                                        ^^^^^^^^\n';

describe('NftSession', () => {
  it('runs a script as one line, its commands joined by ";" so that nft commits them together', async () => {
    const { session, started } = sessionWith();
    const result = await session.run('delete element inet upnpd dnat-any { tcp . 80 }\nadd element inet upnpd dnat-any { tcp . 81 : 192.168.1.10 . 81 }\n');
    expect(result).toEqual({ ok: true, output: '' });
    expect(started).toHaveLength(1);
    expect(started[0]!.transactions()).toEqual([
      'delete element inet upnpd dnat-any { tcp . 80 }; add element inet upnpd dnat-any { tcp . 81 : 192.168.1.10 . 81 }',
    ]);
  });

  it('gives each transaction the error output nft printed for it, and only that', async () => {
    const { session } = sessionWith((line) => (line.includes('tcp . 9 ') ? { stderr: NO_ELEMENT } : {}));
    const results = await Promise.all([
      session.run('add element inet upnpd dnat-any { tcp . 8 : 192.168.1.10 . 8 }\n'),
      session.run('delete element inet upnpd dnat-any { tcp . 9 }\n'),
      session.run('add element inet upnpd dnat-any { tcp . 10 : 192.168.1.10 . 10 }\n'),
    ]);
    expect(results).toEqual([
      { ok: true, output: '' },
      { ok: false, output: NO_ELEMENT },
      { ok: true, output: '' },
    ]);
  });

  it('reads the marker whether nft puts a location before "Error:" and whether the place line comes in a later chunk', async () => {
    for (const style of [{ locationPrefix: true }, { placeLineLater: true }, { locationPrefix: true, placeLineLater: true }]) {
      const { session } = sessionWith((line) => (line.includes('tcp . 9 ') ? { stderr: NO_ELEMENT } : {}), {}, style);
      expect(await session.run('add element inet upnpd dnat-any { tcp . 8 : 192.168.1.10 . 8 }\n')).toEqual({ ok: true, output: '' });
      await new Promise((resolve) => setTimeout(resolve, 20)); // the late place line arrives while idle
      expect(await session.run('delete element inet upnpd dnat-any { tcp . 9 }\n')).toEqual({ ok: false, output: NO_ELEMENT });
      expect(await session.run('add element inet upnpd dnat-any { tcp . 10 : 192.168.1.10 . 10 }\n')).toEqual({ ok: true, output: '' });
    }
  });

  it('sends a transaction only after nft has finished the one before', async () => {
    const { session, started } = sessionWith(() => ({}), {}, { markerDelayMs: 5 });
    await Promise.all([1, 2, 3].map((port) => session.run(`add element inet upnpd dnat-any { tcp . ${port} : 192.168.1.10 . ${port} }\n`)));
    const lines = started[0]!.lines.map((line) => (line.startsWith('list table') ? 'sync' : line.replace(/.*tcp \. (\d+) .*/, 'tx $1')));
    expect(lines).toEqual(['tx 1', 'sync', 'tx 2', 'sync', 'tx 3', 'sync']);
    expect(started[0]!.overlapped).toBe(false);
  });

  it('counts output without an "Error:" line as success (nft prints warnings that way)', async () => {
    const { session } = sessionWith(() => ({ stderr: 'Warning: table ip nat is managed by iptables-nft\n' }));
    expect(await session.run('add element inet upnpd dnat-any { tcp . 8 : 192.168.1.10 . 8 }\n')).toEqual({
      ok: true,
      output: 'Warning: table ip nat is managed by iptables-nft\n',
    });
  });

  it('fails a transaction nft does not finish in time, kills that nft and starts another for the next one', async () => {
    const { session, started } = sessionWith((line) => (line.includes('hang') ? 'hang' : {}), { timeoutMs: 50 });
    const hung = session.run('add element inet upnpd hang { 1 }\n');
    await expect(hung).rejects.toBeInstanceOf(BackendError);
    await expect(hung).rejects.toThrow(/did not finish a transaction within 0.05 s/);
    expect(await started[0]!.exited).toEqual({ signal: 'SIGKILL' });
    expect(await session.run('add element inet upnpd dnat-any { tcp . 8 : 192.168.1.10 . 8 }\n')).toEqual({ ok: true, output: '' });
    expect(started).toHaveLength(2);
  });

  it('fails a transaction during which nft died, with what it printed, and starts another nft for the next one', async () => {
    const { session, started } = sessionWith((line) => (line.includes('tcp . 9 ') ? 'die' : {}));
    await expect(session.run('delete element inet upnpd dnat-any { tcp . 9 }\n')).rejects.toThrow(
      /nft -i exited with status 1 during a transaction: nft: out of memory/,
    );
    expect(await session.run('add element inet upnpd dnat-any { tcp . 8 : 192.168.1.10 . 8 }\n')).toEqual({ ok: true, output: '' });
    expect(started).toHaveLength(2);
  });

  it('runs a transaction again on a fresh nft when the old one had died unseen and printed nothing for it', async () => {
    let vanished = false;
    const { session, started } = sessionWith((line) => {
      if (!line.includes('tcp . 9 ') || vanished) return {};
      vanished = true;
      return 'vanish';
    });
    expect(await session.run('add element inet upnpd dnat-any { tcp . 9 : 192.168.1.10 . 9 }\n')).toEqual({ ok: true, output: '' });
    expect(started.map((nft) => nft.transactions())).toEqual([[expect.stringContaining('tcp . 9 ')], [expect.stringContaining('tcp . 9 ')]]);
  });

  it('notices an nft that died while idle, and starts another', async () => {
    const { session, started } = sessionWith();
    await session.run('add element inet upnpd dnat-any { tcp . 8 : 192.168.1.10 . 8 }\n');
    started[0]!.kill();
    await started[0]!.exited;
    expect(await session.run('add element inet upnpd dnat-any { tcp . 9 : 192.168.1.10 . 9 }\n')).toEqual({ ok: true, output: '' });
    expect(started).toHaveLength(2);
  });

  it('reports an nft that cannot be started', async () => {
    const session = new NftSession((): RunningCommand => {
      const stdin = new PassThrough();
      const stderr = new PassThrough();
      stderr.end();
      return { pid: undefined, stdin, stderr, exited: Promise.resolve({ error: 'spawn nft ENOENT' }), kill: () => undefined };
    }, LIMITS);
    await expect(session.run('')).rejects.toThrow(/nft -i could not be started \(spawn nft ENOENT\)/);
  });

  it('replaces its nft after maxTransactions, closing the old one’s input (nft -i keeps every line in its history)', async () => {
    const { session, started } = sessionWith(() => ({}), { maxTransactions: 2 });
    for (let port = 1; port <= 5; port += 1) await session.run(`add element inet upnpd dnat-any { tcp . ${port} : 192.168.1.10 . ${port} }\n`);
    expect(started.map((nft) => nft.transactions().length)).toEqual([2, 2, 1]);
    expect(await started[0]!.exited).toEqual({ exitCode: 0 });
    expect(await started[1]!.exited).toEqual({ exitCode: 0 });
  });

  it('replaces its nft after maxInputBytes', async () => {
    const { session, started } = sessionWith(() => ({}), { maxInputBytes: 200 });
    const big = `add element inet upnpd dnat-any { ${Array.from({ length: 10 }, (_, i) => `tcp . ${i + 1} : 192.168.1.10 . ${i + 1}`).join(', ')} }\n`;
    await session.run(big);
    await session.run(big);
    expect(started).toHaveLength(2);
  });

  it('ends its nft after idleMs without a transaction, and starts another for the next one', async () => {
    const { session, started } = sessionWith(() => ({}), { idleMs: 50 });
    for (let port = 1; port <= 3; port += 1) await session.run(`add element inet upnpd dnat-any { tcp . ${port} : 192.168.1.10 . ${port} }\n`);
    expect(session.pid).toBe(100);
    expect(await started[0]!.exited).toEqual({ exitCode: 0 });
    expect(session.pid).toBeUndefined();
    await session.run('add element inet upnpd dnat-any { tcp . 4 : 192.168.1.10 . 4 }\n');
    expect(started.map((nft) => nft.transactions().length)).toEqual([3, 1]);
  });

  it('keeps its nft while transactions come closer together than idleMs', async () => {
    const { session, started } = sessionWith(() => ({}), { idleMs: 100 });
    for (let port = 1; port <= 5; port += 1) {
      await session.run(`add element inet upnpd dnat-any { tcp . ${port} : 192.168.1.10 . ${port} }\n`);
      await new Promise((resolve) => setTimeout(resolve, 30));
    }
    expect(started).toHaveLength(1);
    await session.close();
  });

  it('close ends nft after the transactions already asked for; a later run starts a new one', async () => {
    const { session, started } = sessionWith();
    const queued = session.run('add element inet upnpd dnat-any { tcp . 8 : 192.168.1.10 . 8 }\n');
    await session.close();
    expect(await queued).toEqual({ ok: true, output: '' });
    expect(await started[0]!.exited).toEqual({ exitCode: 0 });
    expect(session.pid).toBeUndefined();
    await session.run('');
    expect(session.pid).toBe(101);
  });
});

describe('transactionLine', () => {
  it('joins a script’s commands and drops empty lines', () => {
    expect(transactionLine('add table inet t\n\ndelete table inet t\n')).toBe('add table inet t; delete table inet t');
  });

  it('refuses a carriage return, which would split the transaction', () => {
    expect(() => transactionLine('add table inet t\r delete table inet t\n')).toThrow(BackendError);
  });
});
