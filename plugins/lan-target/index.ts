import { LAN_ADDRESSES, definePlugin, refusalReporter, z } from 'upnpd';
import { LanTargetPolicy } from './policy.js';

/**
 * `lanTarget()`: a mapping may lead only to a host of the LAN (not outside it, not a network or
 * broadcast address, not the gateway). Always added, with or without secure mode; see
 * LanTargetPolicy for the rules.
 */
export const lanTarget = definePlugin({
  name: 'lan-target',
  optionsSchema: z.object({}).strict(),
  create: (container) => new LanTargetPolicy(container.resolve(LAN_ADDRESSES), refusalReporter(container, 'lan-target')),
});

export { LanTargetPolicy };
