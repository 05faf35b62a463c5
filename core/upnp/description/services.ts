import { SERVICE_ID, SERVICE_TYPE } from '../identity.js';
import type { ArgumentSpec, ServiceSpec } from './service-model.js';

/** The service data of the IGD:1 and IGD:2 templates, limited to what upnpd implements. */

const arg = (name: string, stateVariable: string): ArgumentSpec => ({ name, stateVariable });

const MAPPING_KEY_ARGS = [arg('NewRemoteHost', 'RemoteHost'), arg('NewExternalPort', 'ExternalPort'), arg('NewProtocol', 'PortMappingProtocol')];

/** Everything a mapping holds besides its key (the out-arguments of the Get*Entry actions). */
const MAPPING_VALUE_ARGS = [
  arg('NewInternalPort', 'InternalPort'),
  arg('NewInternalClient', 'InternalClient'),
  arg('NewEnabled', 'PortMappingEnabled'),
  arg('NewPortMappingDescription', 'PortMappingDescription'),
  arg('NewLeaseDuration', 'PortMappingLeaseDuration'),
];

const RANGE_ARGS = [
  arg('NewStartPort', 'ExternalPort'),
  arg('NewEndPort', 'ExternalPort'),
  arg('NewProtocol', 'PortMappingProtocol'),
  arg('NewManage', 'A_ARG_TYPE_Manage'),
];

/** Longest lease IGD:2 grants (one week); longer or 0 is cut to this. */
export const IGD2_MAX_LEASE_SECONDS = 604800;

export const WAN_IP_CONNECTION = {
  name: 'WANIPConnection',
  typePrefix: SERVICE_TYPE.wanIpConnection,
  serviceId: SERVICE_ID.wanIpConnection,
  pathName: 'WANIPConn',
  highestVersion: 2,
  stateVariables: [
    { name: 'ConnectionType', dataType: 'string', evented: false },
    { name: 'PossibleConnectionTypes', dataType: 'string', evented: true, allowedValues: ['Unconfigured', 'IP_Routed', 'IP_Bridged'] },
    {
      name: 'ConnectionStatus',
      dataType: 'string',
      evented: true,
      allowedValues: ['Unconfigured', 'Connecting', 'Connected', 'PendingDisconnect', 'Disconnecting', 'Disconnected'],
    },
    { name: 'Uptime', dataType: 'ui4', evented: false },
    { name: 'LastConnectionError', dataType: 'string', evented: false, allowedValues: ['ERROR_NONE', 'ERROR_IP_CONFIGURATION', 'ERROR_UNKNOWN'] },
    { name: 'RSIPAvailable', dataType: 'boolean', evented: false },
    { name: 'NATEnabled', dataType: 'boolean', evented: false },
    { name: 'ExternalIPAddress', dataType: 'string', evented: true },
    { name: 'PortMappingNumberOfEntries', dataType: 'ui2', evented: true },
    { name: 'PortMappingEnabled', dataType: 'boolean', evented: false },
    { name: 'PortMappingLeaseDuration', dataType: 'ui4', evented: false, versions: [1] },
    { name: 'PortMappingLeaseDuration', dataType: 'ui4', evented: false, range: { minimum: 0, maximum: IGD2_MAX_LEASE_SECONDS }, versions: [2] },
    { name: 'RemoteHost', dataType: 'string', evented: false },
    { name: 'ExternalPort', dataType: 'ui2', evented: false },
    { name: 'InternalPort', dataType: 'ui2', evented: false, versions: [1] },
    { name: 'InternalPort', dataType: 'ui2', evented: false, range: { minimum: 1, maximum: 65535 }, versions: [2] },
    { name: 'PortMappingProtocol', dataType: 'string', evented: false, allowedValues: ['TCP', 'UDP'] },
    { name: 'InternalClient', dataType: 'string', evented: false },
    { name: 'PortMappingDescription', dataType: 'string', evented: false },
    { name: 'SystemUpdateID', dataType: 'ui4', evented: true, versions: [2] },
    { name: 'A_ARG_TYPE_Manage', dataType: 'boolean', evented: false, versions: [2] },
    { name: 'A_ARG_TYPE_PortListing', dataType: 'string', evented: false, xmlDocument: true, versions: [2] },
  ],
  actions: [
    { name: 'SetConnectionType', in: [arg('NewConnectionType', 'ConnectionType')], out: [] },
    {
      name: 'GetConnectionTypeInfo',
      in: [],
      out: [arg('NewConnectionType', 'ConnectionType'), arg('NewPossibleConnectionTypes', 'PossibleConnectionTypes')],
    },
    { name: 'RequestConnection', in: [], out: [] },
    { name: 'ForceTermination', in: [], out: [] },
    {
      name: 'GetStatusInfo',
      in: [],
      out: [arg('NewConnectionStatus', 'ConnectionStatus'), arg('NewLastConnectionError', 'LastConnectionError'), arg('NewUptime', 'Uptime')],
    },
    { name: 'GetNATRSIPStatus', in: [], out: [arg('NewRSIPAvailable', 'RSIPAvailable'), arg('NewNATEnabled', 'NATEnabled')] },
    {
      name: 'GetGenericPortMappingEntry',
      in: [arg('NewPortMappingIndex', 'PortMappingNumberOfEntries')],
      out: [...MAPPING_KEY_ARGS, ...MAPPING_VALUE_ARGS],
    },
    { name: 'GetSpecificPortMappingEntry', in: MAPPING_KEY_ARGS, out: MAPPING_VALUE_ARGS },
    { name: 'AddPortMapping', in: [...MAPPING_KEY_ARGS, ...MAPPING_VALUE_ARGS], out: [] },
    { name: 'DeletePortMapping', in: MAPPING_KEY_ARGS, out: [] },
    { name: 'GetExternalIPAddress', in: [], out: [arg('NewExternalIPAddress', 'ExternalIPAddress')] },
    { name: 'DeletePortMappingRange', in: RANGE_ARGS, out: [], versions: [2] },
    {
      name: 'GetListOfPortMappings',
      in: [...RANGE_ARGS, arg('NewNumberOfPorts', 'PortMappingNumberOfEntries')],
      out: [arg('NewPortListing', 'A_ARG_TYPE_PortListing')],
      versions: [2],
    },
    {
      name: 'AddAnyPortMapping',
      in: [...MAPPING_KEY_ARGS, ...MAPPING_VALUE_ARGS],
      out: [arg('NewReservedPort', 'ExternalPort')],
      versions: [2],
    },
  ],
} as const satisfies ServiceSpec;

