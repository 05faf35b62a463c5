import { NamespaceProcess } from '../namespace-process.js';
import type { TestNamespace } from '../netns.js';

/**
 * A real client's harness-side handle: a program in a LAN namespace that prints one JSON object per
 * line (its events) and takes one command per stdin line. Lines that are not JSON (a library's own
 * logging) are kept in the output for error messages.
 */
export class LineClient<E extends { readonly event: string }> {
  private readonly events: E[] = [];
  private readonly waiters = new Set<() => void>();

  private constructor(private readonly process: NamespaceProcess) {
    process.onLine((line) => {
      let event: E;
      try {
        event = JSON.parse(line) as E;
      } catch {
        return;
      }
      if (typeof event !== 'object' || event === null || typeof event.event !== 'string') return;
      this.events.push(event);
      for (const wake of this.waiters) wake();
    });
    void process.exited().then(() => {
      for (const wake of this.waiters) wake();
    });
  }

  static start<E extends { readonly event: string }>(ns: TestNamespace, command: readonly string[], options: { cwd?: string } = {}): LineClient<E> {
    return new LineClient<E>(NamespaceProcess.start(ns, command, { ...options, stdin: true }));
  }

  /** Every event printed so far. */
  seen(): readonly E[] {
    return this.events;
  }

  /**
   * Resolves once `count` events satisfy `matches` (with all of them); rejects when the client exits
   * first, prints an `error` event, or the time is up. The message carries everything it printed.
   */
  waitFor(matches: (event: E) => boolean, timeoutMs: number, count = 1): Promise<E[]> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => finish(new Error(`no ${count} matching event(s) within ${timeoutMs} ms`)), timeoutMs);
      const check = () => {
        const found = this.events.filter(matches);
        if (found.length >= count) return finish(undefined, found);
        const error = this.events.find((e) => e.event === 'error');
        if (error) return finish(new Error(`the client reported an error: ${JSON.stringify(error)}`));
        if (!this.process.running) return finish(new Error('the client exited'));
      };
      const finish = (err: Error | undefined, found: E[] = []) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        if (err) reject(new Error(`${this.process.description}: ${err.message}\n${this.process.output()}`));
        else resolve(found);
      };
      this.waiters.add(check);
      check();
    });
  }

  send(command: string): void {
    this.process.writeLine(command);
  }

  output(): string {
    return this.process.output();
  }

  exited(): Promise<number> {
    return this.process.exited();
  }

  stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 10_000): Promise<number> {
    return this.process.stop(signal, graceMs);
  }
}
