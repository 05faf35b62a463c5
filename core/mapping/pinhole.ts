import { isIPv6 } from 'node:net';
import { canonicalIPv6 } from '../net/ipv6.js';
import { ownString, type MappingView, type Protocol, type Requester } from './types.js';

/**
 * IPv6 pinholes: holes in the gateway's firewall that let WAN hosts reach a LAN host's IPv6 port
 * (no translation, the address is global). They are entries of the same table as port mappings,
 * with leases, policies, persistence and reconciliation, but under their own identity: a UniqueID
 * (WANIPv6FirewallControl:1's ui2), owned by the LAN host whose address the pinhole opens.
 * UPnP's WANIPv6FirewallControl creates them today; PCP MAP with an IPv6 internal address can
 * create them through the same MappingService methods.
 */

/** What a client asks for. Wildcards: remoteHost '' (any remote host), remotePort 0 (any remote port). */
export interface PinholeRequest {
  readonly remoteHost: string;
  readonly remotePort: number;
  /** The LAN host's IPv6 address the pinhole opens (global or ULA, never link-local). */
  readonly internalClient: string;
  readonly internalPort: number;
  readonly protocol: Protocol;
  /** Seconds; pinholes are never permanent. */
  readonly leaseSeconds: number;
  /**
   * The PCP nonce (hex) of the MAP that opened it: kept with the pinhole and in the state file, so
   * that after a restart too only that client renews or deletes it through PCP. Absent for UPnP.
   */
  readonly ownerNonce?: string;
}

/** A pinhole as the table holds it. `expiresAt` is on the monotonic clock (ms). */
export interface Pinhole extends PinholeRequest {
  /** The UniqueID (1–65535). */
  readonly id: number;
  readonly expiresAt: number;
  readonly createdBy: Requester;
}

/** UniqueIDs are ui2 in WANIPv6FirewallControl:1; 0 is never given out. */
export const MAX_PINHOLE_ID = 65535;

/** The fields that decide the firewall's rule for a pinhole (its UniqueID and lease do not). */
export interface PinholeRule {
  readonly remoteHost: string;
  readonly remotePort: number;
  readonly internalClient: string;
  readonly internalPort: number;
  readonly protocol: Protocol;
}

/** Pinhole rules a backend removes (first) and adds in the same transaction as a ChangeSet's mappings. */
export interface PinholeChanges {
  readonly remove: readonly PinholeRule[];
  readonly add: readonly PinholeRule[];
}

/** A read-only view of the pinholes (what policies and plugins see). */
export interface PinholeView {
  get(id: number): Pinhole | undefined;
  readonly size: number;
  values(): Iterable<Pinhole>;
}

/** What a pinhole policy sees besides the request. */
export interface PinholePolicyContext {
  readonly requester: Requester;
  /** The pinhole this request renews (same rule, same owner), if any. */
  readonly existing: Pinhole | undefined;
  /** The pinholes as they stand inside this change. */
  readonly pinholes: PinholeView;
  /** The port mappings as they stand inside this change (quotas count them too). */
  readonly mappings?: MappingView;
}

export interface PinholeEvent {
  readonly pinhole: Pinhole;
  /** Who asked; null when the daemon did it itself (expiry, shutdown). */
  readonly requester: Requester | null;
  readonly change: 'opened' | 'renewed' | 'deleted' | 'expired' | 'shutdown' | 'restored';
}

/** A pinhole whose strings are its own (see ownString), its internal client the requester's address when it is that (kept once). */
export function pinholeOf(request: PinholeRequest, id: number, expiresAt: number, createdBy: Requester): Pinhole {
  return {
    id,
    remoteHost: ownString(request.remoteHost),
    remotePort: request.remotePort,
    internalClient: request.internalClient === createdBy.address ? createdBy.address : ownString(request.internalClient),
    internalPort: request.internalPort,
    protocol: request.protocol,
    leaseSeconds: request.leaseSeconds,
    expiresAt,
    createdBy,
    ...(request.ownerNonce !== undefined && { ownerNonce: ownString(request.ownerNonce) }),
  };
}

export function pinholeRuleOf(p: PinholeRule): PinholeRule {
  return { remoteHost: p.remoteHost, remotePort: p.remotePort, internalClient: p.internalClient, internalPort: p.internalPort, protocol: p.protocol };
}

/** The identity of a rule (addresses in canonical form), for comparing and for log lines. */
export function pinholeRuleString(p: PinholeRule): string {
  const remote = p.remoteHost === '' ? '*' : canonicalIPv6(p.remoteHost);
  return `${p.protocol} [${remote}]:${p.remotePort || '*'} -> [${canonicalIPv6(p.internalClient)}]:${p.internalPort}`;
}

export function samePinholeRule(a: PinholeRule, b: PinholeRule): boolean {
  return pinholeRuleString(a) === pinholeRuleString(b);
}

/** Whether a rule is well formed (what a backend may turn into firewall arguments). */
export function isValidPinholeRule(p: PinholeRule): boolean {
  const port = (n: number, wildcard: boolean) => Number.isInteger(n) && n >= (wildcard ? 0 : 1) && n <= 65535;
  return (
    (p.protocol === 'TCP' || p.protocol === 'UDP') &&
    isIPv6(p.internalClient) &&
    !p.internalClient.includes('%') &&
    (p.remoteHost === '' || (isIPv6(p.remoteHost) && !p.remoteHost.includes('%'))) &&
    port(p.internalPort, false) &&
    port(p.remotePort, true)
  );
}
