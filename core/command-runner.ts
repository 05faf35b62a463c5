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

/**
 * Ends a long-running command that reads commands until its input closes (`nft -i`,
 * `iptables-restore`): closes its input, and kills it if it has not exited within `timeoutMs`.
 */
export async function endCommand(command: RunningCommand, timeoutMs: number): Promise<void> {
  command.stdin.end();
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => {
    timer = setTimeout(() => resolve('late'), timeoutMs);
  });
  if ((await Promise.race([command.exited, late])) === 'late') command.kill();
  clearTimeout(timer);
}

/**
 * What a long-running command has printed, and its exit once known, gathered as they come:
 * `stderr` (and `stdout`, when it was started with it) grow until the reader cuts off what it has
 * used; `onProgress` runs after each chunk and at the exit. A write to the input of a command that
 * has died is dropped (its exit says why).
 */
export class CommandOutput {
  stdout = '';
  stderr = '';
  exit: CommandExit | undefined;
  onProgress: (() => void) | undefined;

  constructor(command: RunningCommand) {
    command.stdout?.setEncoding('utf8');
    command.stdout?.on('data', (chunk: string) => {
      this.stdout += chunk;
      this.onProgress?.();
    });
    command.stderr.setEncoding('utf8');
    command.stderr.on('data', (chunk: string) => {
      this.stderr += chunk;
      this.onProgress?.();
    });
    command.stdin.on('error', () => undefined);
    void command.exited.then((exit) => {
      this.exit = exit;
      this.onProgress?.();
    });
  }

  get hasExited(): boolean {
    return this.exit !== undefined;
  }
}
