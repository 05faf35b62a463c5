import { UpnpError, UpnpErrorCode, upnpErrorIn } from '../../errors.js';
import type { MappingService } from '../../mapping/service.js';
import type { MappingKey, MappingRequest, PortMapping, Protocol, Requester } from '../../mapping/types.js';
import { IGD2_MAX_LEASE_SECONDS, type WAN_IP_CONNECTION } from '../description/services.js';
import { invalidArgs, parseIpv4, parseProtocol, parseRemoteHost, type ActionArguments } from './arguments.js';
import type { ActionCall, ActionHandlers, ActionResult } from './control.js';
import { portMappingListXml } from './port-mapping-list.js';
import type { WanConnection } from '../../net/wan-connection.js';

export interface WanIpConnectionDeps {
  readonly mappings: MappingService;
  readonly wan: WanConnection;
  /** Ports AddAnyPortMapping may pick from (config `upnp.addAnyPortRange`). */
  readonly addAnyPortRange: readonly [number, number];
}

/** Most entries one GetListOfPortMappings returns (NewNumberOfPorts 0 asks for all, up to this). */
const MAX_LISTED_MAPPINGS = 1000;

/** AddAnyPortMapping gives up (728) after this many ports refused by policies or the backend. */
const ADD_ANY_MAX_ATTEMPTS = 16;

/** Only IP routing is offered; a LAN client can neither change nor end the WAN connection. */
export const CONNECTION_TYPE = 'IP_Routed';

/** WANIPConnection:1 and :2. Mappings change only through the MappingService (and so its policies). */
export function wanIpConnectionHandlers({ mappings, wan, addAnyPortRange }: WanIpConnectionDeps): ActionHandlers<typeof WAN_IP_CONNECTION> {
  return {
    SetConnectionType: () => {
      throw new UpnpError(UpnpErrorCode.ReadOnly, `the connection type is ${CONNECTION_TYPE}`);
    },
    GetConnectionTypeInfo: () => ({ NewConnectionType: CONNECTION_TYPE, NewPossibleConnectionTypes: CONNECTION_TYPE }),
    RequestConnection: () => {
      requireExternalAddress(wan);
    },
    ForceTermination: () => {
      throw new UpnpError(UpnpErrorCode.NotAuthorized, 'LAN clients may not end the WAN connection');
    },
    GetStatusInfo: () => ({
      NewConnectionStatus: connectionStatus(wan),
      NewLastConnectionError: wan.connected ? 'ERROR_NONE' : 'ERROR_IP_CONFIGURATION',
      NewUptime: wan.uptimeSeconds(),
    }),
    GetNATRSIPStatus: () => ({ NewRSIPAvailable: false, NewNATEnabled: true }),
    GetGenericPortMappingEntry: ({ args }) => {
      const mapping = mappings.at(args.number('NewPortMappingIndex'));
      if (!mapping) throw new UpnpError(UpnpErrorCode.SpecifiedArrayIndexInvalid);
      return {
        NewRemoteHost: mapping.remoteHost,
        NewExternalPort: mapping.externalPort,
        NewProtocol: mapping.protocol,
        ...mappingValues(mappings, mapping),
      };
    },
    GetSpecificPortMappingEntry: ({ args }) => {
      const mapping = mappings.get(readKey(args));
      if (!mapping) throw new UpnpError(UpnpErrorCode.NoSuchEntryInArray);
      return mappingValues(mappings, mapping);
    },
    AddPortMapping: async (call) => {
      const request = readMappingRequest(call);
      requireExternalAddress(wan);
      await mappings.add(request, call.requester);
    },
    AddAnyPortMapping: async (call) => {
      const request = readMappingRequest(call);
      requireExternalAddress(wan);
      const mapping = await mappings
        .addAny(request, call.requester, { portRange: addAnyPortRange, maxAttempts: ADD_ANY_MAX_ATTEMPTS })
        .catch(notAuthorizedWhateverThePort);
      return { NewReservedPort: mapping.externalPort };
    },
    DeletePortMapping: async ({ args, requester }) => {
      if (args.string('NewProtocol').trim() === '') return deleteBothProtocols(mappings, args, requester);
      await mappings.delete(readKey(args), requester);
    },
    DeletePortMappingRange: async ({ args, requester }) => {
      const deleted = await mappings.deleteMatching(rangeFilter(args, requester), requester);
      if (deleted.length === 0) throw new UpnpError(UpnpErrorCode.PortMappingNotFound, 'no mapping in the range that this client may delete');
    },
    GetListOfPortMappings: ({ args, requester }) => {
      const matches = rangeFilter(args, requester);
      const asked = args.number('NewNumberOfPorts');
      const limit = asked === 0 ? MAX_LISTED_MAPPINGS : Math.min(asked, MAX_LISTED_MAPPINGS);
      const listed = [...mappings.values()]
        .filter(matches)
        .sort((a, b) => a.externalPort - b.externalPort)
        .slice(0, limit);
      if (listed.length === 0) throw new UpnpError(UpnpErrorCode.PortMappingNotFound);
      return { NewPortListing: portMappingListXml(listed, (m) => mappings.remainingSeconds(m)) };
    },
    GetExternalIPAddress: () => ({ NewExternalIPAddress: wan.externalAddress ?? '' }),
  };
}

