import { z } from 'zod';
import { definePlugin } from 'upnpd';
import { SecureModePolicy } from './policy.js';

/**
 * `secureMode()`: clients may map only to themselves and delete only their own mappings. The
 * daemon adds it when `secureMode` is true (the default); see SecureModePolicy for the rules, and
 * lanTarget() for the hosts a mapping may lead to (with secure mode off too).
 */
export const secureMode = definePlugin({
  name: 'secure-mode',
  optionsSchema: z.object({}).strict(),
  create: (container) => container.resolve(SecureModePolicy),
});

export { SecureModePolicy };
