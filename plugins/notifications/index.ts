import { CLOCK, LOGGER, PLUGIN_OPTIONS, REFUSALS, definePlugin, z, type Clock, type Logger, type RefusalRegistry } from 'upnpd';
import { CommandNotifier } from './command.js';
import { NOTIFICATION_EVENTS, NotificationsPlugin } from './plugin.js';
import { WebhookNotifier } from './webhook.js';

const events = z.array(z.enum(NOTIFICATION_EVENTS)).min(1).optional();

export const notificationsOptionsSchema = z
  .object({
    /** POST a JSON body per event; `secret` adds an HMAC-SHA256 signature header. */
    webhook: z
      .object({
        url: z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' }),
        secret: z.string().min(16, 'must be at least 16 characters').optional(),
        events,
        timeoutMs: z.number().int().min(100).max(60_000).default(5_000),
        /** Events waiting to be delivered; past it the oldest is dropped (and counted). */
        maxQueue: z.number().int().min(1).max(100_000).default(1_000),
        /** Attempts per event, with a doubling backoff from one second. */
        attempts: z.number().int().min(1).max(10).default(5),
      })
      .strict()
      .optional(),
    /** Run a program (no shell) per event, its fields in UPNPD_* environment variables. */
    command: z
      .object({
        path: z.string().startsWith('/', 'must be an absolute path'),
        args: z.array(z.string()).default([]),
        events,
        timeoutMs: z.number().int().min(100).max(300_000).default(10_000),
        /** Runs at once; more events wait (up to maxQueue, then the oldest is dropped). */
        concurrency: z.number().int().min(1).max(16).default(2),
        maxQueue: z.number().int().min(1).max(100_000).default(1_000),
      })
      .strict()
      .optional(),
  })
  .strict()
  .refine((o) => o.webhook !== undefined || o.command !== undefined, 'give webhook, command or both');

export type NotificationsOptions = z.output<typeof notificationsOptionsSchema>;

/**
 * `notifications({ webhook: { url, secret?, events? }, command: { path, args?, events? } })`: tells
 * a URL or a program about mapped, unmapped, expired, refused and repaired mappings and external
 * address changes. Never delays or fails a mapping: deliveries are queued, bounded and retried.
 */
export const notifications = definePlugin({
  name: 'notifications',
  optionsSchema: notificationsOptionsSchema,
  create: (container) => {
    const options = container.resolve(PLUGIN_OPTIONS) as NotificationsOptions;
    const logger = container.resolve<Logger>(LOGGER);
    const clock = container.resolve<Clock>(CLOCK);
    const sinks = [
      options.webhook && new WebhookNotifier(options.webhook, logger, clock),
      options.command && new CommandNotifier(options.command, logger),
    ].filter((sink) => sink !== undefined);
    const refusals = container.isRegistered(REFUSALS, true) ? container.resolve<RefusalRegistry>(REFUSALS) : undefined;
    return new NotificationsPlugin(sinks, clock, refusals);
  },
});

export { NOTIFICATION_EVENTS, type NotificationEvent, type NotificationEventName } from './plugin.js';
