import { BackendError, ClientQuotaError, UpnpErrorCode, messageOf, upnpErrorIn, type UpnpError } from 'upnpd';
import { NatPmpResult, PcpResult } from './codec.js';

/** Why a NAT-PMP or PCP request was not granted, in the mapping lifecycle's terms. */
export type Refusal =
  | { readonly kind: 'refused'; readonly error: UpnpError }
  | { readonly kind: 'backend-failed'; readonly error: BackendError }
  | { readonly kind: 'rate-limited' }
  | { readonly kind: 'no-external-address' }
  | { readonly kind: 'internal-error'; readonly error: unknown };

/** The answer each protocol gives to a refusal. */
export interface RefusalAnswer {
  readonly natPmp: NatPmpResult;
  readonly pcp: PcpResult;
}

const NOT_AUTHORIZED: RefusalAnswer = { natPmp: NatPmpResult.notAuthorized, pcp: PcpResult.NOT_AUTHORIZED };
const NO_RESOURCES: RefusalAnswer = { natPmp: NatPmpResult.outOfResources, pcp: PcpResult.NO_RESOURCES };
const NETWORK_FAILURE: RefusalAnswer = { natPmp: NatPmpResult.networkFailure, pcp: PcpResult.NETWORK_FAILURE };
/** This client's own quota (NAT-PMP has no code of its own for it). */
const USER_EX_QUOTA: RefusalAnswer = { natPmp: NatPmpResult.outOfResources, pcp: PcpResult.USER_EX_QUOTA };

/**
 * The UPnP error a policy or the lifecycle refused with, as NAT-PMP and PCP say it. Policies speak
 * UPnP (the core's domain errors); this table is the one place their codes become result codes.
 */
const BY_UPNP_CODE: Partial<Record<UpnpErrorCode, RefusalAnswer>> = {
  // Secure mode, permission rules, a nonce that does not own the mapping.
  [UpnpErrorCode.NotAuthorized]: NOT_AUTHORIZED,
  // Another client's port, a reserved port: the port asked for is not this client's to have.
  [UpnpErrorCode.ConflictInMappingEntry]: NOT_AUTHORIZED,
  [UpnpErrorCode.ConflictWithOtherMechanisms]: NOT_AUTHORIZED,
  // A remote host a policy refuses (FILTER).
  [UpnpErrorCode.InvalidArgs]: NOT_AUTHORIZED,
  // No free port left, the gateway's total quota reached.
  [UpnpErrorCode.NoPortMapsAvailable]: NO_RESOURCES,
  // The gateway's total quota reached by a pinhole (PCP MAP over IPv6).
  [UpnpErrorCode.PinholeSpaceExhausted]: NO_RESOURCES,
  // The state cannot be written, the daemon is stopping.
  [UpnpErrorCode.ActionFailed]: NO_RESOURCES,
};

/** RFC 6886 §3.5 and RFC 6887 §7.4 result codes for a refusal. */
export function answerFor(refusal: Refusal): RefusalAnswer {
  switch (refusal.kind) {
    case 'refused':
      // No port could be had because a policy refused this client whatever the port: not authorized.
      if (portRefusedFor(refusal) === UpnpErrorCode.NotAuthorized) return NOT_AUTHORIZED;
      if (isClientQuota(refusal.error)) return USER_EX_QUOTA;
      return BY_UPNP_CODE[refusal.error.upnpCode] ?? NOT_AUTHORIZED;
    case 'rate-limited':
      return NO_RESOURCES;
    case 'backend-failed':
    case 'no-external-address':
    case 'internal-error':
      return NETWORK_FAILURE;
  }
}

/**
 * When no port could be had (728 from the search for one), the policy refusal of the ports tried,
 * if a policy refused them (its code), else undefined (every port was taken, or a quota).
 */
function portRefusedFor(refusal: Refusal): UpnpErrorCode | undefined {
  if (refusal.kind !== 'refused' || refusal.error.upnpCode !== UpnpErrorCode.NoPortMapsAvailable) return undefined;
  return upnpErrorIn(refusal.error.cause)?.upnpCode;
}

/** PCP PREFER_FAILURE: whether the refusal means the suggested port itself could not be had (CANNOT_PROVIDE_EXTERNAL). */
export function portUnavailable(refusal: Refusal): boolean {
  return (
    refusal.kind === 'refused' &&
    refusal.error.upnpCode === UpnpErrorCode.NoPortMapsAvailable &&
    portRefusedFor(refusal) !== UpnpErrorCode.NotAuthorized &&
    !isClientQuota(refusal.error)
  );
}

/** Whether the client's own quota refused it, directly or as the reason no port could be had. */
function isClientQuota(error: UpnpError): boolean {
  return error instanceof ClientQuotaError || upnpErrorIn(error.cause) instanceof ClientQuotaError;
}

/** What a lifecycle call threw, as a Refusal. */
export function refusalOf(err: unknown): Refusal {
  if (err instanceof BackendError) return { kind: 'backend-failed', error: err };
  const refused = upnpErrorIn(err);
  if (refused) return { kind: 'refused', error: refused };
  return { kind: 'internal-error', error: err };
}

export function describeRefusal(refusal: Refusal): string {
  switch (refusal.kind) {
    case 'refused':
    case 'backend-failed':
    case 'internal-error':
      return messageOf(refusal.error);
    case 'rate-limited':
      return 'too many state changes from this client (limits.stateChanges)';
    case 'no-external-address':
      return 'the gateway has no external address';
  }
}

/**
 * RFC 6887 §7.4: how long an error answer holds, as the RFC classifies each error: a long lifetime
 * error 30 min (the same request will not do better soon: a malformed one included), a short one
 * 30 s, so the client tries again soon (CANNOT_PROVIDE_EXTERNAL "depends on the reason": short).
 */
export function errorLifetime(result: PcpResult): number {
  return LONG_ERRORS.has(result) ? 1800 : 30;
}

const LONG_ERRORS = new Set<PcpResult>([
  PcpResult.UNSUPP_VERSION,
  PcpResult.NOT_AUTHORIZED,
  PcpResult.MALFORMED_REQUEST,
  PcpResult.UNSUPP_OPCODE,
  PcpResult.UNSUPP_OPTION,
  PcpResult.MALFORMED_OPTION,
  PcpResult.UNSUPP_PROTOCOL,
  PcpResult.ADDRESS_MISMATCH,
  PcpResult.EXCESSIVE_REMOTE_PEERS,
]);
