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
 *
 * Fair share: when the queue is full, a request from a source holding fewer pending replies than
 * the biggest holder takes the place of that holder's newest one. So sources together holding the
 * whole queue (one host flooding from ten addresses) cannot keep another host's search out.
 */
export class ReplyScheduler {
  private readonly pending = new Map<string, PendingReply>();
  private readonly perSource = new Map<string, number>();

  constructor(
    private readonly limits: ReplyLimits = DEFAULT_REPLY_LIMITS,
    private readonly clock: Clock = systemClock,
    private readonly random: () => number = Math.random,
    /** Told when a pending reply of `source` is dropped to make room for a smaller holder. */
    private readonly onEvicted: (source: string) => void = () => {},
  ) {}

  get size(): number {
    return this.pending.size;
  }

  schedule(job: ReplyJob): ScheduleOutcome {
    if (this.pending.has(job.key)) return 'duplicate';
    const held = this.perSource.get(job.source) ?? 0;
    if (held >= this.limits.maxPendingPerSource) return 'too-many-pending';
    if (this.pending.size >= this.limits.maxPending && !this.evictForSourceHolding(held)) return 'too-many-pending';
    // Start late enough in the window for the paced tail to end inside it too, when it fits.
    const latestStartMs = Math.max(0, job.windowMs - (job.count - 1) * this.limits.spacingMs);
    const reply: PendingReply = { job, timer: undefined, next: 0 };
    reply.timer = this.clock.setTimer(() => this.sendNext(reply), this.random() * latestStartMs);
    this.pending.set(job.key, reply);
    this.perSource.set(job.source, held + 1);
    return 'scheduled';
  }

  cancelAll(): void {
    for (const reply of this.pending.values()) this.clock.clearTimer(reply.timer);
    this.pending.clear();
    this.perSource.clear();
  }

  private sendNext(reply: PendingReply): void {
    reply.job.send(reply.next++);
    if (reply.next < reply.job.count) {
      reply.timer = this.clock.setTimer(() => this.sendNext(reply), this.limits.spacingMs);
    } else {
      this.remove(reply);
    }
  }

  /** Drops the newest pending reply of the biggest holder if it holds at least two more than `held`. */
  private evictForSourceHolding(held: number): boolean {
    let biggest: string | undefined;
    let most = 0;
    for (const [source, count] of this.perSource) {
      if (count > most) [biggest, most] = [source, count];
    }
    if (biggest === undefined || most < held + 2) return false;
    let newest: PendingReply | undefined;
    for (const reply of this.pending.values()) if (reply.job.source === biggest) newest = reply;
    this.clock.clearTimer(newest!.timer);
    this.remove(newest!);
    this.onEvicted(biggest);
    return true;
  }

  private remove(reply: PendingReply): void {
    this.pending.delete(reply.job.key);
    const held = (this.perSource.get(reply.job.source) ?? 1) - 1;
    if (held > 0) this.perSource.set(reply.job.source, held);
    else this.perSource.delete(reply.job.source);
  }
}
