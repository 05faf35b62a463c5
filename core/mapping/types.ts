import type { PinholeChanges, PinholeView } from './pinhole.js';

/** Transport protocols a port mapping can forward. */
export type Protocol = 'TCP' | 'UDP';
export const PROTOCOLS: readonly Protocol[] = ['TCP', 'UDP'];

/**
 * The identity of a mapping, as UPnP defines it: (RemoteHost, ExternalPort, Protocol).
 * `remoteHost` is '' for "any remote host" (the wildcard).
 */
export interface MappingKey {
  readonly remoteHost: string;
  readonly externalPort: number;
  readonly protocol: Protocol;
}

/** What a client asks for. `leaseSeconds` 0 asks for a permanent lease. */
export interface MappingRequest extends MappingKey {
  readonly internalClient: string;
  readonly internalPort: number;
  readonly enabled: boolean;
  readonly description: string;
  readonly leaseSeconds: number;
  /**
   * PCP: the nonce (24 hex digits) of the client that owns the mapping. A request carrying another
   * nonce may not renew or delete it (NOT_AUTHORIZED); one carrying none (UPnP, NAT-PMP, from the
   * same internal client) keeps it. Kept in the state file, so it outlives a restart.
   */
  readonly ownerNonce?: string;
}

/** Who asked, and through which front-end ('upnp-igd:1', 'upnp-igd:2', 'cli', ...). */
export interface Requester {
  readonly address: string;
  readonly via: string;
}

/** A mapping as the table holds it. `expiresAt` is on the monotonic clock (ms); null = permanent. */
export interface PortMapping extends MappingRequest {
  readonly expiresAt: number | null;
  readonly createdBy: Requester;
}

/**
 * A mapping built field by field, in one order, so that every mapping in the table shares one
 * object shape. (Spreading the request instead gave each of them a shape of its own in V8: 1.6 MB
 * more with 5000 mappings.) Properties the request may carry beyond MappingRequest are dropped.
 *
 * `sibling`, another mapping of the same internal client, lends its requester and strings where
 * they are equal, and the requester's address serves as the internal client it names: a host's
 * mappings then hold one copy of each rather than one per mapping (130 bytes a mapping).
 */
export function portMappingOf(request: MappingRequest, expiresAt: number | null, createdBy: Requester, sibling?: PortMapping): PortMapping {
  const requester = sibling && sameRequester(sibling.createdBy, createdBy) ? sibling.createdBy : createdBy;
  return {
    remoteHost: ownString(request.remoteHost),
    externalPort: request.externalPort,
    protocol: request.protocol,
    internalPort: request.internalPort,
    internalClient: sharedString(request.internalClient, sibling?.internalClient, requester.address),
    enabled: request.enabled,
    description: sharedString(request.description, sibling?.description),
    leaseSeconds: request.leaseSeconds,
    ownerNonce: request.ownerNonce === undefined ? undefined : sharedString(request.ownerNonce, sibling?.ownerNonce),
    expiresAt,
    createdBy: requester,
  };
}

function sameRequester(a: Requester, b: Requester): boolean {
  return a.address === b.address && a.via === b.via;
}

/** The first of `held` (strings kept already) equal to `text`, else `text` in a string of its own. */
function sharedString(text: string, ...held: ReadonlyArray<string | undefined>): string {
  return held.find((h) => h === text) ?? ownString(text);
}

/**
 * The same text in a flat string of its own. A string read out of a request (a regular
 * expression's match, a slice) can be a view into the whole request text in V8, and a mapping kept
 * it alive: 5000 mappings held 5000 SOAP envelopes (3 MB) through their internalClient. A string
 * built by concatenation (a template) is a tree of its pieces, several times the size of its text.
 * V8 makes views and trees only of 13 characters or more; shorter strings are flat copies already.
 */
export function ownString(text: string): string {
  // A JSON round trip copies every code unit, lone surrogates included.
  return text.length < 13 ? text : (JSON.parse(JSON.stringify(text)) as string);
}

/** The protocol a requester spoke: 'upnp-igd:2' and 'upnp-igd:1' are both 'upnp-igd'. */
export function protocolOf(via: string): string {
  const colon = via.indexOf(':');
  return colon < 0 ? via : via.slice(0, colon);
}

