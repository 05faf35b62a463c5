import { ST_ALL } from './constants.js';
import { DEVICE_TYPE, SERVICE_TYPE, type DeviceUdns } from '../identity.js';

/** One advertisement: the NT of a NOTIFY (or ST of a search response) and its USN. */
export interface NotificationTarget {
  readonly nt: string;
  readonly usn: string;
}

/** One answer to an M-SEARCH. */
export interface SearchAnswer {
  readonly st: string;
  readonly usn: string;
  /** Set when the search asked for an older version than we advertise: the IGD view to point at. */
  readonly igdVersion?: 1;
}

interface VersionedType {
  /** URN without the version, e.g. urn:schemas-upnp-org:device:WANDevice. */
  readonly urn: string;
  /** The highest version we implement. */
  readonly version: number;
  readonly udn: string;
}

/** What the three devices of an IGD advertise. */
export interface AdvertisedSet {
  /** In UDA order: root device first, each device's UDN, then its device and service types. */
  readonly targets: readonly NotificationTarget[];
  readonly types: readonly VersionedType[];
}

const ROOT_DEVICE = 'upnp:rootdevice';

/**
 * The device tree of an IGD, each device with its own UDN. The WAN devices and WANIPConnection
 * follow the IGD version (IGD:2 embeds WANDevice:2, WANConnectionDevice:2, WANIPConnection:2).
 */
export function advertisedSet(udns: DeviceUdns, igdVersion: 1 | 2): AdvertisedSet {
  const devices = [
    {
      udn: udns.gateway,
      types: [
        { urn: DEVICE_TYPE.gateway, version: igdVersion },
        { urn: SERVICE_TYPE.layer3Forwarding, version: 1 },
      ],
    },
    {
      udn: udns.wan,
      types: [
        { urn: DEVICE_TYPE.wan, version: igdVersion },
        { urn: SERVICE_TYPE.wanCommonInterfaceConfig, version: 1 },
      ],
    },
    {
      udn: udns.wanConnection,
      types: [
        { urn: DEVICE_TYPE.wanConnection, version: igdVersion },
        { urn: SERVICE_TYPE.wanIpConnection, version: igdVersion },
        ...(igdVersion >= 2 ? [{ urn: SERVICE_TYPE.wanIpv6FirewallControl, version: 1 }] : []),
      ],
    },
  ];
  const targets: NotificationTarget[] = [{ nt: ROOT_DEVICE, usn: `${udns.gateway}::${ROOT_DEVICE}` }];
  for (const device of devices) {
    targets.push({ nt: device.udn, usn: device.udn });
    for (const t of device.types) targets.push({ nt: `${t.urn}:${t.version}`, usn: `${device.udn}::${t.urn}:${t.version}` });
  }
  return {
    targets,
    types: devices.flatMap((d) => d.types.map((t) => ({ ...t, udn: d.udn }))),
  };
}

/** `urn:<domain>:device|service:<type>:<version>`; the version is a positive integer. */
const VERSIONED_URN = /^(urn:[^:\s]+:(?:device|service):[^:\s]+):([1-9]\d{0,8})$/;

/**
 * The answers to a search target: `ssdp:all` gets the whole set; a device or service URN is
 * answered when we implement that version or a higher one, echoing the version asked for, so an
 * IGD:2 daemon answers `...:1` searches with `...:1` (clients that only know IGD:1 drop a `:2`
 * answer) and points them at its IGD:1 view; anything else (`upnp:rootdevice`, a UDN) must equal
 * one of our NTs.
 */
export function answersFor(searchTarget: string, set: AdvertisedSet): SearchAnswer[] {
  if (searchTarget === ST_ALL) return set.targets.map((t) => ({ st: t.nt, usn: t.usn }));
  const urn = VERSIONED_URN.exec(searchTarget);
  if (!urn) return set.targets.filter((t) => t.nt === searchTarget).map((t) => ({ st: t.nt, usn: t.usn }));
  const [, type, version] = urn;
  const known = set.types.find((t) => t.urn === type);
  if (!known || Number(version) > known.version) return [];
  const answer = { st: searchTarget, usn: `${known.udn}::${searchTarget}` };
  // Only the types that follow the IGD version go above 1, so an older one asked for is IGD:1.
  return [Number(version) < known.version ? { ...answer, igdVersion: 1 } : answer];
}
