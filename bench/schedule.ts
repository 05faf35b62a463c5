import { performance } from 'node:perf_hooks';

export interface Task<D extends { readonly name: string }, G extends string> {
  readonly daemon: D;
  readonly group: G;
}

/**
 * Which (daemon, group) runs in each repeat so that the whole run stays within its time budget.
 * The first repeat runs everything while the deadline has not passed; later repeats run the
 * cheapest tasks first and skip a task whose longest run so far would not end before the deadline (miniupnpd's table group alone can
 * take minutes). What was skipped is reported, never hidden.
 */
export class Schedule<D extends { readonly name: string }, G extends string> {
  private readonly longestMs = new Map<string, number>();
  private readonly runs = new Map<string, number>();

  constructor(
    private readonly repeats: number,
    private readonly deadline: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** The tasks of one repeat, decided one at a time (so that each sees the time left when its turn comes). */
  *tasks(repeat: number, all: readonly Task<D, G>[]): Generator<Task<D, G>> {
    if (repeat === 1) {
      // Everything once, as long as there is time left at all (past the deadline the watchdog would
      // end the run before its report is written).
      for (const task of all) {
        if (this.now() < this.deadline) yield task;
        else this.runs.set(keyOf(task), this.runs.get(keyOf(task)) ?? 0);
      }
      return;
    }
    const cheapestFirst = [...all].sort((a, b) => this.estimate(a) - this.estimate(b));
    for (const task of cheapestFirst) {
      if (this.now() + this.estimate(task) <= this.deadline) yield task;
    }
  }

  /** Runs one task, noting how long it took. */
  async timed<T>(daemon: D, group: G, run: () => Promise<T>): Promise<T> {
    const key = keyOf({ daemon, group });
    const start = this.now();
    try {
      return await run();
    } finally {
      this.longestMs.set(key, Math.max(this.longestMs.get(key) ?? 0, this.now() - start));
      this.runs.set(key, (this.runs.get(key) ?? 0) + 1);
    }
  }

  /** Which tasks ran fewer times than asked, and why; undefined when every task ran every repeat. */
  shortfall(): string | undefined {
    const short = [...this.runs]
      .filter(([, runs]) => runs < this.repeats)
      .map(([key, runs]) => {
        const longest = this.longestMs.get(key);
        const why = longest === undefined ? 'not reached before the time was up' : `one takes about ${Math.round(longest / 1000)} s`;
        return `${key.replace('/', ' ')}: ${runs} of ${this.repeats} (${why})`;
      });
    return short.length > 0 ? `the time budget allowed ${short.join('; ')}` : undefined;
  }

  private estimate(task: Task<D, G>): number {
    return this.longestMs.get(keyOf(task)) ?? 0;
  }
}

function keyOf(task: Task<{ readonly name: string }, string>): string {
  return `${task.daemon.name}/${task.group}`;
}
