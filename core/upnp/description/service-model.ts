/**
 * Services as data: their state variables and actions, per version. The SCPDs are rendered from
 * this, and the SOAP dispatcher accepts exactly the actions listed here, so the two cannot drift.
 */

/** The UPnP data types upnpd's services use (UDA 1.1 §2.5). */
export type DataType = 'string' | 'boolean' | 'ui2' | 'ui4';

export type ServiceVersion = 1 | 2;

export interface StateVariable {
  readonly name: string;
  readonly dataType: DataType;
  /** Whether GENA events carry it (`sendEvents="yes"`). */
  readonly evented: boolean;
  readonly allowedValues?: readonly string[];
  readonly range?: { readonly minimum: number; readonly maximum: number };
  /**
   * Values are XML documents (A_ARG_TYPE_PortListing). They are sent in a CDATA section, as
   * miniupnpd does: miniupnpc reads element text without decoding entities.
   */
  readonly xmlDocument?: boolean;
  /** Versions that declare this variable (absent: every version of the service). */
  readonly versions?: readonly ServiceVersion[];
}

export interface ArgumentSpec {
  readonly name: string;
  /** The state variable that gives the argument its type (UDA `relatedStateVariable`). */
  readonly stateVariable: string;
  /** An empty in-value reads as the wildcard 0 instead of being refused (a client quirk the action tolerates). */
  readonly emptyIsWildcard?: true;
}

export interface ActionSpec {
  readonly name: string;
  readonly in: readonly ArgumentSpec[];
  readonly out: readonly ArgumentSpec[];
  /** Versions that offer this action (absent: every version of the service). */
  readonly versions?: readonly ServiceVersion[];
}

export interface ServiceSpec {
  /** The name in the service type URN, e.g. `WANIPConnection`. */
  readonly name: string;
  /** `urn:schemas-upnp-org:service:NAME` (without the version). */
  readonly typePrefix: string;
  readonly serviceId: string;
  /** Short name used in URL paths. */
  readonly pathName: string;
  readonly highestVersion: ServiceVersion;
  readonly stateVariables: readonly StateVariable[];
  readonly actions: readonly ActionSpec[];
}

/** The names of a service's actions, for handler tables the compiler keeps complete. */
export type ActionName<S extends ServiceSpec> = S['actions'][number]['name'];

/** What one version of a service offers. */
export interface ServiceAtVersion {
  readonly spec: ServiceSpec;
  readonly version: ServiceVersion;
  readonly serviceType: string;
  readonly stateVariables: readonly StateVariable[];
  readonly actions: readonly ActionSpec[];
}

export function serviceAtVersion(spec: ServiceSpec, version: ServiceVersion): ServiceAtVersion {
  if (version > spec.highestVersion) throw new RangeError(`${spec.name} has no version ${version}`);
  const offered = (item: { versions?: readonly ServiceVersion[] }) => item.versions === undefined || item.versions.includes(version);
  return {
    spec,
    version,
    serviceType: `${spec.typePrefix}:${version}`,
    stateVariables: spec.stateVariables.filter(offered),
    actions: spec.actions.filter(offered),
  };
}

/** The state variable an argument refers to at this version; a missing one is a bug in the service data. */
export function stateVariableOf(service: ServiceAtVersion, argument: ArgumentSpec): StateVariable {
  const variable = service.stateVariables.find((v) => v.name === argument.stateVariable);
  if (!variable) throw new Error(`${service.serviceType}: argument ${argument.name} refers to unknown state variable ${argument.stateVariable}`);
  return variable;
}
