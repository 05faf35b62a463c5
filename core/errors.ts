/**
 * Every error upnpd raises on purpose has a stable `code`. UPnP faults carry the numeric UPnP
 * error code as well; `toUpnpFault` is the one place that turns any error into a fault.
 */
export class UpnpdError extends Error {
  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'UpnpdError';
  }
}

/** UPnP error codes (UDA 1.1 §3.2.2 and the WANIPConnection templates). */
export const UpnpErrorCode = {
  InvalidAction: 401,
  InvalidArgs: 402,
  InvalidVar: 404,
  ActionFailed: 501,
  ArgumentValueInvalid: 600,
  ArgumentValueOutOfRange: 601,
  OptionalActionNotImplemented: 602,
  NotAuthorized: 606,
  // WANIPv6FirewallControl:1
  PinholeSpaceExhausted: 701,
  FirewallDisabled: 702,
  InboundPinholeNotAllowed: 703,
  NoSuchEntry: 704,
  ProtocolNotSupported: 705,
  InternalPortWildcardingNotAllowed: 706,
  ProtocolWildcardingNotAllowed: 707,
  WildCardNotPermittedInSrcIPv6: 708,
  NoTrafficReceived: 709,
  SpecifiedArrayIndexInvalid: 713,
  NoSuchEntryInArray: 714,
  WildCardNotPermittedInSrcIP: 715,
  WildCardNotPermittedInExtPort: 716,
  ConflictInMappingEntry: 718,
  SamePortValuesRequired: 724,
  OnlyPermanentLeasesSupported: 725,
  RemoteHostOnlySupportsWildcard: 726,
  ExternalPortOnlySupportsWildcard: 727,
  NoPortMapsAvailable: 728,
  ConflictWithOtherMechanisms: 729,
  PortMappingNotFound: 730,
  ReadOnly: 731,
  WildCardNotPermittedInIntPort: 732,
  InvalidDeviceUUID: 720,
  InvalidServiceID: 721,
  InconsistentParameters: 733,
} as const;
export type UpnpErrorCode = (typeof UpnpErrorCode)[keyof typeof UpnpErrorCode];

const DESCRIPTIONS: Record<UpnpErrorCode, string> = {
  401: 'Invalid Action',
  402: 'Invalid Args',
  404: 'Invalid Var',
  501: 'Action Failed',
  600: 'Argument Value Invalid',
  601: 'Argument Value Out of Range',
  602: 'Optional Action Not Implemented',
  606: 'Action not authorized',
  701: 'PinholeSpaceExhausted',
  702: 'FirewallDisabled',
  703: 'InboundPinholeNotAllowed',
  704: 'NoSuchEntry',
  705: 'ProtocolNotSupported',
  706: 'InternalPortWildcardingNotAllowed',
  707: 'ProtocolWildcardingNotAllowed',
  708: 'WildCardNotPermittedInSrcIP',
  709: 'NoTrafficReceived',
  713: 'SpecifiedArrayIndexInvalid',
  714: 'NoSuchEntryInArray',
  715: 'WildCardNotPermittedInSrcIP',
  716: 'WildCardNotPermittedInExtPort',
  718: 'ConflictInMappingEntry',
  724: 'SamePortValuesRequired',
  725: 'OnlyPermanentLeasesSupported',
  726: 'RemoteHostOnlySupportsWildcard',
  727: 'ExternalPortOnlySupportsWildcard',
  728: 'NoPortMapsAvailable',
  729: 'ConflictWithOtherMechanisms',
  730: 'PortMappingNotFound',
  720: 'InvalidDeviceUUID',
  721: 'InvalidServiceID',
  731: 'ReadOnly',
  732: 'WildCardNotPermittedInIntPort',
  733: 'InconsistentParameters',
};

/** A refusal that a client should see as a UPnP fault with this code. */
export class UpnpError extends UpnpdError {
  readonly upnpCode: UpnpErrorCode;
  readonly description: string;
  constructor(upnpCode: UpnpErrorCode, detail?: string, options?: { cause?: unknown }) {
    const description = DESCRIPTIONS[upnpCode];
    super(`UPNPD_ERR_UPNP_${upnpCode}`, detail ? `${description}: ${detail}` : description, options);
    this.name = 'UpnpError';
    this.upnpCode = upnpCode;
    this.description = description;
  }
}

/** The codes a quota refuses with: 728 NoPortMapsAvailable for a mapping, 701 PinholeSpaceExhausted for a pinhole. */
export type QuotaErrorCode = typeof UpnpErrorCode.NoPortMapsAvailable | typeof UpnpErrorCode.PinholeSpaceExhausted;

/**
 * A refusal because the requesting client holds its own quota, not because the gateway is full:
 * UPnP still answers its code (728, or 701 for a pinhole); PCP answers USER_EX_QUOTA (RFC 6887
 * §7.4) where a full gateway gets NO_RESOURCES. A quota policy throws it for a per-client limit.
 */
export class ClientQuotaError extends UpnpError {
  constructor(upnpCode: QuotaErrorCode, detail?: string, options?: { cause?: unknown }) {
    super(upnpCode, detail, options);
    this.name = 'ClientQuotaError';
  }
}

/** A firewall backend could not apply a change set. The table is left unchanged. */
export class BackendError extends UpnpdError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('UPNPD_ERR_BACKEND', message, options);
    this.name = 'BackendError';
  }
}

/** A handler of a plugin threw. Names the plugin and the hook, keeps the original as cause. */
export class PluginHookError extends UpnpdError {
  constructor(
    readonly plugin: string,
    readonly hook: string,
    cause: unknown,
  ) {
    super('UPNPD_ERR_PLUGIN_HOOK', `plugin "${plugin}" failed in hook "${hook}": ${messageOf(cause)}`, { cause });
    this.name = 'PluginHookError';
  }
}

/** Plugin registration is wrong (unknown hook, duplicate plugin, no backend, ...). */
export class PluginRegistrationError extends UpnpdError {
  constructor(message: string) {
    super('UPNPD_ERR_PLUGIN_REGISTRATION', message);
    this.name = 'PluginRegistrationError';
  }
}

/** The configuration is invalid. The message names the file and the key path. */
export class ConfigError extends UpnpdError {
  constructor(message: string) {
    super('UPNPD_ERR_CONFIG', message);
    this.name = 'ConfigError';
  }
}

export interface UpnpFault {
  readonly upnpCode: UpnpErrorCode;
  readonly description: string;
}

/**
 * The one place where errors become UPnP faults. A policy's UpnpError keeps its code (also when
 * wrapped by the driver); everything else (backend failures, bugs) is 501 Action Failed.
 */
export function toUpnpFault(err: unknown): UpnpFault {
  const refusal = upnpErrorIn(err);
  if (refusal) return { upnpCode: refusal.upnpCode, description: refusal.description };
  return { upnpCode: UpnpErrorCode.ActionFailed, description: DESCRIPTIONS[UpnpErrorCode.ActionFailed] };
}

/** How deep the cause chain is followed (a hook error wrapping a policy's error, and so on). */
const MAX_CAUSE_DEPTH = 5;

/** The UpnpError an error is or wraps (through `cause`), if any: a refusal a client should see. */
export function upnpErrorIn(err: unknown): UpnpError | undefined {
  let e: unknown = err;
  for (let depth = 0; e && depth < MAX_CAUSE_DEPTH; depth++) {
    if (e instanceof UpnpError) return e;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
