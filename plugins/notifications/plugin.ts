import type { Clock, ExternalAddressChangeEvent, Hooks, MappedEvent, Plugin, PortMapping, RefusalRegistry, RepairedEvent, UnmappedEvent } from 'upnpd';

export const NOTIFICATION_EVENTS = ['mapped', 'unmapped', 'expired', 'refused', 'repaired', 'external-address-changed'] as const;
export type NotificationEventName = (typeof NOTIFICATION_EVENTS)[number];

/** What a webhook receives as JSON and a command as UPNPD_* variables. */
export interface NotificationEvent {
  readonly event: NotificationEventName;
  /** ISO 8601, wall clock. */
  readonly time: string;
  readonly protocol?: string;
  readonly externalPort?: number;
  readonly internalClient?: string;
  readonly internalPort?: number;
  /** '' for any remote host. */
  readonly remoteHost?: string;
  readonly description?: string;
  /** Seconds granted (0: permanent), for `mapped`. */
  readonly leaseSeconds?: number;
  /** Who asked (address), and through which front-end. */
  readonly requester?: string;
  readonly via?: string;
  /** `unmapped`: deleted, expired or shutdown. */
  readonly reason?: string;
  readonly previousAddress?: string;
  readonly currentAddress?: string;
}

/** Where events go (a webhook, a command). `deliver` queues and returns at once; it never throws. */
export interface NotificationSink {
  readonly wants: ReadonlySet<NotificationEventName>;
  deliver(event: NotificationEvent): void;
  /** Waits for what is queued (bounded), at shutdown. */
  close(): Promise<void>;
}

export class NotificationsPlugin implements Plugin {
  readonly name = 'notifications';
  readonly order = 'post' as const;
  readonly hooks: Partial<Hooks>;

  private readonly unsubscribes: Array<() => void> = [];

  constructor(
    private readonly sinks: readonly NotificationSink[],
    private readonly clock: Clock,
    refusals?: RefusalRegistry,
  ) {
    // A policy may be asked more than once per request (Hooks.beforeMap): a refusal can be told twice.
    if (refusals) {
      this.unsubscribes.push(
        refusals.onRefusal((r) =>
          this.send({ event: 'refused', requester: r.client, via: r.via, reason: `${r.policy}: ${r.rule} (${r.upnpCode}) ${r.message}` }),
        ),
      );
    }
    this.hooks = {
      onMapped: (e: MappedEvent) =>
        this.send({
          event: 'mapped',
          ...this.fieldsOf(e.mapping),
          leaseSeconds: this.leaseOf(e.mapping),
          requester: e.requester.address,
          via: e.requester.via,
        }),
      // An expiry is notified to both hooks: `expired` stands for it.
      onUnmapped: (e: UnmappedEvent) => (e.reason === 'expired' ? undefined : this.send({ event: 'unmapped', ...this.unmappedFields(e) })),
      onExpire: (e: UnmappedEvent) => this.send({ event: 'expired', ...this.unmappedFields(e) }),
      onRepaired: (e: RepairedEvent) =>
        this.send({ event: 'repaired', reason: `${e.missing.join('; ')} (${e.rules} mapping(s) resynced in ${e.tookMs} ms, ${e.reason})` }),
      onExternalAddressChange: (e: ExternalAddressChangeEvent) =>
        this.send({ event: 'external-address-changed', time: new Date().toISOString(), previousAddress: e.previous, currentAddress: e.current }),
    };
  }

  async cleanup(): Promise<void> {
    for (const unsubscribe of this.unsubscribes.splice(0)) unsubscribe();
    await Promise.all(this.sinks.map((sink) => sink.close()));
  }

  private send(event: Omit<NotificationEvent, 'time'> & { time?: string }): void {
    const full: NotificationEvent = { ...event, time: event.time ?? new Date().toISOString() };
    for (const sink of this.sinks) if (sink.wants.has(full.event)) sink.deliver(full);
  }

  private fieldsOf(m: PortMapping) {
    return {
      protocol: m.protocol,
      externalPort: m.externalPort,
      internalClient: m.internalClient,
      internalPort: m.internalPort,
      remoteHost: m.remoteHost,
      description: m.description,
    };
  }

  private unmappedFields(e: UnmappedEvent) {
    return { ...this.fieldsOf(e.mapping), reason: e.reason, requester: e.requester?.address, via: e.requester?.via };
  }

  private leaseOf(m: PortMapping): number {
    return m.expiresAt === null ? 0 : Math.max(1, Math.round((m.expiresAt - this.clock.now()) / 1000));
  }
}
