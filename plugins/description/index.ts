import { PLUGIN_OPTIONS, definePlugin, z } from 'upnpd';
import { DEFAULT_DESCRIPTION_MAX_BYTES, DescriptionPolicy, type DescriptionOptions } from './policy.js';

export const descriptionOptionsSchema = z
  .object({
    maxBytes: z.number().int().min(0).max(4096).default(DEFAULT_DESCRIPTION_MAX_BYTES),
  })
  .strict();

/**
 * `description({ maxBytes })`: strips control characters from mapping descriptions and caps their
 * length, before anything stores or logs them. On by default (256 bytes).
 */
export const description = definePlugin({
  name: 'description',
  optionsSchema: descriptionOptionsSchema,
  create: (container) => new DescriptionPolicy(container.resolve(PLUGIN_OPTIONS) as DescriptionOptions),
});

export { DEFAULT_DESCRIPTION_MAX_BYTES, DescriptionPolicy, cleanDescription } from './policy.js';
