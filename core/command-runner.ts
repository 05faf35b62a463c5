import type { Readable, Writable } from 'node:stream';
import { execa } from 'execa';

export interface CommandResult {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** How a long-running command ended. `error` is set when it could not be started at all. */
export interface CommandExit {
  readonly exitCode?: number;
  readonly signal?: string;
  readonly error?: string;
}

/**
 * A program that keeps running while upnpd talks to it over its standard streams (`nft -i`).
 * Output is not collected: the caller reads the streams it needs (the others are drained).
 */
export interface RunningCommand {
  readonly pid: number | undefined;
  readonly stdin: Writable;
  readonly stderr: Readable;
  /** Only when started with `stdout: true` (a program whose output is read, such as `nft monitor`). */
  readonly stdout?: Readable;
  /** Settles when the process has exited or failed to start; never rejects. */
  readonly exited: Promise<CommandExit>;
  kill(): void;
}

/**
 * Runs an external program (iptables-restore, nft, ...). `run` never throws for a non-zero exit:
 * callers decide what a failure means. It throws only when the program cannot be started.
 */
export interface CommandRunner {
  run(file: string, args: readonly string[], options?: { input?: string; timeoutMs?: number }): Promise<CommandResult>;
  /**
   * Starts a program that reads commands from its stdin until it is closed, or that reports events
   * until it is killed. `env` adds to upnpd's environment; `stdout: true` keeps its standard output to read.
   */
  start(file: string, args: readonly string[], options?: StartOptions): RunningCommand;
}

export interface StartOptions {
  readonly env?: Readonly<Record<string, string>>;
  readonly stdout?: boolean;
}

/** The C locale, so that the messages upnpd parses or quotes are the same on every machine. */
const COMMAND_ENV = { LC_ALL: 'C' };

export class ExecaCommandRunner implements CommandRunner {
  async run(file: string, args: readonly string[], options: { input?: string; timeoutMs?: number } = {}): Promise<CommandResult> {
    const result = await execa(file, args, {
      input: options.input,
      timeout: options.timeoutMs ?? 30_000,
      reject: false,
      stripFinalNewline: false,
      env: COMMAND_ENV,
    });
    if (result.failed && result.exitCode === undefined) {
      const err = new Error(`cannot run ${file}: ${result.shortMessage}`);
      (err as NodeJS.ErrnoException).code = (result as unknown as { code?: string }).code;
      throw err;
    }
    return { exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) };
  }

  start(file: string, args: readonly string[], options: StartOptions = {}): RunningCommand {
    return startWithExeca(file, args, options.env, options.stdout);
  }
}

/** `execa` for a long-running child: streams, not buffers; killed if upnpd exits first (execa's cleanup). */
export function startWithExeca(file: string, args: readonly string[], env: Readonly<Record<string, string>> = {}, stdout = false): RunningCommand {
  const subprocess = execa(file, args, {
    buffer: false,
    reject: false,
    stdin: 'pipe',
    stdout: stdout ? 'pipe' : 'ignore',
    stderr: 'pipe',
    env: { ...COMMAND_ENV, ...env },
  });
  const exited = subprocess.then(
    (result): CommandExit =>
      result.failed && result.exitCode === undefined && result.signal === undefined
        ? { error: result.shortMessage }
        : { exitCode: result.exitCode, signal: result.signal },
    (err: unknown): CommandExit => ({ error: String(err) }),
  );
  return {
    pid: subprocess.pid,
    stdin: subprocess.stdin,
    stderr: subprocess.stderr,
    ...(stdout && subprocess.stdout && { stdout: subprocess.stdout }),
    exited,
    kill: () => {
      subprocess.kill('SIGKILL');
    },
  };
}
