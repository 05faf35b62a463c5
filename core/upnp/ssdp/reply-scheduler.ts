import { systemClock, type Clock } from '../../clock.js';

export interface ReplyLimits {
  /** Requests waiting for their answers, all sources together (a flood must not create unbounded timers). */
  readonly maxPending: number;
  /** Requests one source may have waiting, so one host cannot use up the others' share. */
  readonly maxPendingPerSource: number;
  /** Gap between the datagrams of one answer set (`ssdp:all` is ten of them; small clients have small buffers). */
  readonly spacingMs: number;
}

export const DEFAULT_REPLY_LIMITS: ReplyLimits = { maxPending: 64, maxPendingPerSource: 8, spacingMs: 10 };

export interface ReplyJob {
  /** Identifies the request: a copy of one still pending is dropped (clients send each search two or three times). */
  readonly key: string;
  /** The requester's address. */
  readonly source: string;
  /** How many datagrams `send` will be asked for. */
  readonly count: number;
  /** All datagrams should be out within this time (MX); 0 → the first one at once. */
  readonly windowMs: number;
  /** Sends datagram number `index`; must not throw. */
  readonly send: (index: number) => void;
}

export type ScheduleOutcome = 'scheduled' | 'duplicate' | 'too-many-pending';

interface PendingReply {
  readonly job: ReplyJob;
  timer: unknown;
  next: number;
}

/**
 * Answers M-SEARCHes after a random delay within their MX window, one timer per pending request,
 * datagrams of one request paced by `spacingMs`. Nothing blocks: every send runs from a timer.
 */
export class ReplyScheduler {
  private readonly pending = new Map<string, PendingReply>();

  constructor(
    private readonly limits: ReplyLimits = DEFAULT_REPLY_LIMITS,
    private readonly clock: Clock = systemClock,
    private readonly random: () => number = Math.random,
  ) {}

  get size(): number {
    return this.pending.size;
  }

  schedule(job: ReplyJob): ScheduleOutcome {
    if (this.pending.has(job.key)) return 'duplicate';
    if (this.pending.size >= this.limits.maxPending || this.pendingFrom(job.source) >= this.limits.maxPendingPerSource) {
      return 'too-many-pending';
    }
    // Start late enough in the window for the paced tail to end inside it too, when it fits.
    const latestStartMs = Math.max(0, job.windowMs - (job.count - 1) * this.limits.spacingMs);
    const reply: PendingReply = { job, timer: undefined, next: 0 };
    reply.timer = this.clock.setTimer(() => this.sendNext(reply), this.random() * latestStartMs);
    this.pending.set(job.key, reply);
    return 'scheduled';
  }

  cancelAll(): void {
    for (const reply of this.pending.values()) this.clock.clearTimer(reply.timer);
    this.pending.clear();
  }

  private sendNext(reply: PendingReply): void {
    reply.job.send(reply.next++);
    if (reply.next < reply.job.count) {
      reply.timer = this.clock.setTimer(() => this.sendNext(reply), this.limits.spacingMs);
    } else {
      this.pending.delete(reply.job.key);
    }
  }

  private pendingFrom(source: string): number {
    let count = 0;
    for (const reply of this.pending.values()) if (reply.job.source === source) count++;
    return count;
  }
}