export const WAN_COMMON_INTERFACE_CONFIG = {
  name: 'WANCommonInterfaceConfig',
  typePrefix: SERVICE_TYPE.wanCommonInterfaceConfig,
  serviceId: SERVICE_ID.wanCommonInterfaceConfig,
  pathName: 'WANCommonIFC',
  highestVersion: 1,
  stateVariables: [
    { name: 'WANAccessType', dataType: 'string', evented: false, allowedValues: ['DSL', 'POTS', 'Cable', 'Ethernet'] },
    { name: 'Layer1UpstreamMaxBitRate', dataType: 'ui4', evented: false },
    { name: 'Layer1DownstreamMaxBitRate', dataType: 'ui4', evented: false },
    { name: 'PhysicalLinkStatus', dataType: 'string', evented: true, allowedValues: ['Up', 'Down'] },
    { name: 'TotalBytesSent', dataType: 'ui4', evented: false },
    { name: 'TotalBytesReceived', dataType: 'ui4', evented: false },
    { name: 'TotalPacketsSent', dataType: 'ui4', evented: false },
    { name: 'TotalPacketsReceived', dataType: 'ui4', evented: false },
  ],
  actions: [
    {
      name: 'GetCommonLinkProperties',
      in: [],
      out: [
        arg('NewWANAccessType', 'WANAccessType'),
        arg('NewLayer1UpstreamMaxBitRate', 'Layer1UpstreamMaxBitRate'),
        arg('NewLayer1DownstreamMaxBitRate', 'Layer1DownstreamMaxBitRate'),
        arg('NewPhysicalLinkStatus', 'PhysicalLinkStatus'),
      ],
    },
    { name: 'GetTotalBytesSent', in: [], out: [arg('NewTotalBytesSent', 'TotalBytesSent')] },
    { name: 'GetTotalBytesReceived', in: [], out: [arg('NewTotalBytesReceived', 'TotalBytesReceived')] },
    { name: 'GetTotalPacketsSent', in: [], out: [arg('NewTotalPacketsSent', 'TotalPacketsSent')] },
    { name: 'GetTotalPacketsReceived', in: [], out: [arg('NewTotalPacketsReceived', 'TotalPacketsReceived')] },
  ],
} as const satisfies ServiceSpec;

