import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { systemClock, type Clock } from '../../clock.js';
import { messageOf } from '../../errors.js';
import type { Logger } from '../../logger.js';
import { parseIpv6 } from '../../net/ipv6.js';
import { normalizeAddress } from '../../net/network-info.js';
import { sendReply } from '../http/reply.js';
import { serverString } from '../http/server-string.js';
import { parseGenaRequest, type GenaRequest } from './headers.js';
import { deliverNotify } from './notifier.js';
import { assertStateVariables } from './propertyset.js';
import { SubscriptionRegistry } from './registry.js';
import { Subscription } from './subscription.js';

/** A service whose state variables can be subscribed to. */
export interface EventedService {
  /** The eventSubURL path. */
  readonly eventPath: string;
  /** e.g. urn:schemas-upnp-org:service:WANIPConnection:2 */
  readonly serviceType: string;
  /** Current values of the evented variables (for the initial event). */
  variables(): Record<string, string>;
}

export interface EventServiceOptions {
  readonly logger: Logger;
  readonly maxSubscriptionsPerClient: number;
  /** Subscriptions of all clients together. */
  readonly maxSubscriptions?: number;
  /** Longest delivery URL accepted, in characters. */
  readonly maxCallbackLength?: number;
  /** Time one NOTIFY exchange may take. */
  readonly notifyTimeoutMs?: number;
  /** After this many events in a row that could not be delivered, the subscription is dropped. */
  readonly maxDeliveryFailures?: number;
  /** Events waiting per subscription; beyond it changes are merged into the last one waiting. */
  readonly maxQueuedEvents?: number;
  readonly clock?: Clock;
  /** SERVER header of our responses; `serverString()` by default. */
  readonly serverString?: string;
}

type Limits = Required<Omit<EventServiceOptions, 'logger' | 'clock' | 'serverString'>>;

const DEFAULT_LIMITS: Omit<Limits, 'maxSubscriptionsPerClient'> = {
  maxSubscriptions: 256,
  maxCallbackLength: 256,
  notifyTimeoutMs: 5000,
  maxDeliveryFailures: 3,
  maxQueuedEvents: 8,
};

/**
 * GENA eventing (UDA 1.1 §4): answers SUBSCRIBE / UNSUBSCRIBE on the eventSubURLs and sends
 * NOTIFY to the subscribers. A full table refuses new subscriptions with 503 (UDA: a publisher
 * unable to accept a subscription answers 5xx), except from a subscriber holding at least two
 * fewer than the biggest holder, whose oldest subscription then gives way.
 */
export class EventService {
  private readonly logger: Logger;
  private readonly settings: Limits;
  private readonly serverString: string;
  private readonly registry: SubscriptionRegistry;

  /** Live subscriptions. */
  get subscriptions(): number {
    return this.registry.size;
  }
  private readonly closing = new AbortController();

  constructor(options: EventServiceOptions) {
    this.logger = options.logger.child({ component: 'gena' });
    this.settings = {
      maxSubscriptions: options.maxSubscriptions ?? DEFAULT_LIMITS.maxSubscriptions,
      maxCallbackLength: options.maxCallbackLength ?? DEFAULT_LIMITS.maxCallbackLength,
      notifyTimeoutMs: options.notifyTimeoutMs ?? DEFAULT_LIMITS.notifyTimeoutMs,
      maxDeliveryFailures: options.maxDeliveryFailures ?? DEFAULT_LIMITS.maxDeliveryFailures,
      maxQueuedEvents: options.maxQueuedEvents ?? DEFAULT_LIMITS.maxQueuedEvents,
      maxSubscriptionsPerClient: options.maxSubscriptionsPerClient,
    };
    this.serverString = options.serverString ?? serverString();
    this.registry = new SubscriptionRegistry(options.clock ?? systemClock, this.logger, this.settings.maxSubscriptions);
  }

  /** Answers a SUBSCRIBE or UNSUBSCRIBE for `service`. Never throws. */
  handle(req: IncomingMessage, res: ServerResponse, service: EventedService, peerAddress: string): void {
    try {
      // SUBSCRIBE has no body; read away anything sent so the connection stays usable.
      req.resume();
      this.answer(req, res, service, normalizeAddress(peerAddress));
    } catch (err) {
      this.logger.error({ err: messageOf(err), eventPath: service.eventPath }, 'event subscription request failed');
      if (!res.headersSent) this.respond(res, 500);
      else res.destroy();
    }
  }

  /** Sends `changed` to every live subscriber of `service`. Throws TypeError for a name that is not a variable name (a caller's bug). */
  publish(service: EventedService, changed: Record<string, string>): void {
    if (this.closing.signal.aborted || Object.keys(changed).length === 0) return;
    assertStateVariables(changed);
    for (const subscription of this.registry.forEventPath(service.eventPath)) subscription.enqueue(changed);
  }

