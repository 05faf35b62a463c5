import { backendPlugin, definePlugin } from '../../core/plugins/define.js';
import { IptablesBackend } from './backend.js';
import { iptablesOptionsSchema } from './rules.js';

/** The iptables backend: `plugins: [iptables({ forwardChain: 'FORWARD' })]`, or `upnpd --backend iptables`. */
export const iptables = definePlugin({
  name: 'iptables',
  kind: 'backend',
  optionsSchema: iptablesOptionsSchema,
  create: (container) => backendPlugin('iptables', container.resolve(IptablesBackend), container),
});

export { IptablesBackend } from './backend.js';
export { buildRestoreScript, iptablesOptionsSchema, renderCommands, type IptablesOptions, type IptablesRuleOptions } from './rules.js';
