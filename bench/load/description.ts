import { parseXml } from './soap-client.js';

const WAN_IP_CONNECTION = /^urn:schemas-upnp-org:service:WANIPConnection:(\d+)$/;
const WAN_IPV6_FIREWALL_CONTROL = /^urn:schemas-upnp-org:service:WANIPv6FirewallControl:(\d+)$/;

export interface ControlEndpoint {
  readonly controlUrl: URL;
  readonly serviceType: string;
}

/**
 * The WANIPConnection service of a root description (the highest version offered), with its
 * control URL resolved against the description's own URL (URLBase when present). Each daemon has
 * its own paths; this is how a control point finds them.
 */
export function findWanIpConnection(descriptionXml: string, descriptionUrl: URL): ControlEndpoint {
  return findService(descriptionXml, descriptionUrl, WAN_IP_CONNECTION, 'WANIPConnection');
}

/** The WANIPv6FirewallControl service of a root description (IGD:2), as findWanIpConnection finds WANIPConnection. */
export function findWanIpv6FirewallControl(descriptionXml: string, descriptionUrl: URL): ControlEndpoint {
  return findService(descriptionXml, descriptionUrl, WAN_IPV6_FIREWALL_CONTROL, 'WANIPv6FirewallControl');
}

/** The service whose type `pattern` matches (its group 1: the version), the highest version offered. */
function findService(descriptionXml: string, descriptionUrl: URL, pattern: RegExp, name: string): ControlEndpoint {
  const root = (parseXml(descriptionXml) as { root?: Record<string, unknown> }).root;
  if (!root) throw new Error(`${descriptionUrl.href}: not a UPnP root description`);
  const base = typeof root.URLBase === 'string' && root.URLBase !== '' ? new URL(root.URLBase) : descriptionUrl;

  let best: { version: number; service: Record<string, unknown> } | undefined;
  for (const service of services(root.device)) {
    const match = pattern.exec(typeof service.serviceType === 'string' ? service.serviceType.trim() : '');
    if (match && (!best || Number(match[1]) > best.version)) best = { version: Number(match[1]), service };
  }
  if (!best) throw new Error(`${descriptionUrl.href}: no ${name} service in the description`);
  return { controlUrl: new URL(String(best.service.controlURL).trim(), base), serviceType: String(best.service.serviceType).trim() };
}

/** Every <service> of a device and its embedded devices. */
function* services(device: unknown): Generator<Record<string, unknown>> {
  for (const d of asList(device)) {
    for (const service of asList((d.serviceList as Record<string, unknown> | undefined)?.service)) yield service;
    yield* services((d.deviceList as Record<string, unknown> | undefined)?.device);
  }
}

function asList(value: unknown): Record<string, unknown>[] {
  const list = Array.isArray(value) ? value : value === undefined ? [] : [value];
  return list.filter((v): v is Record<string, unknown> => typeof v === 'object' && v !== null);
}
