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

/** A helper process as HelperSlot keeps it: its command, whether it has exited, and how it is ended. */
export interface SlotProcess {
  readonly command: RunningCommand;
  readonly hasExited: boolean;
  end(timeoutMs: number): Promise<void>;
}

/**
 * The one long-lived helper process of a session (`nft -i`, `iptables-restore`) and the jobs that
 * use it, one at a time: the process is started on first use (`acquire`), started again after it
 * has exited or was dropped, and ended `idleMs` after the last job, or by `close` once the queued
 * jobs have run. What a job does with the process, and when it gives up on one, is the session's.
 */
export class HelperSlot<P extends SlotProcess> {
  private process: P | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private idleTimer: NodeJS.Timeout | undefined;

  constructor(private readonly limits: { readonly idleMs: number; readonly timeoutMs: number }) {}

  /** The running process, if one runs. */
  get current(): P | undefined {
    return this.process;
  }

  /** Runs `job` after the queued ones; rejects as it does. */
  enqueue<T>(job: () => Promise<T>): Promise<T> {
    clearTimeout(this.idleTimer);
    const result = this.queue.then(job);
    const queued = (this.queue = result.catch(() => undefined));
    void queued.then(() => this.armIdleTimer(queued));
    return result;
  }

  /** The running process, or a new one from `start` when none runs or it has exited. */
  acquire(start: () => P): P {
    if (this.process?.hasExited) this.process = undefined;
    return (this.process ??= start());
  }

  /** Forgets `process` (it failed): the next job starts a new one. */
  drop(process: P): void {
    if (this.process === process) this.process = undefined;
  }

  /** Ends the process once queued jobs have run. A later job starts a new one. */
  async close(): Promise<void> {
    clearTimeout(this.idleTimer);
    await this.queue;
    await this.retire(true);
  }

  /** Ends the current process (see SlotProcess.end); jobs do not wait for that (`wait: false`), `close` does. */
  async retire(wait: boolean): Promise<void> {
    const process = this.process;
    this.process = undefined;
    const ended = process?.end(this.limits.timeoutMs);
    if (wait) await ended;
  }

  /** Ends the process `idleMs` after the last queued job, unless another is queued meanwhile. */
  private armIdleTimer(last: Promise<unknown>): void {
    if (last !== this.queue || !this.process) return;
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      if (last === this.queue) void this.retire(false);
    }, this.limits.idleMs);
    this.idleTimer.unref();
  }
}
