import { isIPv4 } from 'node:net';
import { UpnpError, UpnpErrorCode } from '../../errors.js';
import type { Protocol } from '../../mapping/types.js';
import { stateVariableOf, type ActionSpec, type DataType, type ServiceAtVersion } from '../description/service-model.js';
import { decodeXmlText } from '../description/xml.js';

export type ArgumentValue = string | number | boolean;

/** The in-arguments of one call, converted to the types their state variables declare. */
export class ActionArguments {
  constructor(private readonly values: ReadonlyMap<string, ArgumentValue>) {}

  string(name: string): string {
    return this.typed(name, 'string');
  }

  number(name: string): number {
    return this.typed(name, 'number');
  }

  boolean(name: string): boolean {
    return this.typed(name, 'boolean');
  }

  private typed<T extends 'string' | 'number' | 'boolean'>(name: string, type: T): T extends 'string' ? string : T extends 'number' ? number : boolean {
    const value = this.values.get(name);
    // Reaching this is a mismatch between a handler and the service data, not a client error.
    if (typeof value !== type) throw new TypeError(`argument ${name} is not a ${type} (service data and handler disagree)`);
    return value as never;
  }
}

/**
 * Converts the raw argument elements of a call as the action's SCPD declares them: every
 * in-argument must be present once, as text, and well-typed (402 Invalid Args otherwise).
 * Arguments the action does not declare are ignored, as clients send extras.
 */
export function readArguments(service: ServiceAtVersion, action: ActionSpec, raw: Readonly<Record<string, unknown>>): ActionArguments {
  const values = new Map<string, ArgumentValue>();
  for (const argument of action.in) {
    if (!Object.hasOwn(raw, argument.name)) throw invalidArgs(`${argument.name} is missing`);
    const text = raw[argument.name];
    if (typeof text !== 'string') throw invalidArgs(`${argument.name} must be given once, as text`);
    const value = decodeXmlText(text);
    values.set(
      argument.name,
      convert(argument.name, argument.emptyIsWildcard && value.trim() === '' ? '0' : value, stateVariableOf(service, argument).dataType),
    );
  }
  return new ActionArguments(values);
}

const UNSIGNED_LIMITS: Readonly<Record<'ui2' | 'ui4', number>> = { ui2: 0xffff, ui4: 0xffffffff };
const TRUE_VALUES = new Set(['1', 'true', 'yes']);
const FALSE_VALUES = new Set(['0', 'false', 'no']);

function convert(name: string, text: string, dataType: DataType): ArgumentValue {
  switch (dataType) {
    case 'string':
      return text;
    case 'boolean': {
      const lower = text.trim().toLowerCase();
      if (TRUE_VALUES.has(lower)) return true;
      if (FALSE_VALUES.has(lower)) return false;
      throw invalidArgs(`${name} must be a boolean`);
    }
    case 'ui2':
    case 'ui4': {
      const digits = text.trim();
      const value = Number(digits);
      if (!/^\d{1,10}$/.test(digits) || value > UNSIGNED_LIMITS[dataType])
        throw invalidArgs(`${name} must be an integer from 0 to ${UNSIGNED_LIMITS[dataType]}`);
      return value;
    }
  }
}

export function invalidArgs(detail: string): UpnpError {
  return new UpnpError(UpnpErrorCode.InvalidArgs, detail);
}

/** NewProtocol: TCP or UDP, in any case (some clients send lower case). */
export function parseProtocol(name: string, value: string): Protocol {
  const upper = value.trim().toUpperCase();
  if (upper === 'TCP' || upper === 'UDP') return upper;
  throw invalidArgs(`${name} must be TCP or UDP`);
}

/** NewRemoteHost: '' (or '*', which some clients send) is the wildcard; otherwise an IPv4 address. */
export function parseRemoteHost(name: string, value: string): string {
  const host = value.trim();
  if (host === '' || host === '*') return '';
  return parseIpv4(name, host);
}

/** An IPv4 address in dotted-quad form. Names are never resolved (no DNS on request paths). */
export function parseIpv4(name: string, value: string): string {
  const address = value.trim();
  if (!isIPv4(address)) throw invalidArgs(`${name} must be an IPv4 address`);
  return address;
}

/** How an output value is written in a SOAP response (UDA: booleans as 1/0). */
export function formatValue(value: ArgumentValue): string {
  if (typeof value === 'boolean') return value ? '1' : '0';
  return String(value);
}
