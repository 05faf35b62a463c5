import { UpnpError, UpnpErrorCode } from '../../errors.js';
import type { NetworkInfo, WanCounters } from '../../net/network-info.js';
import type { WAN_COMMON_INTERFACE_CONFIG } from '../description/services.js';
import type { ActionHandlers } from './control.js';
import type { WanConnection } from './wan-connection.js';

export interface WanCommonInterfaceConfigDeps {
  readonly network: NetworkInfo;
  /** The WAN interface whose counters are reported (config `wan`). */
  readonly wanInterface: string | undefined;
  readonly wan: WanConnection;
}

/** ui4 counters wrap around at 2^32, as the WANCommonInterfaceConfig template says. */
const UI4_MODULUS = 2 ** 32;

/** WANCommonInterfaceConfig:1: link properties and the WAN interface's real traffic counters. */
export function wanCommonInterfaceConfigHandlers({ network, wanInterface, wan }: WanCommonInterfaceConfigDeps): ActionHandlers<typeof WAN_COMMON_INTERFACE_CONFIG> {
  const counter = (name: keyof WanCounters) => async () => {
    const counters = wanInterface === undefined ? null : await network.counters(wanInterface);
    if (!counters) throw new UpnpError(UpnpErrorCode.ActionFailed, `no traffic counters for the WAN interface ${wanInterface ?? '(none configured)'}`);
    return counters[name] % UI4_MODULUS;
  };
  const bytesSent = counter('bytesSent');
  const bytesReceived = counter('bytesReceived');
  const packetsSent = counter('packetsSent');
  const packetsReceived = counter('packetsReceived');
  return {
    GetCommonLinkProperties: () => ({
      NewWANAccessType: 'Ethernet',
      // The link speed is not known to upnpd; 0 is the template's "unknown".
      NewLayer1UpstreamMaxBitRate: 0,
      NewLayer1DownstreamMaxBitRate: 0,
      NewPhysicalLinkStatus: physicalLinkStatus(wan),
    }),
    GetTotalBytesSent: async () => ({ NewTotalBytesSent: await bytesSent() }),
    GetTotalBytesReceived: async () => ({ NewTotalBytesReceived: await bytesReceived() }),
    GetTotalPacketsSent: async () => ({ NewTotalPacketsSent: await packetsSent() }),
    GetTotalPacketsReceived: async () => ({ NewTotalPacketsReceived: await packetsReceived() }),
  };
}

/** The WAN link counts as up while it gives us an external address. */
export function physicalLinkStatus(wan: WanConnection): 'Up' | 'Down' {
  return wan.connected ? 'Up' : 'Down';
}
