import { PLUGIN_OPTIONS, definePlugin, refusalReporter, z } from 'upnpd';
import { DEFAULT_QUOTAS, QuotaPolicy, type QuotaOptions } from './policy.js';

export const quotaOptionsSchema = z
  .object({
    perClient: z.number().int().min(0).max(1_000_000).default(DEFAULT_QUOTAS.perClient),
    total: z.number().int().min(0).max(1_000_000).default(DEFAULT_QUOTAS.total),
  })
  .strict();

/** `quota({ perClient, total })`: quotas of mappings and IPv6 pinholes per client (source address) and in all. On by default. */
export const quota = definePlugin({
  name: 'quota',
  optionsSchema: quotaOptionsSchema,
  create: (container) => new QuotaPolicy(container.resolve(PLUGIN_OPTIONS) as QuotaOptions, refusalReporter(container, 'quota')),
});

export { DEFAULT_QUOTAS, QuotaPolicy } from './policy.js';
