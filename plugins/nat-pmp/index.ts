import { CLOCK, CONFIG, LOGGER, PLUGIN_OPTIONS, definePlugin, type Plugin } from 'upnpd';
import { Epoch } from './epoch.js';
import { NatPmpFrontEnd } from './front-end.js';
import { natPmpOptionsSchema, type NatPmpOptions } from './options.js';

/**
 * `natPmp({...})`: NAT-PMP (RFC 6886) and PCP (RFC 6887) on UDP 5351 of the LAN addresses, a
 * front-end on the same mapping table, lifecycle and policies as UPnP. Added with its defaults
 * unless the config sets `natPmp: false` or lists it with options.
 */
export const natPmp = definePlugin({
  name: 'nat-pmp',
  optionsSchema: natPmpOptionsSchema,
  create: (container) => {
    const options = container.resolve(PLUGIN_OPTIONS) as NatPmpOptions;
    const config = container.resolve(CONFIG);
    const logger = container.resolve(LOGGER);
    const clock = container.resolve(CLOCK);
    // One epoch for the daemon's life: a front-end rebuilt after a LAN change keeps counting.
    let epoch: Epoch | undefined;
    const plugin: Plugin = {
      name: 'nat-pmp',
      async provision() {
        epoch = config.stateDir ? await Epoch.persisted(config.stateDir, logger, Date.now, () => clock.now()) : Epoch.inMemory(() => clock.now(), logger);
      },
      frontEnd: (context) => new NatPmpFrontEnd(context, options, epoch ?? Epoch.inMemory(() => clock.now(), logger)),
    };
    return plugin;
  },
});

export { natPmpOptionsSchema, type NatPmpOptions } from './options.js';
export { NatPmpFrontEnd } from './front-end.js';
