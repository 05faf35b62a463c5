import { CONFIG, LAN_ADDRESSES, NETWORK_INFO, definePlugin, refusalReporter, z } from 'upnpd';
import { RemoteHostPolicy } from './policy.js';

/** `remoteHost()`: a mapping's remote host must be a WAN host, not a LAN or gateway address. On by default. */
export const remoteHost = definePlugin({
  name: 'remote-host',
  optionsSchema: z.object({}).strict(),
  create: (container) => {
    const config = container.resolve(CONFIG);
    return new RemoteHostPolicy(
      { lan: container.resolve(LAN_ADDRESSES), network: container.resolve(NETWORK_INFO), wan: config.wan, externalIp: config.externalIp },
      refusalReporter(container, 'remote-host'),
    );
  },
});

export { RemoteHostPolicy, type GatewayAddresses } from './policy.js';
