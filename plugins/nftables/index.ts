import { backendPlugin, definePlugin } from '../../core/plugins/define.js';
import { NftablesBackend } from './backend.js';
import { nftablesOptionsSchema } from './options.js';

/** The nftables backend: `plugins: [nftables({ wanInterface: 'eth0' })]`, or `--backend nftables`. */
export const nftables = definePlugin({
  name: 'nftables',
  kind: 'backend',
  optionsSchema: nftablesOptionsSchema,
  create: (c) => backendPlugin('nftables', c.resolve(NftablesBackend), c),
});

export { NftablesBackend } from './backend.js';
export { nftablesOptionsSchema, type ForwardJump, type NftablesOptions, type NftablesUserOptions } from './options.js';
