import type { Clock } from 'upnpd';

/**
 * RFC 6886 §3.2.1 (and RFC 6887 §14.1.3 for PCP): on start and on every external-address change,
 * the gateway tells the LAN's all-hosts group, up to 10 times, the first interval 250 ms, each
 * next one twice the last.
 */
export const ANNOUNCEMENTS = { count: 10, firstIntervalMs: 250, group: '224.0.0.1', port: 5350 } as const;

/** Runs one announcement sequence at a time; a new start cancels the one still running. */
export class Announcer {
  private timer: unknown = undefined;

  constructor(
    private readonly clock: Clock,
    private readonly send: () => void,
  ) {}

  start(): void {
    this.stop();
    let sent = 0;
    let interval: number = ANNOUNCEMENTS.firstIntervalMs;
    const next = () => {
      this.timer = undefined;
      this.send();
      sent += 1;
      if (sent >= ANNOUNCEMENTS.count) return;
      this.timer = this.clock.setTimer(next, interval);
      interval *= 2;
    };
    next();
  }

  stop(): void {
    if (this.timer !== undefined) this.clock.clearTimer(this.timer);
    this.timer = undefined;
  }
}
