import { defineBackend } from 'upnpd';
import { NftablesBackend } from './backend.js';
import { nftablesOptionsSchema } from './options.js';

/** The nftables backend: `plugins: [nftables({ wanInterface: 'eth0' })]`, or `--backend nftables`. */
export const nftables = defineBackend({
  name: 'nftables',
  optionsSchema: nftablesOptionsSchema,
  create: ({ options, commands, logger, config }) => new NftablesBackend(options, commands, logger, config),
});

export { NftablesBackend } from './backend.js';
export { nftablesOptionsSchema, type ForwardJump, type NftablesOptions, type NftablesUserOptions } from './options.js';
