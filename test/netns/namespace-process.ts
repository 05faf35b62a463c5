import { spawn, type ChildProcess } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { TestNamespace } from './netns.js';

/** How much of a process's output is kept for error messages (miniupnpd can be chatty). */
const OUTPUT_TAIL_CHARS = 64 * 1024;

/**
 * A process started with `ip netns exec` (which execs it, so `pid` is the program's own: the
 * harness reads its RSS from /proc). Output is kept as a bounded tail; stdout lines can be
 * watched, stdin written, for helpers that speak a line protocol.
 */
export class NamespaceProcess {
  private tail = '';
  private exitCode: number | undefined;
  private readonly exitPromise: Promise<number>;
  private readonly lineListeners = new Set<(line: string) => void>();
  private partialLine = '';

  private constructor(
    private readonly child: ChildProcess,
    readonly description: string,
  ) {
    child.stdout?.setEncoding('utf8');
    child.stderr?.setEncoding('utf8');
    child.stdout?.on('data', (chunk: string) => {
      this.append(chunk);
      this.splitLines(chunk);
    });
    child.stderr?.on('data', (chunk: string) => this.append(chunk));
    this.exitPromise = new Promise((resolve) => {
      child.on('error', (err) => {
        this.append(`\n[spawn error: ${err.message}]\n`);
        this.exitCode ??= 127;
        resolve(this.exitCode);
      });
      child.on('close', (code, signal) => {
        this.exitCode ??= code ?? 128 + (signal ? osConstants.signals[signal] : 0);
        resolve(this.exitCode);
      });
    });
  }

  static start(ns: TestNamespace, command: readonly string[], options: { cwd?: string; stdin?: boolean } = {}): NamespaceProcess {
    const child = spawn('ip', ['netns', 'exec', ns.name, ...command], {
      cwd: options.cwd,
      stdio: [options.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    });
    return new NamespaceProcess(child, `${command.join(' ')} (in ${ns.name})`);
  }

  get pid(): number {
    if (this.child.pid === undefined) throw new Error(`${this.description} has no pid: it did not start`);
    return this.child.pid;
  }

  get running(): boolean {
    return this.exitCode === undefined;
  }

  /** The last 64 KiB of stdout and stderr, interleaved as they arrived. */
  output(): string {
    return this.tail;
  }

  exited(): Promise<number> {
    return this.exitPromise;
  }

  /** Calls `listener` with each complete stdout line; returns a function that stops it. */
  onLine(listener: (line: string) => void): () => void {
    this.lineListeners.add(listener);
    return () => this.lineListeners.delete(listener);
  }

  writeLine(line: string): void {
    if (!this.child.stdin) throw new Error(`${this.description} was started without stdin`);
    this.child.stdin.write(`${line}\n`);
  }

  /** Resolves with the first stdout/stderr match of `pattern`; rejects on timeout or exit. */
  waitFor(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const match = this.tail.match(pattern);
        if (match) finish(() => resolve(match));
        else if (this.exitCode !== undefined)
          finish(() => reject(new Error(`${this.description} exited (${this.exitCode}) before printing ${pattern}:\n${this.tail}`)));
      };
      const timer = setTimeout(() => finish(() => reject(new Error(`${this.description}: no ${pattern} within ${timeoutMs} ms:\n${this.tail}`))), timeoutMs);
      const finish = (settle: () => void) => {
        clearTimeout(timer);
        this.child.stdout?.off('data', check);
        this.child.stderr?.off('data', check);
        this.child.off('close', check);
        settle();
      };
      this.child.stdout?.on('data', check);
      this.child.stderr?.on('data', check);
      this.child.on('close', check);
      check();
    });
  }

  /** Sends `signal`, then SIGKILL if it has not exited after `graceMs`. Resolves with the exit code. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 10_000): Promise<number> {
    if (this.exitCode !== undefined) return this.exitCode;
    this.child.kill(signal);
    let timer: NodeJS.Timeout | undefined;
    const graceOver = new Promise<'grace over'>((resolve) => {
      timer = setTimeout(() => resolve('grace over'), graceMs);
    });
    const first = await Promise.race([this.exitPromise, graceOver]);
    clearTimeout(timer);
    if (first !== 'grace over') return first;
    this.child.kill('SIGKILL');
    return this.exitPromise;
  }

  kill(): Promise<number> {
    return this.stop('SIGKILL', 5_000);
  }

  private append(chunk: string): void {
    this.tail = (this.tail + chunk).slice(-OUTPUT_TAIL_CHARS);
  }

  private splitLines(chunk: string): void {
    const lines = (this.partialLine + chunk).split('\n');
    this.partialLine = lines.pop()!;
    for (const line of lines) for (const listener of this.lineListeners) listener(line);
  }
}

/** The command that runs one of the harness's TypeScript entry points with this Node and tsx. */
export function tsEntryCommand(entry: URL, args: readonly string[]): string[] {
  return [process.execPath, '--import', import.meta.resolve('tsx'), fileURLToPath(entry), ...args];
}
