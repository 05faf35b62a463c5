import { definePlugin } from 'upnpd';
import { loggingOptionsSchema } from './options.js';
import { LoggingPlugin } from './plugin.js';

/**
 * Where upnpd logs, and a log line for every mapping change:
 * `plugins: [logging({ stdout: 'journald', syslog: { facility: 'local3' } })]`.
 * Without it in the config the daemon adds `logging()` (stdout, format chosen automatically).
 */
export const logging = definePlugin({
  name: 'logging',
  optionsSchema: loggingOptionsSchema,
  create: (container) => container.resolve(LoggingPlugin),
});

export { LoggingPlugin } from './plugin.js';
export { loggingOptionsSchema, type LoggingOptions, type LoggingOptionsInput } from './options.js';
