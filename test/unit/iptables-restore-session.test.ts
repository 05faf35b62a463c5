import { describe, expect, it } from 'vitest';
import type { CommandExit } from '../../core/command-runner.js';
import { RestoreSession, RestoreSessionError, SYNC_CHAIN, type RestoreSessionLimits } from '../../plugins/iptables/restore-session.js';
import { FakeIptablesRestore } from '../support/fake-iptables-restore.js';

const LIMITS: RestoreSessionLimits = { timeoutMs: 2_000, maxScripts: 100, idleMs: 60_000 };

/** A session over fake iptables-restore processes, started as the session asks for them. */
function sessionWith(fails?: (line: string, lineNumber: number) => boolean | 'stall', limits: Partial<RestoreSessionLimits> = {}) {
  const started: FakeIptablesRestore[] = [];
  const session = new RestoreSession(
    () => {
      const restore = new FakeIptablesRestore(200 + started.length, fails);
      started.push(restore);
      return restore;
    },
    { ...LIMITS, ...limits },
  );
  return { session, started };
}

const ADD_7000 = '*nat\n-A UPNPD-PREROUTING.t06d -p tcp --dport 7000 -j DNAT --to-destination 192.168.1.10:7000\nCOMMIT\n';
const ADD_7001 = '*nat\n-A UPNPD-PREROUTING.t06d -p tcp --dport 7001 -j DNAT --to-destination 192.168.1.10:7001\nCOMMIT\n';
const BAD_FILTER =
  '*nat\n-A UPNPD-PREROUTING.t06d -p tcp --dport 7002 -j DNAT --to-destination 192.168.1.10:7002\nCOMMIT\n*filter\n-A NO-SUCH-CHAIN -j ACCEPT\nCOMMIT\n';
const theBadLine = (line: string) => line.includes('NO-SUCH-CHAIN');

describe('RestoreSession (one iptables-nft-restore for many change sets)', () => {
  it('applies scripts one after another in one process, each followed by the sync section, and answers as a one-shot run would', async () => {
    const { session, started } = sessionWith();
    expect(await session.run(ADD_7000)).toEqual({ exitCode: 0, stdout: '', stderr: '' });
    expect(await session.run(ADD_7001)).toEqual({ exitCode: 0, stdout: '', stderr: '' });
    expect(started).toHaveLength(1);
    // The sync chain is created, flushed (which prints) and deleted in a section of its own: nothing of it stays.
    expect(started[0]!.committed).toEqual([
      ADD_7000.split('\n')[1],
      `-N ${SYNC_CHAIN}`,
      `-v -F ${SYNC_CHAIN}`,
      `-X ${SYNC_CHAIN}`,
      ADD_7001.split('\n')[1],
      `-N ${SYNC_CHAIN}`,
      `-v -F ${SYNC_CHAIN}`,
      `-X ${SYNC_CHAIN}`,
    ]);
  });

  it("names a failed line counted from the script's own first line, as iptables-restore reading the script alone would", async () => {
    const { session, started } = sessionWith(theBadLine);
    await session.run(ADD_7000);
    await session.run(ADD_7001);
    const failed = await session.run(BAD_FILTER);
    // Line 5 of BAD_FILTER; the process had read 2 × (3 + 5) lines before it.
    expect(started[0]!.lineNumber).toBe(21);
    expect(failed).toEqual({ exitCode: 1, stdout: '', stderr: 'iptables-nft-restore: line 5 failed\n' });
    // The nat section before it was committed (iptables-restore commits table by table): the backend undoes it.
    expect(started[0]!.committed.at(-1)).toContain('--dport 7002');
  });

  it('starts a fresh process after a failure, and after one that ended between two scripts', async () => {
    const { session, started } = sessionWith(theBadLine);
    await session.run(BAD_FILTER);
    expect(await session.run(ADD_7000)).toEqual({ exitCode: 0, stdout: '', stderr: '' });
    expect(started).toHaveLength(2);
    started[1]!.die('iptables-nft-restore: killed by the admin\n');
    await started[1]!.exited;
    expect(await session.run(ADD_7001)).toEqual({ exitCode: 0, stdout: '', stderr: '' });
    expect(started).toHaveLength(3);
    expect(started[2]!.committed[0]).toContain('--dport 7001');
  });

  it('takes a failure in the sync section for success: the script had committed before the section was read', async () => {
    const { session, started } = sessionWith((line) => line === `-X ${SYNC_CHAIN}`);
    expect(await session.run(ADD_7000)).toEqual({ exitCode: 0, stdout: '', stderr: '' });
    expect(started[0]!.committed).toEqual([ADD_7000.split('\n')[1]]);
  });

  it('runs a script again on a fresh process when the last one ended on an earlier line, before reading it (the script did not run)', async () => {
    // The first sync section's COMMIT is refused late (the process stops there, then dies naming
    // line 8) while the second script is already written: that script reached nobody.
    const { session, started } = sessionWith((line, n) => (n === 8 ? 'stall' : false));
    expect(await session.run(ADD_7000)).toEqual({ exitCode: 0, stdout: '', stderr: '' });
    const second = session.run(ADD_7001);
    await new Promise((resolve) => setTimeout(resolve, 10));
    started[0]!.die('iptables-nft-restore: line 8 failed\n');
    expect(await second).toEqual({ exitCode: 0, stdout: '', stderr: '' });
    expect(started).toHaveLength(2);
    expect(started[1]!.committed[0]).toContain('--dport 7001');
  });

  it('reports a process that cannot start as such (nothing ran), and one that does not answer in time as unknown', async () => {
    const neverStarts = new RestoreSession(() => {
      const restore = new FakeIptablesRestore(300);
      restore.stdin.destroy();
      const exited: Promise<CommandExit> = Promise.resolve({ error: 'spawn stdbuf ENOENT' });
      return Object.assign(restore, { exited });
    }, LIMITS);
    await expect(neverStarts.run(ADD_7000)).rejects.toMatchObject({ started: false, message: expect.stringContaining('could not be started') as unknown });

    const silent = new RestoreSession(
      () => {
        const restore = new FakeIptablesRestore(301);
        restore.stdout.write = () => true; // prints nothing: the sync line never comes
        return restore;
      },
      { ...LIMITS, timeoutMs: 50 },
    );
    const late = silent.run(ADD_7000);
    await expect(late).rejects.toBeInstanceOf(RestoreSessionError);
    await expect(late).rejects.toMatchObject({ started: true, message: expect.stringContaining('did not finish a change within') as unknown });
  });

  it('ends its process after idleMs without a script, and after maxScripts; close ends it too', async () => {
    const idle = sessionWith(undefined, { idleMs: 30 });
    await idle.session.run(ADD_7000);
    expect(await idle.started[0]!.exited).toEqual({ exitCode: 0 });
    await idle.session.run(ADD_7001);
    expect(idle.started).toHaveLength(2);

    const replaced = sessionWith(undefined, { maxScripts: 2 });
    for (const script of [ADD_7000, ADD_7001, ADD_7000]) await replaced.session.run(script);
    expect(replaced.started).toHaveLength(2);
    expect(await replaced.started[0]!.exited).toEqual({ exitCode: 0 });
    await replaced.session.close();
    expect(await replaced.started[1]!.exited).toEqual({ exitCode: 0 });
    expect(replaced.session.pid).toBeUndefined();
  });
});
