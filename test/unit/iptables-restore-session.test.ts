import { describe, expect, it } from 'vitest';
import type { CommandExit } from '../../core/command-runner.js';
import { RestoreSession, RestoreSessionError, type RestoreSessionLimits } from '../../plugins/iptables/restore-session.js';
import { FakeIptablesRestore } from '../support/fake-iptables-restore.js';

const LIMITS: RestoreSessionLimits = { timeoutMs: 2_000, maxScripts: 100, idleMs: 60_000 };
const SYNC_CHAIN = 'UPNPD-PREROUTING.sync';

/** A session over fake iptables-restore processes, started as the session asks for them. */
function sessionWith(fails?: (line: string, lineNumber: number) => boolean | 'stall', limits: Partial<RestoreSessionLimits> = {}) {
  const started: FakeIptablesRestore[] = [];
  const session = new RestoreSession(
    () => {
      const restore = new FakeIptablesRestore(200 + started.length, fails);
      started.push(restore);
      return restore;
    },
    SYNC_CHAIN,
    { ...LIMITS, ...limits },
  );
  return { session, started };
}

const ADD_7000 = '*nat\n-A UPNPD-PREROUTING.t06d -p tcp --dport 7000 -j DNAT --to-destination 192.168.1.10:7000\nCOMMIT\n';
const ADD_7001 = '*nat\n-A UPNPD-PREROUTING.t06d -p tcp --dport 7001 -j DNAT --to-destination 192.168.1.10:7001\nCOMMIT\n';
const BAD_FILTER =
  '*nat\n-A UPNPD-PREROUTING.t06d -p tcp --dport 7002 -j DNAT --to-destination 192.168.1.10:7002\nCOMMIT\n*filter\n-A NO-SUCH-CHAIN -j ACCEPT\nCOMMIT\n';
const theBadLine = (line: string) => line.includes('NO-SUCH-CHAIN');

const DECLARE = `:${SYNC_CHAIN} - [0:0]`;
const FLUSH = `-v -F ${SYNC_CHAIN}`;
const ruleOf = (script: string) => script.split('\n')[1]!;

describe('RestoreSession (one iptables-nft-restore for many change sets)', () => {
  it('declares its sync chain, applies scripts one after another each followed by a flush of that chain, and answers as a one-shot run would', async () => {
    const { session, started } = sessionWith();
    expect(await session.run(ADD_7000)).toEqual({ exitCode: 0, stdout: '', stderr: '' });
    expect(await session.run(ADD_7001)).toEqual({ exitCode: 0, stdout: '', stderr: '' });
    expect(started).toHaveLength(1);
    expect(started[0]!.committed).toEqual([DECLARE, ruleOf(ADD_7000), FLUSH, ruleOf(ADD_7001), FLUSH]);
    // Ended, it deletes the chain: nothing of the session stays in the table.
    await session.close();
    expect(started[0]!.committed.at(-1)).toBe(`-X ${SYNC_CHAIN}`);
    expect(await started[0]!.exited).toEqual({ exitCode: 0 });
  });

  it("names a failed line counted from the script's own first line, as iptables-restore reading the script alone would", async () => {
    const { session, started } = sessionWith(theBadLine);
    await session.run(ADD_7000);
    await session.run(ADD_7001);
    const failed = await session.run(BAD_FILTER);
    // Line 5 of BAD_FILTER; the process had read 3 (declaration) + 2 × (3 + 3) lines before it.
    expect(started[0]!.lineNumber).toBe(20);
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
    expect(started[2]!.committed).toEqual([DECLARE, ruleOf(ADD_7001), FLUSH]);
  });

  it('takes a failed flush of the sync chain (an admin deleted it) for success: the script had committed before it was read', async () => {
    const { session, started } = sessionWith((line) => line === FLUSH);
    expect(await session.run(ADD_7000)).toEqual({ exitCode: 0, stdout: '', stderr: '' });
    expect(started[0]!.committed).toEqual([DECLARE, ruleOf(ADD_7000)]);
  });

  it('runs a script again on a fresh process when the last one ended on an earlier line, before reading it (the script did not run)', async () => {
    // The first flush section's COMMIT (line 9) is refused late: the process stops there, then dies
    // naming that line, while the second script is already written; that script reached nobody.
    let stalls = 0;
    const { session, started } = sessionWith((line, n) => (n === 9 && ++stalls === 1 ? 'stall' : false));
    expect(await session.run(ADD_7000)).toEqual({ exitCode: 0, stdout: '', stderr: '' });
    const second = session.run(ADD_7001);
    await new Promise((resolve) => setTimeout(resolve, 10));
    started[0]!.die('iptables-nft-restore: line 9 failed\n');
    expect(await second).toEqual({ exitCode: 0, stdout: '', stderr: '' });
    expect(started).toHaveLength(2);
    expect(started[1]!.committed).toEqual([DECLARE, ruleOf(ADD_7001), FLUSH]);
  });

  it('says whether a script it could not apply may have run: not when iptables-restore cannot start or its chain cannot be declared, maybe when no answer comes in time', async () => {
    const neverStarts = new RestoreSession(
      () => {
        const restore = new FakeIptablesRestore(300);
        restore.stdin.destroy();
        const exited: Promise<CommandExit> = Promise.resolve({ error: 'spawn stdbuf ENOENT' });
        return Object.assign(restore, { exited });
      },
      SYNC_CHAIN,
      LIMITS,
    );
    await expect(neverStarts.run(ADD_7000)).rejects.toMatchObject({ mayHaveRun: false, message: expect.stringContaining('could not be started') as unknown });

    const noChain = sessionWith((line) => line === DECLARE);
    await expect(noChain.session.run(ADD_7000)).rejects.toMatchObject({ mayHaveRun: false, message: expect.stringContaining('before reading') as unknown });
    expect(noChain.started).toHaveLength(2);

    const silent = new RestoreSession(
      () => {
        const restore = new FakeIptablesRestore(301);
        restore.stdout.write = () => true; // prints nothing: the flush's line never comes
        return restore;
      },
      SYNC_CHAIN,
      { ...LIMITS, timeoutMs: 50 },
    );
    const late = silent.run(ADD_7000);
    await expect(late).rejects.toBeInstanceOf(RestoreSessionError);
    await expect(late).rejects.toMatchObject({ mayHaveRun: true, message: expect.stringContaining('did not finish a change within') as unknown });
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
