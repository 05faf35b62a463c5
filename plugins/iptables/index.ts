import { defineBackend } from 'upnpd';
import { IptablesBackend } from './backend.js';
import { iptablesOptionsSchema } from './rules.js';

/** The iptables backend: `plugins: [iptables({ forwardChain: 'FORWARD' })]`, or `upnpd --backend iptables`. */
export const iptables = defineBackend({
  name: 'iptables',
  optionsSchema: iptablesOptionsSchema,
  create: ({ options, commands, logger, config }) => new IptablesBackend(options, commands, logger, config),
});

export { IptablesBackend } from './backend.js';
export { buildRestoreScript, iptablesOptionsSchema, renderCommands, type IptablesOptions, type IptablesRuleOptions } from './rules.js';