  /** Drops every subscription, aborts deliveries in flight, and waits until they have settled. */
  async close(): Promise<void> {
    this.closing.abort();
    await Promise.allSettled(this.registry.clear().map((s) => s.idle()));
  }

  private answer(req: IncomingMessage, res: ServerResponse, service: EventedService, peer: string): void {
    if (this.closing.signal.aborted) return this.respond(res, 503);
    const parsed = parseGenaRequest(req.method, req.headers, peer, this.settings);
    if (!parsed.ok) {
      this.logger.debug({ peer, eventPath: service.eventPath, status: parsed.status, reason: parsed.reason }, 'event subscription request refused');
      return this.respond(res, parsed.status, parsed.status === 405 ? { ALLOW: 'SUBSCRIBE, UNSUBSCRIBE' } : {});
    }
    const request = parsed.request;
    switch (request.kind) {
      case 'subscribe':
        return this.subscribe(res, service, peer, request);
      case 'renew':
        return this.renew(res, service, peer, request);
      case 'unsubscribe':
        return this.unsubscribe(res, service, peer, request);
    }
  }

  private subscribe(res: ServerResponse, service: EventedService, peer: string, request: Extract<GenaRequest, { kind: 'subscribe' }>): void {
    if (this.registry.countFrom(peer) >= this.settings.maxSubscriptionsPerClient) return this.refuseSubscription(res, service, peer);
    const initial = service.variables();
    assertStateVariables(initial);
    const sid = `uuid:${randomUUID()}`;
    // A link-local subscriber is reached out of the interface its request came in on.
    const zone = peer.includes('%') ? parseIpv6(peer)?.zone : undefined;
    const subscription = new Subscription({
      sid,
      peer,
      eventPath: service.eventPath,
      callbacks: request.callbacks,
      deliver: (urls, message) => deliverNotify(urls, message, { timeoutMs: this.settings.notifyTimeoutMs, signal: this.closing.signal, zone }),
      maxQueuedEvents: this.settings.maxQueuedEvents,
      maxDeliveryFailures: this.settings.maxDeliveryFailures,
      onUndeliverable: (reason) => {
        if (this.registry.remove(sid)) this.logger.info({ sid, peer, reason }, 'subscriber dropped');
      },
      logger: this.logger,
    });
    const { added, displaced } = this.registry.add(subscription, request.timeoutSeconds);
    if (!added) return this.refuseSubscription(res, service, peer);
    if (displaced)
      this.logger.info({ sid: displaced.sid, peer: displaced.peer, for: peer }, 'subscription dropped: the table is full and its holder holds the most');
    subscription.enqueue(initial);
    // The initial event (SEQ 0) may only follow the response that tells the subscriber its SID.
    res.on('finish', () => subscription.start());
    res.on('close', () => {
      if (!res.writableFinished) this.registry.remove(sid);
    });
    this.logger.debug({ sid, peer, eventPath: service.eventPath, timeoutSeconds: request.timeoutSeconds }, 'subscribed');
    this.respond(res, 200, { SID: sid, TIMEOUT: `Second-${request.timeoutSeconds}` });
  }

  private refuseSubscription(res: ServerResponse, service: EventedService, peer: string): void {
    this.logger.info({ peer, eventPath: service.eventPath }, 'subscription refused: too many subscriptions');
    this.respond(res, 503);
  }

  private renew(res: ServerResponse, service: EventedService, peer: string, request: Extract<GenaRequest, { kind: 'renew' }>): void {
    if (!this.ownedBy(request.sid, service, peer) || !this.registry.renew(request.sid, request.timeoutSeconds)) return this.respond(res, 412);
    this.respond(res, 200, { SID: request.sid, TIMEOUT: `Second-${request.timeoutSeconds}` });
  }

  private unsubscribe(res: ServerResponse, service: EventedService, peer: string, request: Extract<GenaRequest, { kind: 'unsubscribe' }>): void {
    if (!this.ownedBy(request.sid, service, peer)) return this.respond(res, 412);
    this.registry.remove(request.sid);
    this.logger.debug({ sid: request.sid, peer }, 'unsubscribed');
    this.respond(res, 200);
  }

  /** A SID only counts on the eventSubURL it was issued for, and from the address that holds it. */
  private ownedBy(sid: string, service: EventedService, peer: string): boolean {
    const subscription = this.registry.get(sid);
    return subscription !== undefined && subscription.eventPath === service.eventPath && subscription.peer === peer;
  }

  private respond(res: ServerResponse, status: number, headers: Record<string, string> = {}): void {
    sendReply(res, { status, headers: { DATE: new Date().toUTCString(), SERVER: this.serverString, ...headers } });
  }
}
