import type { Logger } from '../../logger.js';
import { messageOf } from '../../errors.js';
import { propertySetXml } from './propertyset.js';
import type { NotifyMessage } from './notifier.js';

/** SEQ is a 32-bit counter; after 4294967295 it continues at 1, since 0 marks the initial event. */
export function nextEventKey(key: number): number {
  return key >= 0xffffffff ? 1 : key + 1;
}

export interface SubscriptionOptions {
  readonly sid: string;
  /** The subscriber's address: every delivery URL points at it. */
  readonly peer: string;
  readonly eventPath: string;
  readonly callbacks: readonly URL[];
  readonly deliver: (urls: readonly URL[], message: NotifyMessage) => Promise<void>;
  /** Events waiting beyond this many are merged into the last one waiting. */
  readonly maxQueuedEvents: number;
  /** After this many failed events in a row the subscriber counts as gone. */
  readonly maxDeliveryFailures: number;
  /** Called once when the subscriber is gone; the owner removes the subscription. */
  readonly onUndeliverable: (reason: string) => void;
  readonly logger: Logger;
}

/**
 * One subscriber's event stream. Events go out one at a time, in order, each with the next SEQ;
 * none go out before `start()` (the SUBSCRIBE response must reach the subscriber first).
 */
export class Subscription {
  readonly sid: string;
  readonly peer: string;
  readonly eventPath: string;
  private readonly queue: Record<string, string>[] = [];
  private seq = 0;
  private failures = 0;
  private started = false;
  private cancelled = false;
  private inFlight: Promise<void> | undefined;

  constructor(private readonly options: SubscriptionOptions) {
    this.sid = options.sid;
    this.peer = options.peer;
    this.eventPath = options.eventPath;
  }

  /** Queues an event. When the queue is full the newest waiting event absorbs the change: values are state, the latest wins. */
  enqueue(variables: Readonly<Record<string, string>>): void {
    if (this.cancelled) return;
    const last = this.queue.at(-1);
    if (last && this.queue.length >= this.options.maxQueuedEvents) Object.assign(last, variables);
    else this.queue.push({ ...variables });
    this.pump();
  }

  /** Allows deliveries to begin. */
  start(): void {
    this.started = true;
    this.pump();
  }

  /** Drops waiting events and sends no more. A delivery in flight runs to its end (or its deadline). */
  cancel(): void {
    this.cancelled = true;
    this.queue.length = 0;
  }

  /** Settles when no delivery is in flight. */
  async idle(): Promise<void> {
    while (this.inFlight) await this.inFlight;
  }

  private pump(): void {
    if (!this.started || this.cancelled || this.inFlight) return;
    const variables = this.queue.shift();
    if (!variables) return;
    const message: NotifyMessage = { sid: this.sid, seq: this.seq, body: propertySetXml(variables) };
    // The event key advances with every message, delivered or not, so a subscriber can tell it missed one.
    this.seq = nextEventKey(this.seq);
    this.inFlight = this.options
      .deliver(this.options.callbacks, message)
      .then(
        () => {
          this.failures = 0;
        },
        (err: unknown) => this.recordFailure(message.seq, messageOf(err)),
      )
      .finally(() => {
        this.inFlight = undefined;
        this.pump();
      });
  }

  private recordFailure(seq: number, reason: string): void {
    if (this.cancelled) return;
    this.failures += 1;
    this.options.logger.debug({ sid: this.sid, seq, failures: this.failures, reason }, 'event not delivered');
    if (this.failures >= this.options.maxDeliveryFailures) {
      this.cancel();
      this.options.onUndeliverable(`${this.failures} events in a row not delivered, last: ${reason}`);
    }
  }
}
