import { createHmac } from 'node:crypto';
import type { Clock, Logger } from 'upnpd';
import { NOTIFICATION_EVENTS, type NotificationEvent, type NotificationEventName, type NotificationSink } from './plugin.js';
import { DeliveryQueue } from './queue.js';

export interface WebhookOptions {
  readonly url: string;
  readonly secret?: string;
  readonly events?: readonly NotificationEventName[];
  readonly timeoutMs: number;
  readonly maxQueue: number;
  readonly attempts: number;
}

/** The header that carries `sha256=<hex HMAC-SHA256 of the body with the secret>`. */
export const SIGNATURE_HEADER = 'X-Upnpd-Signature-256';
const FIRST_RETRY_MS = 1_000;
const CLOSE_WAIT_MS = 5_000;

/** POSTs each event as JSON, one at a time and in order, retrying with a doubling backoff. */
export class WebhookNotifier implements NotificationSink {
  readonly wants: ReadonlySet<NotificationEventName>;
  private readonly queue: DeliveryQueue<NotificationEvent>;
  private closed = false;

  constructor(
    private readonly options: WebhookOptions,
    private readonly logger: Logger,
    private readonly clock: Clock,
  ) {
    this.wants = new Set(options.events ?? NOTIFICATION_EVENTS);
    this.queue = new DeliveryQueue({ maxQueue: options.maxQueue, concurrency: 1 }, (event) => this.post(event));
  }

  deliver(event: NotificationEvent): void {
    const before = this.queue.dropped;
    this.queue.push(event);
    if (this.queue.dropped > before && this.queue.dropped % 100 === 1) {
      this.logger.warn(
        { url: this.options.url, dropped: this.queue.dropped },
        `webhook ${this.options.url} is behind: ${this.queue.dropped} event(s) dropped so far`,
      );
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.queue.drained(CLOSE_WAIT_MS);
  }

  private async post(event: NotificationEvent): Promise<void> {
    const body = JSON.stringify(event);
    const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'upnpd' };
    if (this.options.secret) headers[SIGNATURE_HEADER] = `sha256=${createHmac('sha256', this.options.secret).update(body).digest('hex')}`;
    for (let attempt = 1; attempt <= this.options.attempts; attempt++) {
      let problem: string;
      try {
        const response = await fetch(this.options.url, { method: 'POST', headers, body, signal: AbortSignal.timeout(this.options.timeoutMs) });
        if (response.ok) return;
        problem = `HTTP ${response.status}`;
      } catch (err) {
        problem = err instanceof Error ? err.message : String(err);
      }
      if (attempt === this.options.attempts || this.closed) {
        this.logger.warn(
          { url: this.options.url, event: event.event, attempts: attempt },
          `webhook ${this.options.url}: ${event.event} not delivered (${problem})`,
        );
        return;
      }
      await new Promise<void>((resolve) => this.clock.setTimer(resolve, FIRST_RETRY_MS * 2 ** (attempt - 1)));
    }
  }
}