export function connectionStatus(wan: WanConnection): 'Connected' | 'Disconnected' {
  return wan.connected ? 'Connected' : 'Disconnected';
}

function requireExternalAddress(wan: WanConnection): void {
  if (!wan.connected) throw new UpnpError(UpnpErrorCode.ActionFailed, 'there is no external address');
}

function mappingValues(mappings: MappingService, mapping: PortMapping): ActionResult {
  return {
    NewInternalPort: mapping.internalPort,
    NewInternalClient: mapping.internalClient,
    NewEnabled: mapping.enabled,
    NewPortMappingDescription: mapping.description,
    NewLeaseDuration: mappings.remainingSeconds(mapping),
  };
}

function readKey(args: ActionArguments): MappingKey {
  return {
    remoteHost: parseRemoteHost('NewRemoteHost', args.string('NewRemoteHost')),
    externalPort: args.number('NewExternalPort'),
    protocol: parseProtocol('NewProtocol', args.string('NewProtocol')),
  };
}

/**
 * The arguments of AddPortMapping / AddAnyPortMapping. Port 0 is a wildcard neither version lets
 * us accept; an empty NewInternalClient means the requester (games send it empty); IGD:2 turns a
 * lease of 0 or more than a week into a week, IGD:1's 0 asks for a permanent mapping.
 */
function readMappingRequest({ args, version, requester }: ActionCall): MappingRequest {
  const externalPort = args.number('NewExternalPort');
  if (externalPort === 0) throw new UpnpError(UpnpErrorCode.WildCardNotPermittedInExtPort);
  const internalPort = args.number('NewInternalPort');
  if (internalPort === 0) {
    throw version >= 2 ? new UpnpError(UpnpErrorCode.WildCardNotPermittedInIntPort) : invalidArgs('NewInternalPort must not be 0');
  }
  const client = args.string('NewInternalClient').trim();
  const lease = args.number('NewLeaseDuration');
  return {
    remoteHost: parseRemoteHost('NewRemoteHost', args.string('NewRemoteHost')),
    externalPort,
    protocol: parseProtocol('NewProtocol', args.string('NewProtocol')),
    internalPort,
    internalClient: client === '' ? requester.address : parseIpv4('NewInternalClient', client),
    enabled: args.boolean('NewEnabled'),
    description: args.string('NewPortMappingDescription'),
    leaseSeconds: version >= 2 && (lease === 0 || lease > IGD2_MAX_LEASE_SECONDS) ? IGD2_MAX_LEASE_SECONDS : lease,
  };
}

/**
 * When no port could be had because a policy refused this client on every port tried (secure
 * mode: an internal client that is not the requester; a permission rule), the answer is that
 * refusal, 606 Action not authorized, not 728 NoPortMapsAvailable: ports were not what was
 * missing (the errors of WANIPConnection:2's AddAnyPortMapping). NAT-PMP/PCP answer it the same way.
 */
function notAuthorizedWhateverThePort(err: unknown): never {
  const refusal = upnpErrorIn(err);
  const cause = refusal?.upnpCode === UpnpErrorCode.NoPortMapsAvailable ? upnpErrorIn(refusal.cause) : undefined;
  throw cause?.upnpCode === UpnpErrorCode.NotAuthorized ? cause : err;
}

/**
 * nat-port-mapper (libp2p) unmaps with an empty NewProtocol: delete the mappings of both
 * protocols at that port (those policies let this client delete).
 */
async function deleteBothProtocols(mappings: MappingService, args: ActionArguments, requester: Requester): Promise<void> {
  const remoteHost = parseRemoteHost('NewRemoteHost', args.string('NewRemoteHost'));
  const externalPort = args.number('NewExternalPort');
  const matches = (m: PortMapping) => m.remoteHost === remoteHost && m.externalPort === externalPort;
  if (![...mappings.values()].some(matches)) throw new UpnpError(UpnpErrorCode.NoSuchEntryInArray);
  const deleted = await mappings.deleteMatching(matches, requester);
  if (deleted.length === 0) throw new UpnpError(UpnpErrorCode.NotAuthorized, 'the mappings at this port belong to another client');
}

/**
 * The mappings a range action (DeletePortMappingRange, GetListOfPortMappings) covers: the port
 * range and protocol asked for, and with NewManage 0 only the caller's own mappings.
 */
function rangeFilter(args: ActionArguments, requester: Requester): (m: PortMapping) => boolean {
  const start = args.number('NewStartPort');
  const end = args.number('NewEndPort');
  const protocol: Protocol = parseProtocol('NewProtocol', args.string('NewProtocol'));
  if (start > end) throw new UpnpError(UpnpErrorCode.InconsistentParameters, 'NewStartPort is above NewEndPort');
  const manage = args.boolean('NewManage');
  return (m) => m.protocol === protocol && m.externalPort >= start && m.externalPort <= end && (manage || m.internalClient === requester.address);
}
