import { DEVICE_TYPE, type DeviceUdns } from '../identity.js';
import type { IgdView, ServiceEndpoint } from './igd-views.js';
import { XML_DECLARATION, element, textElement } from './xml.js';

export interface DeviceInfo {
  readonly udns: DeviceUdns;
  readonly friendlyName: string;
  /** upnpd's version, reported as the model number. */
  readonly modelNumber: string;
}

/**
 * The root device description (UDA 1.1 §2.3) of one view: InternetGatewayDevice with
 * Layer3Forwarding, → WANDevice with WANCommonInterfaceConfig, → WANConnectionDevice with
 * WANIPConnection. specVersion 1.1 (2.0 breaks Windows); no URLBase, so every URL is an absolute
 * path and the document is the same on every interface.
 */
export function renderRootDescription(view: IgdView, info: DeviceInfo, configId?: number): string {
  const configIdAttribute = configId === undefined ? '' : ` configId="${configId}"`;
  const connectionDevice = device(view, info, {
    type: DEVICE_TYPE.wanConnection,
    udn: info.udns.wanConnection,
    name: 'WANConnectionDevice',
    services: [view.wanIpConnection, ...(view.wanIpv6FirewallControl ? [view.wanIpv6FirewallControl] : [])],
    children: [],
  });
  const wanDevice = device(view, info, {
    type: DEVICE_TYPE.wan,
    udn: info.udns.wan,
    name: 'WANDevice',
    services: [view.wanCommonInterfaceConfig],
    children: [connectionDevice],
  });
  const gateway = device(view, info, {
    type: DEVICE_TYPE.gateway,
    udn: info.udns.gateway,
    name: info.friendlyName,
    services: [view.layer3Forwarding],
    children: [wanDevice],
    // Windows shows the gateway in its network view only when it has a presentation page.
    presentationUrl: '/',
  });
  return [
    XML_DECLARATION,
    `<root xmlns="urn:schemas-upnp-org:device-1-0"${configIdAttribute}>`,
    element('specVersion', [textElement('major', 1), textElement('minor', 1)]),
    gateway,
    '</root>',
    '',
  ].join('\n');
}

interface DeviceParts {
  readonly type: string;
  readonly udn: string;
  readonly name: string;
  readonly services: readonly ServiceEndpoint[];
  readonly children: readonly string[];
  readonly presentationUrl?: string;
}

function device(view: IgdView, info: DeviceInfo, parts: DeviceParts): string {
  const children = [
    textElement('deviceType', `${parts.type}:${view.version}`),
    textElement('friendlyName', parts.name),
    textElement('manufacturer', 'upnpd'),
    textElement('modelDescription', 'UPnP Internet Gateway Device for Linux NAT gateways'),
    textElement('modelName', 'upnpd'),
    textElement('modelNumber', info.modelNumber),
    textElement('UDN', parts.udn),
    element('serviceList', parts.services.map(service)),
  ];
  if (parts.children.length > 0) children.push(element('deviceList', parts.children));
  if (parts.presentationUrl !== undefined) children.push(textElement('presentationURL', parts.presentationUrl));
  return element('device', children);
}

function service(endpoint: ServiceEndpoint): string {
  return element('service', [
    textElement('serviceType', endpoint.service.serviceType),
    textElement('serviceId', endpoint.service.spec.serviceId),
    textElement('SCPDURL', endpoint.scpdPath),
    textElement('controlURL', endpoint.controlPath),
    textElement('eventSubURL', endpoint.eventPath),
  ]);
}
