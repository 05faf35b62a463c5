import type { MappingService } from '../../mapping/service.js';
import type { NetworkInfo } from '../../net/network-info.js';
import type { DeviceUdns } from '../identity.js';
import type { IgdView } from '../description/igd-views.js';
import type { ControlEndpoint } from './control.js';
import { layer3ForwardingHandlers } from './layer3-forwarding.js';
import { physicalLinkStatus, wanCommonInterfaceConfigHandlers } from './wan-common-interface-config.js';
import type { WanConnection } from '../../net/wan-connection.js';
import { CONNECTION_TYPE, connectionStatus, wanIpConnectionHandlers } from './wan-ip-connection.js';
import { firewallVariables, wanIpv6FirewallControlHandlers } from './wan-ipv6-firewall-control.js';

export interface IgdServiceDeps {
  readonly mappings: MappingService;
  readonly wan: WanConnection;
  readonly network: NetworkInfo;
  /** The WAN interface (config `wan`), for traffic counters. */
  readonly wanInterface: string | undefined;
  readonly addAnyPortRange: readonly [number, number];
  readonly udns: DeviceUdns;
  /** WANIPConnection:2's and WANIPv6FirewallControl's SystemUpdateID: changes whenever the table (mappings or pinholes) does. */
  readonly systemUpdateId: () => number;
}

/**
 * The control endpoints of one view (three, and the IPv6 firewall control in IGD:2), each with its handlers and the current values of its
 * evented state variables (what GENA sends and QueryStateVariable reads).
 */
export function igdControlEndpoints(view: IgdView, deps: IgdServiceDeps): ControlEndpoint[] {
  const { mappings, wan } = deps;
  const firewall = view.wanIpv6FirewallControl && { endpoint: view.wanIpv6FirewallControl, handlers: wanIpv6FirewallControlHandlers(mappings) };
  const defaultConnectionService = `${deps.udns.wanConnection}:WANConnectionDevice:${view.version},${view.wanIpConnection.service.spec.serviceId}`;
  return [
    {
      endpoint: view.layer3Forwarding,
      handlers: layer3ForwardingHandlers(defaultConnectionService),
      variables: () => ({ DefaultConnectionService: defaultConnectionService }),
    },
    {
      endpoint: view.wanCommonInterfaceConfig,
      handlers: wanCommonInterfaceConfigHandlers({ network: deps.network, wanInterface: deps.wanInterface, wan }),
      variables: () => ({ PhysicalLinkStatus: physicalLinkStatus(wan) }),
    },
    {
      endpoint: view.wanIpConnection,
      handlers: wanIpConnectionHandlers({ mappings, wan, addAnyPortRange: deps.addAnyPortRange }),
      variables: () => ({
        PossibleConnectionTypes: CONNECTION_TYPE,
        ConnectionStatus: connectionStatus(wan),
        ExternalIPAddress: wan.externalAddress ?? '',
        PortMappingNumberOfEntries: String(mappings.size),
        ...(view.wanIpConnection.service.version >= 2 ? { SystemUpdateID: String(deps.systemUpdateId()) } : {}),
      }),
      // nat-port-mapper calls the pinhole actions through WANIPConnection:2 (see ControlEndpoint.sibling).
      ...(firewall && { sibling: { service: firewall.endpoint.service, handlers: firewall.handlers } }),
    },
    ...(firewall ? [{ ...firewall, variables: () => firewallVariables(mappings, deps.systemUpdateId()) }] : []),
  ];
}
