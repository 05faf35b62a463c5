import { isIPv6 } from 'node:net';
import { readFile } from 'node:fs/promises';
import { UpnpError, UpnpErrorCode } from '../../errors.js';
import type { PinholeRequest } from '../../mapping/pinhole.js';
import { canonicalIPv6 } from '../../net/ipv6.js';
import type { MappingService } from '../../mapping/service.js';
import type { Protocol } from '../../mapping/types.js';
import { MAX_PINHOLE_LEASE_SECONDS, type WAN_IPV6_FIREWALL_CONTROL } from '../description/services.js';
import { invalidArgs, type ActionArguments } from './arguments.js';
import type { ActionHandlers } from './control.js';

/** IANA protocol numbers as WANIPv6FirewallControl carries them; 65535 is its wildcard. */
const PROTOCOL_NUMBERS: Readonly<Record<number, Protocol>> = { 6: 'TCP', 17: 'UDP' };
const ANY_PROTOCOL = 65535;

/**
 * How long the kernel keeps an idle outbound flow open (GetOutboundPinholeTimeout): conntrack's
 * timeouts, read from /proc when they can be, else the kernel's defaults.
 */
const OUTBOUND_TIMEOUTS: Readonly<Record<Protocol, { readonly file: string; readonly fallbackSeconds: number }>> = {
  TCP: { file: '/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established', fallbackSeconds: 432000 },
  UDP: { file: '/proc/sys/net/netfilter/nf_conntrack_udp_timeout_stream', fallbackSeconds: 120 },
};

/**
 * WANIPv6FirewallControl:1 (IGD:2 view). Pinholes change only through the MappingService (its
 * policies, ownership check, journal and backend transaction); this only reads the arguments as
 * the service template defines them and picks its error codes.
 */
export function wanIpv6FirewallControlHandlers(mappings: MappingService): ActionHandlers<typeof WAN_IPV6_FIREWALL_CONTROL> {
  return {
    GetFirewallStatus: () => ({ FirewallEnabled: true, InboundPinholeAllowed: mappings.pinholesSupported }),
    GetOutboundPinholeTimeout: async ({ args }) => {
      const { protocol } = readPinhole(args, 0);
      return { OutboundPinholeTimeout: await outboundTimeout(protocol) };
    },
    AddPinhole: async ({ args, requester }) => {
      const pinhole = await mappings.openPinhole(readPinhole(args, readLease(args, 'LeaseTime')), requester);
      return { UniqueID: pinhole.id };
    },
    UpdatePinhole: async ({ args, requester }) => {
      await mappings.updatePinhole(readUniqueId(args), readLease(args, 'NewLeaseTime'), requester);
    },
    DeletePinhole: async ({ args, requester }) => {
      await mappings.closePinhole(readUniqueId(args), requester);
    },
    GetPinholePackets: async ({ args, requester }) => ({ PinholePackets: clampUi4(await mappings.pinholePackets(readUniqueId(args), requester)) }),
    CheckPinholeWorking: async ({ args, requester }) => {
      const packets = await mappings.pinholePackets(readUniqueId(args), requester);
      if (packets === 0) throw new UpnpError(UpnpErrorCode.NoTrafficReceived, 'no packet has come through the pinhole yet');
      return { IsWorking: true };
    },
  };
}

/** The evented variables, as GENA sends them and QueryStateVariable reads them. */
export function firewallVariables(mappings: MappingService, systemUpdateId: number): Record<string, string> {
  return { FirewallEnabled: '1', InboundPinholeAllowed: mappings.pinholesSupported ? '1' : '0', SystemUpdateID: String(systemUpdateId) };
}

/** The five arguments that describe a pinhole, with the template's wildcards and error codes. */
function readPinhole(args: ActionArguments, leaseSeconds: number): PinholeRequest {
  const protocolNumber = args.number('Protocol');
  if (protocolNumber === ANY_PROTOCOL) throw new UpnpError(UpnpErrorCode.ProtocolWildcardingNotAllowed, 'give TCP (6) or UDP (17)');
  const protocol = PROTOCOL_NUMBERS[protocolNumber];
  if (!protocol) throw new UpnpError(UpnpErrorCode.ProtocolNotSupported, `protocol ${protocolNumber}: only TCP (6) and UDP (17) are supported`);
  const internalClient = args.string('InternalClient').trim();
  if (internalClient === '' || internalClient === '*') throw new UpnpError(UpnpErrorCode.WildCardNotPermittedInSrcIPv6, 'InternalClient must be an address');
  if (!isIPv6(internalClient) || internalClient.includes('%')) throw invalidArgs('InternalClient must be an IPv6 address');
  const internalPort = args.number('InternalPort');
  if (internalPort === 0) throw new UpnpError(UpnpErrorCode.InternalPortWildcardingNotAllowed);
  const remote = args.string('RemoteHost').trim();
  const remoteHost = remote === '' || remote === '*' ? '' : remote;
  if (remoteHost !== '' && (!isIPv6(remoteHost) || remoteHost.includes('%'))) throw invalidArgs('RemoteHost must be an IPv6 address or empty');
  return {
    remoteHost: remoteHost === '' ? '' : canonicalIPv6(remoteHost),
    remotePort: args.number('RemotePort'),
    internalClient: canonicalIPv6(internalClient),
    internalPort,
    protocol,
    leaseSeconds,
  };
}

function readLease(args: ActionArguments, name: 'LeaseTime' | 'NewLeaseTime'): number {
  const seconds = args.number(name);
  if (seconds < 1 || seconds > MAX_PINHOLE_LEASE_SECONDS) throw invalidArgs(`${name} must be from 1 to ${MAX_PINHOLE_LEASE_SECONDS} seconds`);
  return seconds;
}

function readUniqueId(args: ActionArguments): number {
  const id = args.number('UniqueID');
  if (id === 0) throw new UpnpError(UpnpErrorCode.NoSuchEntry, 'no pinhole has UniqueID 0');
  return id;
}

function clampUi4(n: number): number {
  return Math.min(Math.max(0, Math.trunc(n)), 0xffffffff);
}

async function outboundTimeout(protocol: Protocol): Promise<number> {
  const { file, fallbackSeconds } = OUTBOUND_TIMEOUTS[protocol];
  const value = Number((await readFile(file, 'utf8').catch(() => '')).trim());
  return Number.isInteger(value) && value > 0 ? clampUi4(value) : fallbackSeconds;
}
