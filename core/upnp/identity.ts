import { createHash } from 'node:crypto';
import { hostname } from 'node:os';

/** URN prefixes of the devices and services upnpd implements. */
export const DEVICE_TYPE = {
  gateway: 'urn:schemas-upnp-org:device:InternetGatewayDevice',
  wan: 'urn:schemas-upnp-org:device:WANDevice',
  wanConnection: 'urn:schemas-upnp-org:device:WANConnectionDevice',
} as const;

export const SERVICE_TYPE = {
  layer3Forwarding: 'urn:schemas-upnp-org:service:Layer3Forwarding',
  wanCommonInterfaceConfig: 'urn:schemas-upnp-org:service:WANCommonInterfaceConfig',
  wanIpConnection: 'urn:schemas-upnp-org:service:WANIPConnection',
  wanIpv6FirewallControl: 'urn:schemas-upnp-org:service:WANIPv6FirewallControl',
} as const;

export const SERVICE_ID = {
  layer3Forwarding: 'urn:upnp-org:serviceId:L3Forwarding1',
  wanCommonInterfaceConfig: 'urn:upnp-org:serviceId:WANCommonIFC1',
  wanIpConnection: 'urn:upnp-org:serviceId:WANIPConn1',
  wanIpv6FirewallControl: 'urn:upnp-org:serviceId:WANIPv6Firewall1',
} as const;

/** The three UDNs (root IGD, WANDevice, WANConnectionDevice) as `uuid:...`. */
export interface DeviceUdns {
  readonly gateway: string;
  readonly wan: string;
  readonly wanConnection: string;
}

/**
 * Stable, distinct UDNs derived from a seed (by default the host name and the LAN interfaces),
 * so they survive restarts without any state on disk. Formatted as RFC 4122 name-based UUIDs.
 */
/**
 * The UDNs of the gateway serving these LAN interfaces on this host (stable across restarts, and
 * however many addresses each interface has: one added or removed leaves the device the same).
 */
export function udnsForLan(lan: readonly { readonly interface: string }[]): DeviceUdns {
  return deriveUdns(`${hostname()}/${[...new Set(lan.map((a) => a.interface))].join(',')}`);
}

export function deriveUdns(seed: string = hostname()): DeviceUdns {
  const uuid = (role: string) => {
    const hash = createHash('sha1').update(`upnpd:${seed}:${role}`).digest();
    hash[6] = (hash[6]! & 0x0f) | 0x50;
    hash[8] = (hash[8]! & 0x3f) | 0x80;
    const hex = hash.subarray(0, 16).toString('hex');
    return `uuid:${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
  };
  return { gateway: uuid('igd'), wan: uuid('wan'), wanConnection: uuid('wan-connection') };
}