/** The fields that decide which firewall rules a mapping needs (lease and description do not). */
export interface RuleSpec {
  readonly remoteHost: string;
  readonly externalPort: number;
  readonly protocol: Protocol;
  readonly internalClient: string;
  readonly internalPort: number;
}

export function keyOf(k: MappingKey): MappingKey {
  return { remoteHost: k.remoteHost, externalPort: k.externalPort, protocol: k.protocol };
}

export function keyString(k: MappingKey): string {
  return `${k.protocol}/${k.externalPort}/${k.remoteHost}`;
}

export function ruleOf(m: RuleSpec): RuleSpec {
  return {
    remoteHost: m.remoteHost,
    externalPort: m.externalPort,
    protocol: m.protocol,
    internalClient: m.internalClient,
    internalPort: m.internalPort,
  };
}

export function sameRule(a: RuleSpec, b: RuleSpec): boolean {
  return (
    a.remoteHost === b.remoteHost &&
    a.externalPort === b.externalPort &&
    a.protocol === b.protocol &&
    a.internalClient === b.internalClient &&
    a.internalPort === b.internalPort
  );
}

/**
 * What a firewall backend is asked to do in one atomic step. Removals are applied before
 * additions, so a replace (same key, new target) is one change set with one of each.
 */
export interface ChangeSet {
  readonly remove: readonly RuleSpec[];
  readonly add: readonly RuleSpec[];
  /**
   * IPv6 pinholes, in the same transaction. Present only when the change has some: a backend that
   * does not declare `pinholes` never receives it (the core refuses pinholes first).
   */
  readonly pinholes?: PinholeChanges;
}

export const EMPTY_CHANGE_SET: ChangeSet = Object.freeze({ remove: [], add: [] });

export function isEmptyChangeSet(c: ChangeSet): boolean {
  return c.remove.length === 0 && c.add.length === 0 && (c.pinholes === undefined || (c.pinholes.remove.length === 0 && c.pinholes.add.length === 0));
}

/** A read-only view of the mapping table (what policies and plugins see). */
export interface MappingView {
  get(key: MappingKey): PortMapping | undefined;
  readonly size: number;
  values(): Iterable<PortMapping>;
  /** How many mappings the client at `address` holds (created; `createdBy.address`), in O(1). */
  heldBy(address: string): number;
  /** The mappings to one internal client, in table order, without walking the others. */
  ofClient(internalClient: string): Iterable<PortMapping>;
}

/** What a policy sees besides the request. */
export interface PolicyContext {
  readonly requester: Requester;
  /** The mapping currently held under the request's key, if any (a renewal or a conflict). */
  readonly existing: PortMapping | undefined;
  /** The table as it stands inside this change (read only). */
  readonly mappings: MappingView;
  /** The IPv6 pinholes as they stand inside this change (quotas count them too). */
  readonly pinholes?: PinholeView;
}

export interface MappedEvent {
  readonly mapping: PortMapping;
  /** The mapping this one replaced (same key), if any. */
  readonly previous: PortMapping | undefined;
  readonly requester: Requester;
  /** Reinstalled at start from the state directory (`requester` is then who created it). */
  readonly restored?: boolean;
}

export type UnmapReason = 'deleted' | 'expired' | 'shutdown';

export interface UnmappedEvent {
  readonly mapping: PortMapping;
  readonly reason: UnmapReason;
  /** Who asked for the removal; null when the daemon removed it itself (expiry, shutdown). */
  readonly requester: Requester | null;
}

export interface ExternalAddressChangeEvent {
  readonly previous: string;
  readonly current: string;
}

/**
 * What a firewall backend's integrity check found: `missing` names each part that is gone or
 * wrong (its table or chains, a jump from the admin's chain, mappings), in words for the log.
 * Empty when what the backend installed is intact.
 */
export interface IntegrityReport {
  readonly missing: readonly string[];
}

/** The firewall had lost part of upnpd's rules and the reconciler put them back. */
export interface RepairedEvent {
  /** What was missing, in words (as the log says it). */
  readonly missing: readonly string[];
  /** Mappings resynced. */
  readonly rules: number;
  readonly tookMs: number;
  /** What started the check: periodic, kernel event, failed change. */
  readonly reason: string;
}
