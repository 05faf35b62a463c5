import { spawn } from 'node:child_process';
import type { Logger } from 'upnpd';
import { NOTIFICATION_EVENTS, type NotificationEvent, type NotificationEventName, type NotificationSink } from './plugin.js';
import { DeliveryQueue } from './queue.js';

export interface CommandOptions {
  readonly path: string;
  readonly args: readonly string[];
  readonly events?: readonly NotificationEventName[];
  readonly timeoutMs: number;
  readonly concurrency: number;
  readonly maxQueue: number;
}

const CLOSE_WAIT_MS = 10_000;

/** The event as environment variables: UPNPD_EVENT, UPNPD_PROTOCOL, UPNPD_EXTERNAL_PORT, … */
export function environmentOf(event: NotificationEvent): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(event)) {
    if (value === undefined) continue;
    env[`UPNPD_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`] = String(value);
  }
  return env;
}

/** Runs the program per event, without a shell, with a time limit and at most `concurrency` at once. */
export class CommandNotifier implements NotificationSink {
  readonly wants: ReadonlySet<NotificationEventName>;
  private readonly queue: DeliveryQueue<NotificationEvent>;

  constructor(
    private readonly options: CommandOptions,
    private readonly logger: Logger,
  ) {
    this.wants = new Set(options.events ?? NOTIFICATION_EVENTS);
    this.queue = new DeliveryQueue({ maxQueue: options.maxQueue, concurrency: options.concurrency }, (event) => this.run(event));
  }

  deliver(event: NotificationEvent): void {
    this.queue.push(event);
  }

  close(): Promise<void> {
    return this.queue.drained(CLOSE_WAIT_MS);
  }

  private run(event: NotificationEvent): Promise<void> {
    return new Promise((resolve) => {
      // A process group of its own, so that the time limit ends what the program started too (a
      // script's hung curl): killing the program alone left those running, one more per event.
      // Its output is not read: nothing can hold this run once the program is gone.
      const child = spawn(this.options.path, [...this.options.args], {
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...environmentOf(event) },
        detached: true,
        stdio: 'ignore',
      });
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        killGroup(child.pid);
      }, this.options.timeoutMs);
      let finished = false;
      const done = (problem: string | undefined) => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        if (problem)
          this.logger.warn(
            { command: this.options.path, event: event.event },
            `notification command ${this.options.path} failed for ${event.event}: ${problem}`,
          );
        resolve();
      };
      child.once('error', (err) => done(err.message));
      child.once('exit', (code, signal) =>
        done(timedOut ? `killed after ${this.options.timeoutMs} ms` : code === 0 ? undefined : signal ? `killed by ${signal}` : `exit status ${code}`),
      );
    });
  }
}

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // Gone already.
  }
}