export const LAYER3_FORWARDING = {
  name: 'Layer3Forwarding',
  typePrefix: SERVICE_TYPE.layer3Forwarding,
  serviceId: SERVICE_ID.layer3Forwarding,
  pathName: 'L3F',
  highestVersion: 1,
  stateVariables: [{ name: 'DefaultConnectionService', dataType: 'string', evented: true }],
  actions: [
    { name: 'SetDefaultConnectionService', in: [arg('NewDefaultConnectionService', 'DefaultConnectionService')], out: [] },
    { name: 'GetDefaultConnectionService', in: [], out: [arg('NewDefaultConnectionService', 'DefaultConnectionService')] },
  ],
} as const satisfies ServiceSpec;

/** Longest pinhole lease WANIPv6FirewallControl:1 allows (A_ARG_TYPE_LeaseTime: 1 to 86400 seconds). */
export const MAX_PINHOLE_LEASE_SECONDS = 86400;

const PINHOLE_ARGS = [
  arg('RemoteHost', 'A_ARG_TYPE_RemoteHost'),
  // nat-port-mapper (libp2p) sends RemotePort empty for "any remote port" (miniupnpd reads it as 0).
  { name: 'RemotePort', stateVariable: 'A_ARG_TYPE_Port', emptyIsWildcard: true } satisfies ArgumentSpec,
  arg('InternalClient', 'A_ARG_TYPE_InternalClient'),
  arg('InternalPort', 'A_ARG_TYPE_Port'),
  arg('Protocol', 'A_ARG_TYPE_Protocol'),
];
const UNIQUE_ID = arg('UniqueID', 'A_ARG_TYPE_UniqueID');

/** IGD:2's IPv6 firewall control (WANIPv6FirewallControl:1), in the WANConnectionDevice of the IGD:2 view only. */
export const WAN_IPV6_FIREWALL_CONTROL = {
  name: 'WANIPv6FirewallControl',
  typePrefix: SERVICE_TYPE.wanIpv6FirewallControl,
  serviceId: SERVICE_ID.wanIpv6FirewallControl,
  pathName: 'WANIP6FC',
  highestVersion: 1,
  stateVariables: [
    { name: 'FirewallEnabled', dataType: 'boolean', evented: true },
    { name: 'InboundPinholeAllowed', dataType: 'boolean', evented: true },
    { name: 'SystemUpdateID', dataType: 'ui4', evented: true },
    { name: 'A_ARG_TYPE_OutboundPinholeTimeout', dataType: 'ui4', evented: false },
    { name: 'A_ARG_TYPE_RemoteHost', dataType: 'string', evented: false },
    { name: 'A_ARG_TYPE_InternalClient', dataType: 'string', evented: false },
    { name: 'A_ARG_TYPE_Port', dataType: 'ui2', evented: false },
    { name: 'A_ARG_TYPE_Protocol', dataType: 'ui2', evented: false },
    { name: 'A_ARG_TYPE_LeaseTime', dataType: 'ui4', evented: false, range: { minimum: 1, maximum: MAX_PINHOLE_LEASE_SECONDS } },
    { name: 'A_ARG_TYPE_UniqueID', dataType: 'ui2', evented: false },
    { name: 'A_ARG_TYPE_PinholePackets', dataType: 'ui4', evented: false },
    { name: 'A_ARG_TYPE_Boolean', dataType: 'boolean', evented: false },
  ],
  actions: [
    { name: 'GetFirewallStatus', in: [], out: [arg('FirewallEnabled', 'FirewallEnabled'), arg('InboundPinholeAllowed', 'InboundPinholeAllowed')] },
    { name: 'GetOutboundPinholeTimeout', in: PINHOLE_ARGS, out: [arg('OutboundPinholeTimeout', 'A_ARG_TYPE_OutboundPinholeTimeout')] },
    { name: 'AddPinhole', in: [...PINHOLE_ARGS, arg('LeaseTime', 'A_ARG_TYPE_LeaseTime')], out: [UNIQUE_ID] },
    { name: 'UpdatePinhole', in: [UNIQUE_ID, arg('NewLeaseTime', 'A_ARG_TYPE_LeaseTime')], out: [] },
    { name: 'DeletePinhole', in: [UNIQUE_ID], out: [] },
    { name: 'GetPinholePackets', in: [UNIQUE_ID], out: [arg('PinholePackets', 'A_ARG_TYPE_PinholePackets')] },
    { name: 'CheckPinholeWorking', in: [UNIQUE_ID], out: [arg('IsWorking', 'A_ARG_TYPE_Boolean')] },
  ],
} as const satisfies ServiceSpec;
