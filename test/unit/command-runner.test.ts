import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { runCommand, startCommand } from '../../core/command-runner.js';

/** Whether process `pid` runs (a zombie waiting for a reaper does not). */
function isRunning(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z';
  } catch {
    return false;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Whether `condition` holds within 5 s, checked every 20 ms. */
async function eventually(condition: () => boolean): Promise<boolean> {
  for (let i = 0; i < 250 && !condition(); i += 1) await sleep(20);
  return condition();
}

describe('runCommand: a program run to its end', () => {
  it('answers with any exit code and the output as printed, final newline kept', async () => {
    const result = await runCommand('sh', ['-c', 'printf "out\\n"; printf "err\\n" >&2; exit 3']);
    expect(result).toEqual({ exitCode: 3, stdout: 'out\n', stderr: 'err\n' });
  });

  it('writes the input to the program and closes it', async () => {
    expect((await runCommand('cat', [], { input: 'add element ip upnpd x { 1 }\n' })).stdout).toBe('add element ip upnpd x { 1 }\n');
  });

  it('gives a program without input an empty standard input, so one that reads it ends at once', async () => {
    const started = Date.now();
    expect(await runCommand('cat', [], { timeoutMs: 5_000 })).toEqual({ exitCode: 0, stdout: '', stderr: '' });
    expect(Date.now() - started).toBeLessThan(4_000);
  });

  it('runs it in the C locale, with the rest of upnpd environment', async () => {
    const { stdout } = await runCommand('sh', ['-c', 'printf "%s %s" "$LC_ALL" "${PATH:+path}"']);
    expect(stdout).toBe('C path');
  });

  it('rejects with the errno code when the program cannot be started', async () => {
    const failure: unknown = await runCommand('upnpd-no-such-program', []).catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(Error);
    expect((failure as Error).message).toMatch(/^cannot run upnpd-no-such-program: .*ENOENT/);
    expect((failure as NodeJS.ErrnoException).code).toBe('ENOENT');
  });

  it('kills a program that outlives its timeout and rejects saying so', async () => {
    const started = Date.now();
    await expect(runCommand('sleep', ['30'], { timeoutMs: 200 })).rejects.toThrow('cannot run sleep: timed out after 200 ms');
    expect(Date.now() - started).toBeLessThan(4_000);
  });

  it('kills a program that prints without end (more than 64 MiB) instead of holding it all', async () => {
    await expect(runCommand('cat', ['/dev/zero'], { timeoutMs: 20_000 })).rejects.toThrow(/more than 67108864 bytes of output/);
  });
});

describe('startCommand: a long-running program', () => {
  it('streams its output and tells how it ended when killed', async () => {
    const command = startCommand('sh', ['-c', 'echo ready; exec sleep 30'], { stdout: true, stdin: 'ignore' });
    expect(command.pid).toBeTypeOf('number');
    command.stdout?.setEncoding('utf8');
    const firstLine = await new Promise<string>((resolve) => command.stdout?.once('data', (chunk: string) => resolve(chunk)));
    expect(firstLine).toBe('ready\n');
    command.kill();
    expect(await command.exited).toEqual({ signal: 'SIGKILL' });
  });

  it('reports its exit code once it ends by itself', async () => {
    const command = startCommand('sh', ['-c', 'read line; exit 4']);
    command.stdin.end('go\n');
    expect(await command.exited).toEqual({ exitCode: 4 });
  });

  it('has no pid when the program cannot be started, and its exit says why', async () => {
    const command = startCommand('upnpd-no-such-program', []);
    expect(command.pid).toBeUndefined();
    expect((await command.exited).error).toMatch(/ENOENT/);
  });

  describe('is not left behind when upnpd ends', () => {
    const dir = mkdtempSync(join(tmpdir(), 'upnpd-runner-'));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));
    const runner = fileURLToPath(new URL('../../core/command-runner.ts', import.meta.url));

    /** Runs a Node process that starts `sleep 60` with startCommand, prints its pid, then ends as `ending` does; returns that pid. */
    async function orphanCandidate(ending: string): Promise<number> {
      const script = join(dir, `child-${Math.random().toString(36).slice(2)}.ts`);
      writeFileSync(
        script,
        `import { startCommand } from ${JSON.stringify(runner)};\n` +
          `const command = startCommand('sleep', ['60']);\n` +
          `process.stdout.write(String(command.pid) + '\\n', () => { ${ending} });\n`,
      );
      const result = await execa('node', ['--import', 'tsx', script], { reject: false, timeout: 30_000, cwd: process.cwd() });
      const pid = Number(result.stdout.trim());
      expect(pid, result.stderr).toBeGreaterThan(0);
      return pid;
    }

    it.each([
      { when: 'on a normal exit', ending: 'process.exit(0);' },
      { when: 'on a crash (an uncaught exception)', ending: "throw new Error('crash');" },
      {
        when: 'when it is killed outright (SIGKILL, which no exit hook sees: setpriv gives it a parent-death signal)',
        ending: "process.kill(process.pid, 'SIGKILL');",
      },
      {
        when: 'on a signal that ends it (SIGTERM without a handler of its own)',
        ending: "process.kill(process.pid, 'SIGTERM'); setTimeout(() => {}, 10_000);",
      },
    ])('$when', async ({ ending }) => {
      const pid = await orphanCandidate(ending);
      expect(await eventually(() => !isRunning(pid))).toBe(true);
    });
  });
});
