import { LAYER3_FORWARDING, WAN_COMMON_INTERFACE_CONFIG, WAN_IP_CONNECTION, WAN_IPV6_FIREWALL_CONTROL } from './services.js';
import { serviceAtVersion, type ServiceAtVersion, type ServiceSpec, type ServiceVersion } from './service-model.js';

export type IgdVersion = ServiceVersion;

/** One service as a view offers it: its version and where its SCPD, control and events live. */
export interface ServiceEndpoint {
  readonly service: ServiceAtVersion;
  readonly scpdPath: string;
  readonly controlPath: string;
  readonly eventPath: string;
}

/**
 * A complete InternetGatewayDevice description tree of one version, with its own URLs. upnpd can
 * serve an IGD:2 and an IGD:1 view side by side: libp2p's nat-port-mapper looks only for IGD:2,
 * while Windows, Xbox and PlayStation break on IGD:2. Both views act on the same mapping table.
 */
export interface IgdView {
  readonly version: IgdVersion;
  readonly descriptionPath: string;
  readonly layer3Forwarding: ServiceEndpoint;
  readonly wanCommonInterfaceConfig: ServiceEndpoint;
  readonly wanIpConnection: ServiceEndpoint;
  /** IPv6 pinholes: IGD:2 only (the IGD:1 view is for clients that break on anything new). */
  readonly wanIpv6FirewallControl?: ServiceEndpoint;
}

/** The path clients are given by default; which view it shows depends on the client (see DescriptionDocuments). */
export const DEFAULT_DESCRIPTION_PATH = '/rootDesc.xml';

export function igdView(version: IgdVersion): IgdView {
  const endpoint = (spec: ServiceSpec, serviceVersion: ServiceVersion): ServiceEndpoint => {
    const base = `/igd${version}/${spec.pathName}`;
    return { service: serviceAtVersion(spec, serviceVersion), scpdPath: `${base}.xml`, controlPath: `${base}/control`, eventPath: `${base}/events` };
  };
  return {
    version,
    descriptionPath: `/rootDesc${version}.xml`,
    layer3Forwarding: endpoint(LAYER3_FORWARDING, 1),
    wanCommonInterfaceConfig: endpoint(WAN_COMMON_INTERFACE_CONFIG, 1),
    wanIpConnection: endpoint(WAN_IP_CONNECTION, version),
    ...(version >= 2 && { wanIpv6FirewallControl: endpoint(WAN_IPV6_FIREWALL_CONTROL, 1) }),
  };
}

/** The views a config's `upnp.igdVersion` asks for, highest version first. */
export function igdViews(setting: IgdVersion | 'both'): IgdView[] {
  return setting === 'both' ? [igdView(2), igdView(1)] : [igdView(setting)];
}

export function endpointsOf(view: IgdView): ServiceEndpoint[] {
  return [view.layer3Forwarding, view.wanCommonInterfaceConfig, view.wanIpConnection, ...(view.wanIpv6FirewallControl ? [view.wanIpv6FirewallControl] : [])];
}
