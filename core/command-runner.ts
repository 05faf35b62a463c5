import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { onExit } from 'signal-exit';

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

/** Output a command may print before it is killed as runaway (a listing of 5000 mappings is about 2 MB). */
const MAX_OUTPUT_BYTES = 64 * 1024 * 1024;
/** After a timeout's SIGTERM, how long a command has before SIGKILL. */
const FORCE_KILL_AFTER_MS = 5_000;

/**
 * Runs programs with node:child_process. (It used execa until 2026-12: execa loads some 260
 * modules for features upnpd does not use, about 3 MB of the daemon's memory; what upnpd needs of
 * it is the little below.)
 */
export class ProcessCommandRunner implements CommandRunner {
  run(file: string, args: readonly string[], options: { input?: string; timeoutMs?: number } = {}): Promise<CommandResult> {
    return runCommand(file, args, options);
  }

  start(file: string, args: readonly string[], options: StartOptions = {}): RunningCommand {
    return startCommand(file, args, options);
  }
}

/**
 * Runs `file` to its end with `input` on its standard input (none: /dev/null) and collects its
 * output as text. Resolves with any exit code; rejects (with the errno `code`, such as ENOENT) only
 * when the program cannot be started, or is ended by a signal: its timeout (SIGTERM, then SIGKILL
 * after 5 s), too much output, or another process.
 */
export function runCommand(file: string, args: readonly string[], options: { input?: string; timeoutMs?: number } = {}): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      env: { ...process.env, ...COMMAND_ENV },
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let outputBytes = 0;
    let killedFor: string | undefined;
    const kill = (why: string) => {
      if (killedFor !== undefined) return;
      killedFor = why;
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), FORCE_KILL_AFTER_MS).unref();
    };
    const collect = (into: Buffer[]) => (chunk: Buffer) => {
      outputBytes += chunk.length;
      if (outputBytes > MAX_OUTPUT_BYTES) kill(`more than ${MAX_OUTPUT_BYTES} bytes of output`);
      else into.push(chunk);
    };
    child.stdout?.on('data', collect(stdout));
    child.stderr?.on('data', collect(stderr));
    const timeoutMs = options.timeoutMs ?? 30_000;
    const timer = setTimeout(() => kill(`timed out after ${timeoutMs} ms`), timeoutMs);
    child.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(Object.assign(new Error(`cannot run ${file}: ${err.message}`), { code: err.code }));
    });
    child.once('close', (exitCode, signal) => {
      clearTimeout(timer);
      if (exitCode === null) {
        reject(new Error(`cannot run ${file}: ${killedFor ?? `killed by ${signal}`}`));
        return;
      }
      resolve({ exitCode, stdout: Buffer.concat(stdout).toString('utf8'), stderr: Buffer.concat(stderr).toString('utf8') });
    });
    if (child.stdin) {
      // A program that exits without reading all its input: its exit code says what happened.
      child.stdin.on('error', () => undefined);
      child.stdin.end(options.input);
    }
  });
}

/**
 * Long-running children still alive, killed when upnpd exits, also on a crash or a signal it does
 * not handle itself (signal-exit, as execa did), so that no `ip monitor` or `nft monitor` is left behind.
 */
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;

function killOnExit(child: ChildProcess): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    onExit(() => {
      for (const running of liveChildren) running.kill('SIGKILL');
    });
  }
  liveChildren.add(child);
}

/** StartOptions (env: added to upnpd's, which gets LC_ALL=C; stdout: kept to read, else /dev/null), and: */
export interface StartCommandOptions extends StartOptions {
  /** Its standard input: a pipe to write to (the default) or /dev/null. */
  readonly stdin?: 'pipe' | 'ignore';
  /** Its standard error: a pipe to read (the default) or /dev/null. */
  readonly stderr?: 'pipe' | 'ignore';
  /**
   * Its own process group: a Ctrl-C meant for upnpd does not reach it, and it is not killed when
   * upnpd exits (the syslog helper sends what it has read, upnpd's last words, then ends itself).
   */
  readonly detached?: boolean;
}

/** Where `file` is found as the shell would look for it (PATH unless it names a path), if it is an executable file. */
function programPath(file: string): string | undefined {
  const candidates = file.includes('/') ? [file] : (process.env.PATH ?? '').split(':').map((dir) => join(dir || '.', file));
  return candidates.find((candidate) => {
    try {
      accessSync(candidate, constants.X_OK);
      return statSync(candidate).isFile();
    } catch {
      return false;
    }
  });
}

/**
 * The program and arguments that start `file` with a parent-death signal (SIGKILL) through
 * util-linux's `setpriv`, so that the helper dies with upnpd even when no exit hook runs (SIGKILL,
 * the OOM killer): a monitor left behind would run beside the next upnpd's own, unseen. Only when
 * both are found: a missing `file` is then spawned directly, and fails as such (ENOENT).
 */
function withParentDeathSignal(file: string, args: readonly string[]): [string, readonly string[]] {
  const setpriv = programPath('setpriv');
  if (!setpriv || !programPath(file)) return [file, args];
  // setpriv execs the program: the pid and the command line are the program's own.
  return [setpriv, ['--pdeathsig', 'KILL', '--', file, ...args]];
}

/**
 * A long-running child: streams, not collected output; killed if upnpd exits first, also when it
 * is killed (see withParentDeathSignal), unless detached.
 */
export function startCommand(file: string, args: readonly string[], options: StartCommandOptions = {}): RunningCommand {
  const [program, argv] = options.detached ? [file, args] : withParentDeathSignal(file, args);
  const child = spawn(program, argv, {
    stdio: [options.stdin ?? 'pipe', options.stdout ? 'pipe' : 'ignore', options.stderr ?? 'pipe'],
    env: { ...process.env, ...COMMAND_ENV, ...options.env },
    detached: options.detached ?? false,
  });
  if (!options.detached) killOnExit(child);
  const exited = new Promise<CommandExit>((resolve) => {
    child.once('error', (err) => resolve({ error: err.message }));
    child.once('close', (exitCode, signal) => resolve(exitCode === null ? { signal: signal ?? undefined } : { exitCode }));
  }).finally(() => liveChildren.delete(child));
  return {
    pid: child.pid,
    // Streams the options left out are /dev/null: an empty stream stands in for them.
    stdin: child.stdin ?? new PassThrough(),
    stderr: child.stderr ?? new PassThrough(),
    ...(options.stdout && child.stdout && { stdout: child.stdout }),
    exited,
    kill: () => {
      child.kill('SIGKILL');
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
