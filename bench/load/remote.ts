import type { TestNamespace } from '../../test/netns/netns.js';
import { NamespaceProcess, tsEntryCommand } from '../../test/netns/namespace-process.js';
import type { GeneratorCommand, GeneratorResultOf, ResultMessage } from './protocol.js';

const START_TIMEOUT_MS = 15_000;
/** A command's answer may come this long after its own time bound (the last requests, JSON, pipes). */
const ANSWER_MARGIN_MS = 20_000;

type Pending = { resolve: (result: unknown) => void; reject: (err: Error) => void; timer: NodeJS.Timeout };

/** The harness's handle on a load generator running in a LAN namespace. */
export class LoadGenerator {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();

  private constructor(private readonly process: NamespaceProcess) {
    process.onLine((line) => this.answer(line));
    void process.exited().then((code) => {
      for (const [id, p] of this.pending) this.settle(id, () => p.reject(new Error(`load generator exited (${code}):\n${process.output()}`)));
    });
  }

  /**
   * Starts the generator on `ns`, which maps to `client` (the namespace's own address); the
   * state-changing phases spread over `hosts` (more addresses of `ns`, one LAN host each).
   */
  static async start(ns: TestNamespace, client: string, hosts: readonly string[], lifetimeMs: number): Promise<LoadGenerator> {
    const args = ['--client', client, ...hosts.flatMap((host) => ['--host', host]), '--lifetime-ms', String(lifetimeMs)];
    const child = NamespaceProcess.start(ns, tsEntryCommand(new URL('./main.ts', import.meta.url), args), { stdin: true });
    try {
      await child.waitFor(/^LOAD READY$/m, START_TIMEOUT_MS);
    } catch (err) {
      await child.stop('SIGKILL');
      throw err;
    }
    return new LoadGenerator(child);
  }

  run<C extends GeneratorCommand>(command: C): Promise<GeneratorResultOf[C['kind']]> {
    const id = this.nextId++;
    const boundMs = command.kind === 'discover' ? command.timeoutMs : command.maxMs + warmupOf(command);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => this.settle(id, () => reject(new Error(`load generator: no answer to ${command.kind} within ${boundMs + ANSWER_MARGIN_MS} ms`))),
        boundMs + ANSWER_MARGIN_MS,
      );
      this.pending.set(id, { resolve: resolve as (result: unknown) => void, reject, timer });
      this.process.writeLine(JSON.stringify({ id, command }));
    });
  }

  stop(): Promise<number> {
    return this.process.stop('SIGTERM', 5_000);
  }

  private answer(line: string): void {
    let message: ResultMessage;
    try {
      message = JSON.parse(line) as ResultMessage;
    } catch {
      return; // not a protocol line (a warning printed by Node, say)
    }
    const p = this.pending.get(message.id);
    if (!p) return;
    this.settle(message.id, () => (message.ok ? p.resolve(message.result) : p.reject(new Error(message.error))));
  }

  private settle(id: number, settle: () => void): void {
    const p = this.pending.get(id);
    if (!p) return;
    clearTimeout(p.timer);
    this.pending.delete(id);
    settle();
  }
}

function warmupOf(command: GeneratorCommand): number {
  return 'warmupMs' in command ? command.warmupMs : 0;
}
