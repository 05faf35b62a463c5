import { SERVICE_ID, type MappedEvent, type PinholeEvent, type PortMapping, type Requester, type UnmappedEvent } from 'upnpd';
import { pinholeRuleString, sameRule } from 'upnpd/backend';

/** What happened to a mapping. */
export type MappingChange = 'added' | 'renewed' | 'replaced' | 'restored' | 'deleted' | 'expired' | 'removed';

/** One mapping change as a log record: structured fields and a readable message saying the same. */
export interface MappingLogEntry {
  readonly fields: Readonly<Record<string, unknown>>;
  readonly message: string;
}

/**
 * An added mapping. `leaseSeconds` is the lease granted (0 = permanent), which policies and the
 * lease limits may have changed from what the client asked for. A mapping that replaced one with
 * the same target is a renewal (how every client keeps its mappings); with another target, a
 * replacement. One reinstalled from the state directory at start is a restore.
 */
export function describeMapped(event: MappedEvent, leaseSeconds: number): MappingLogEntry {
  const { mapping, previous, requester } = event;
  if (event.restored) {
    return {
      fields: { ...mappingFields(mapping, 'restored'), lease: leaseSeconds, ...requesterFields(requester) },
      message: `RestorePortMap: ${target(mapping)} Lease:${leaseSeconds === 0 ? 'permanent' : leaseSeconds} (mapped ${by(requester)})`,
    };
  }
  const change: MappingChange = !previous ? 'added' : sameRule(previous, mapping) ? 'renewed' : 'replaced';
  const qualifier = change === 'renewed' ? ' (renewed)' : change === 'replaced' ? ` (replaced Int:${previous!.internalClient}:${previous!.internalPort})` : '';
  const lease = leaseSeconds === 0 ? 'permanent' : String(leaseSeconds);
  return {
    fields: {
      ...mappingFields(mapping, change),
      lease: leaseSeconds,
      ...(change === 'replaced' ? { previousInternalClient: previous!.internalClient, previousInternalPort: previous!.internalPort } : {}),
      ...requesterFields(requester),
    },
    message: `AddPortMap${qualifier}: ${target(mapping)} Lease:${lease} ${by(requester)}`,
  };
}

/** A removed mapping: deleted by a client, expired, or removed at shutdown. */
export function describeUnmapped(event: UnmappedEvent): MappingLogEntry {
  const { mapping, reason, requester } = event;
  const change: MappingChange = reason === 'deleted' ? 'deleted' : reason === 'expired' ? 'expired' : 'removed';
  const verb = { deleted: 'DeletePortMap', expired: 'ExpirePortMap', removed: 'RemovePortMap' }[change];
  // The daemon removes expired mappings and all of them at shutdown; say who had made them instead.
  const who = requester ? by(requester) : `${reason === 'expired' ? 'lease expired' : 'at shutdown'}, mapped ${by(mapping.createdBy)}`;
  return {
    fields: {
      ...mappingFields(mapping, change),
      ...(requester ? requesterFields(requester) : { requester: null, createdBy: mapping.createdBy.address, via: mapping.createdBy.via }),
    },
    message: `${verb}: ${target(mapping)} ${who}`,
  };
}

const PINHOLE_VERBS: Readonly<Record<PinholeEvent['change'], string>> = {
  opened: 'AddPinhole',
  renewed: 'AddPinhole (renewed)',
  restored: 'RestorePinhole',
  deleted: 'DeletePinhole',
  expired: 'ExpirePinhole',
  shutdown: 'RemovePinhole',
};

/** An IPv6 pinhole opened, renewed, restored or closed, in the same shape as a mapping's record. */
export function describePinhole(event: PinholeEvent, leaseSeconds: number): MappingLogEntry {
  const { pinhole, requester, change } = event;
  const closed = change === 'deleted' || change === 'expired' || change === 'shutdown';
  const who = requester ? by(requester) : `${change === 'expired' ? 'lease expired' : 'at shutdown'}, opened ${by(pinhole.createdBy)}`;
  return {
    fields: {
      event: 'pinhole',
      change,
      uniqueId: pinhole.id,
      protocol: pinhole.protocol,
      internalClient: pinhole.internalClient,
      internalPort: pinhole.internalPort,
      remoteHost: pinhole.remoteHost,
      remotePort: pinhole.remotePort,
      ...(closed ? {} : { lease: leaseSeconds }),
      ...(requester ? requesterFields(requester) : { requester: null, createdBy: pinhole.createdBy.address, via: pinhole.createdBy.via }),
    },
    message: `${PINHOLE_VERBS[change]}: UniqueID:${pinhole.id} ${pinholeRuleString(pinhole)}${closed ? '' : ` Lease:${leaseSeconds}`} ${who}`,
  };
}

/** The serviceId a front-end acted through: UPnP IGD maps ports in WANIPConnection only. */
export function serviceIdOf(via: string): string | undefined {
  return via.startsWith('upnp-igd') ? SERVICE_ID.wanIpConnection : undefined;
}

function mappingFields(mapping: PortMapping, change: MappingChange): Record<string, unknown> {
  return {
    event: 'portmap',
    change,
    protocol: mapping.protocol,
    externalPort: mapping.externalPort,
    internalClient: mapping.internalClient,
    internalPort: mapping.internalPort,
    remoteHost: mapping.remoteHost,
    description: mapping.description,
    service: serviceIdOf(mapping.createdBy.via),
  };
}

function requesterFields(requester: Requester): Record<string, unknown> {
  return { requester: requester.address, via: requester.via, service: serviceIdOf(requester.via) };
}

function target(mapping: PortMapping): string {
  return (
    `Proto:${mapping.protocol} ExtPort:${mapping.externalPort} Int:${mapping.internalClient}:${mapping.internalPort} ` +
    `RemoteHost:${mapping.remoteHost === '' ? '(any)' : mapping.remoteHost}`
  );
}

function by(requester: Requester): string {
  return `by ${requester.address} via ${requester.via}`;
}
