import { backendPlugin, definePlugin } from '../../core/plugins/define.js';
import { DryRunBackend, dryRunOptionsSchema } from './backend.js';

/** The dry-run backend: `plugins: [dryRun({ dialect: 'nftables' })]`, or `upnpd --dry-run`. */
export const dryRun = definePlugin({
  name: 'dry-run',
  kind: 'backend',
  optionsSchema: dryRunOptionsSchema,
  create: (container) => backendPlugin('dry-run', container.resolve(DryRunBackend), container),
});

export { DryRunBackend, dryRunOptionsSchema, type DryRunOptions } from './backend.js';
