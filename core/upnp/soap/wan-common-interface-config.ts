import { UpnpError, UpnpErrorCode } from '../../errors.js';
import type { NetworkInfo, WanCounters } from '../../net/network-info.js';
import type { WAN_COMMON_INTERFACE_CONFIG } from '../description/services.js';
import type { ActionHandlers } from './control.js';
import type { WanConnection } from '../../net/wan-connection.js';

export interface WanCommonInterfaceConfigDeps {
  readonly network: NetworkInfo;
  /** The WAN interface whose counters are reported (config `wan`). */
  readonly wanInterface: string | undefined;
  readonly wan: WanConnection;
}

/** ui4 counters wrap around at 2^32, as the WANCommonInterfaceConfig template says. */
const UI4_MODULUS = 2 ** 32;

/** WANCommonInterfaceConfig:1: link properties and the WAN interface's real traffic counters. */
export function wanCommonInterfaceConfigHandlers({
  network,
  wanInterface,
  wan,
}: WanCommonInterfaceConfigDeps): ActionHandlers<typeof WAN_COMMON_INTERFACE_CONFIG> {
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
    GetCommonLinkProperties: async () => {
      const link = wanInterface === undefined ? null : await network.link(wanInterface);
      // Without a known speed, 0 is the template's "unknown"; ui4 caps it at 2^32-1.
      const bitRate = Math.min(link?.speedBitsPerSecond ?? 0, UI4_MODULUS - 1);
      return {
        NewWANAccessType: 'Ethernet',
        NewLayer1UpstreamMaxBitRate: bitRate,
        NewLayer1DownstreamMaxBitRate: bitRate,
        // Down when the WAN link is down, and (as GENA reports it) while there is no external address.
        NewPhysicalLinkStatus: link && !link.up ? 'Down' : physicalLinkStatus(wan),
      };
    },
    GetTotalBytesSent: async () => ({ NewTotalBytesSent: await bytesSent() }),
    GetTotalBytesReceived: async () => ({ NewTotalBytesReceived: await bytesReceived() }),
    GetTotalPacketsSent: async () => ({ NewTotalPacketsSent: await packetsSent() }),
    GetTotalPacketsReceived: async () => ({ NewTotalPacketsReceived: await packetsReceived() }),
  };
}

/** Without a WAN interface to read (or for GENA), the WAN link counts as up while it gives us an external address. */
export function physicalLinkStatus(wan: WanConnection): 'Up' | 'Down' {
  return wan.connected ? 'Up' : 'Down';
}
