import { UpnpError, UpnpErrorCode, messageOf, toUpnpFault } from '../../errors.js';
import type { Logger } from '../../logger.js';
import type { Requester } from '../../mapping/types.js';
import type { ServiceEndpoint } from '../description/igd-views.js';
import { serviceAtVersion, stateVariableOf, type ActionName, type ActionSpec, type ServiceAtVersion, type ServiceSpec } from '../description/service-model.js';
import type { RateDecision } from '../../limits/rate-limiter.js';
import { XML_CONTENT_TYPE, retryLaterReply, statusReply, type HttpReply } from '../http/reply.js';
import { formatValue, invalidArgs, readArguments, type ActionArguments, type ArgumentValue } from './arguments.js';
import { MalformedSoapError, parseSoapEnvelope, soapFault, soapResponse, type OutputValue, type SoapCall } from './envelope.js';
import { MAX_SOAPACTION_LENGTH, parseSoapAction } from './soap-action.js';

export interface ActionCall {
  readonly args: ActionArguments;
  /** The version of the service the client called (from SOAPACTION), ≤ the version we offer. */
  readonly version: ServiceAtVersion['version'];
  readonly requester: Requester;
}

export type ActionResult = Readonly<Record<string, ArgumentValue>>;
export type ActionHandler = (call: ActionCall) => Promise<ActionResult | void> | ActionResult | void;

/** A handler for every action of a service; the compiler keeps the table complete. */
export type ActionHandlers<S extends ServiceSpec> = Readonly<Record<ActionName<S>, ActionHandler>>;

/** One controlURL: the service behind it, its handlers, and the state QueryStateVariable reads. */
export interface ControlEndpoint {
  readonly endpoint: ServiceEndpoint;
  readonly handlers: Readonly<Record<string, ActionHandler>>;
  /** Current values of the state variables a client may query. */
  readonly variables: () => Record<string, string>;
  /**
   * Another service of the same device whose actions this controlURL answers too, in the caller's
   * namespace: nat-port-mapper (libp2p) sends WANIPv6FirewallControl's pinhole actions to
   * WANIPConnection:2's controlURL with a WANIPConnection:2 SOAPACTION (miniupnpd answers any
   * action at any controlURL, so it works there).
   */
  readonly sibling?: { readonly service: ServiceAtVersion; readonly handlers: Readonly<Record<string, ActionHandler>> };
}

/** The action a call runs: its service (which types its arguments), its spec and its handler. */
interface ActionTarget {
  readonly service: ServiceAtVersion;
  readonly action: ActionSpec;
  readonly handler: ActionHandler;
}

const QUERY_STATE_VARIABLE_TYPE = 'urn:schemas-upnp-org:control-1-0';

/** What requests naming an action this controlURL does not have are counted under. */
const UNKNOWN_ACTION = 'unknown';

/** Admits a state-changing action of `peer`, or says when to retry (a per-client rate limit). */
export type StateChangeGate = (peer: string, action: string) => RateDecision;

/**
 * Get* actions (and QueryStateVariable) only read: they are never rate-limited, so a client walking
 * the whole table (`upnpc -l`, GetGenericPortMappingEntry) is not slowed. Every other action —
 * Add*, Delete*, Set*, RequestConnection, ForceTermination — counts as changing state.
 */
export function isReadOnlyAction(action: string): boolean {
  return action.startsWith('Get');
}

const RESPONSE_HEADERS = { 'Content-Type': XML_CONTENT_TYPE, EXT: '' } as const;

/**
 * SOAP control (UDA 1.1 §3): finds the action a request names, checks that it belongs to the
 * service at that controlURL in a version we offer, converts its arguments, runs its handler, and
 * answers a response in the caller's namespace or a fault. Every error becomes a fault through
 * toUpnpFault, here and nowhere else.
 */
export class SoapControl {
  private readonly byPath = new Map<string, ControlEndpoint>();

  constructor(
    endpoints: readonly ControlEndpoint[],
    private readonly logger: Logger,
    private readonly admitStateChange?: StateChangeGate,
  ) {
    for (const endpoint of endpoints) {
      requireHandlers(endpoint.endpoint.service, endpoint.handlers);
      if (endpoint.sibling) requireHandlers(endpoint.sibling.service, endpoint.sibling.handlers);
      this.byPath.set(endpoint.endpoint.controlPath, endpoint);
    }
  }

  /** Requests answered, by `action result` (result: ok, a UPnP fault code, 503 or 400). */
  readonly answered = new Map<string, number>();

  private count(action: string, result: string | number): void {
    const key = `${action} ${result}`;
    this.answered.set(key, (this.answered.get(key) ?? 0) + 1);
  }

  get paths(): string[] {
    return [...this.byPath.keys()];
  }

  /** Answers a POST to a controlURL. `soapAction` is the raw header value, if any. */
  async handle(path: string, soapAction: string | undefined, body: string, peer: string): Promise<HttpReply> {
    const control = this.byPath.get(path);
    if (!control) return statusReply(404);
    // Required so that a browser cannot drive the gateway with a plain form POST (CSRF).
    if (soapAction === undefined || soapAction.trim() === '' || soapAction.length > MAX_SOAPACTION_LENGTH) return statusReply(400);
    let call: SoapCall;
    try {
      call = parseSoapEnvelope(body);
    } catch (err) {
      if (!(err instanceof MalformedSoapError)) throw err;
      this.logger.debug({ peer, path, reason: err.message }, 'malformed SOAP request');
      return statusReply(400, { close: true });
    }
    const named = parseSoapAction(soapAction);
    const log = { peer, path, action: call.action };
    try {
      if (!named || (named.kind === 'action' && named.action !== call.action)) {
        throw new UpnpError(UpnpErrorCode.InvalidAction, 'SOAPACTION does not name the action in the body');
      }
      if (named.kind === 'query-state-variable') {
        if (call.action !== 'QueryStateVariable') throw new UpnpError(UpnpErrorCode.InvalidAction);
        return this.reply(QUERY_STATE_VARIABLE_TYPE, 'QueryStateVariable', [{ name: 'return', value: queryStateVariable(control, call) }]);
      }
      const service = this.calledService(control, named.serviceName, named.version);
      const { service: typedBy, action, handler } = actionTarget(control, service, named.action);
      if (this.admitStateChange && !isReadOnlyAction(action.name)) {
        const decision = this.admitStateChange(peer, action.name);
        if (!decision.allowed) {
          this.count(action.name, 503);
          return retryLaterReply(decision.retryAfterMs);
        }
      }
      const requester: Requester = { address: peer, via: `upnp-igd:${service.version}` };
      const result = await handler({ args: readArguments(typedBy, action, call.args), version: typedBy.version, requester });
      this.logger.debug(log, `${action.name} answered`);
      this.count(action.name, 'ok');
      return this.reply(service.serviceType, action.name, outputValues(typedBy, action, result ?? {}));
    } catch (err) {
      return this.fault(err, log, countedName(control, call.action));
    }
  }

  /** The service a SOAPACTION names, if it is the one at this controlURL in a version we offer. */
  private calledService(control: ControlEndpoint, serviceName: string, version: number): ServiceAtVersion {
    const offered = control.endpoint.service;
    if (serviceName !== offered.spec.name || version < 1 || version > offered.version) {
      throw new UpnpError(UpnpErrorCode.InvalidAction, `${serviceName}:${version} is not served at this control URL`);
    }
    return version === offered.version ? offered : serviceAtVersion(offered.spec, version as ServiceAtVersion['version']);
  }

  private reply(serviceType: string, action: string, values: readonly OutputValue[]): HttpReply {
    return { status: 200, headers: RESPONSE_HEADERS, body: soapResponse(serviceType, action, values) };
  }

  private fault(err: unknown, log: Record<string, unknown>, counted: string): HttpReply {
    const fault = toUpnpFault(err);
    this.count(counted, fault.upnpCode);
    if (fault.upnpCode === UpnpErrorCode.ActionFailed) this.logger.warn({ ...log, err }, `action failed: ${messageOf(err)}`);
    else this.logger.debug({ ...log, upnpCode: fault.upnpCode, reason: messageOf(err) }, 'action refused');
    return { status: 500, headers: RESPONSE_HEADERS, body: soapFault(fault) };
  }
}

/**
 * The name a request is counted under: the action it named when this controlURL has one by that
 * name, else UNKNOWN_ACTION. The body's element name is the client's to choose: counted as sent,
 * each made-up name would add an entry to `answered` for the life of the daemon and a series to
 * upnpd_requests_total.
 */
function countedName(control: ControlEndpoint, name: string): string {
  const known = name === 'QueryStateVariable' || [control.endpoint.service, control.sibling?.service].some((s) => s?.actions.some((a) => a.name === name));
  return known ? name : UNKNOWN_ACTION;
}

function outputValues(service: ServiceAtVersion, action: ActionSpec, result: ActionResult): OutputValue[] {
  return action.out.map((argument) => {
    const value = result[argument.name];
    if (value === undefined) throw new Error(`${action.name} produced no ${argument.name}`);
    return { name: argument.name, value: formatValue(value), xmlDocument: stateVariableOf(service, argument).xmlDocument };
  });
}

function requireHandlers(service: ServiceAtVersion, handlers: Readonly<Record<string, ActionHandler>>): void {
  const missing = service.actions.filter((a) => typeof handlers[a.name] !== 'function');
  if (missing.length > 0) throw new Error(`${service.serviceType}: no handler for ${missing.map((a) => a.name).join(', ')}`);
}

/** The action a call names: in the service called, else in the sibling this controlURL also answers for; 401 when neither has it. */
function actionTarget(control: ControlEndpoint, service: ServiceAtVersion, name: string): ActionTarget {
  const own = service.actions.find((a) => a.name === name);
  if (own) return { service, action: own, handler: control.handlers[own.name]! };
  const sibling = control.sibling;
  const borrowed = sibling?.service.actions.find((a) => a.name === name);
  if (sibling && borrowed) return { service: sibling.service, action: borrowed, handler: sibling.handlers[borrowed.name]! };
  throw new UpnpError(UpnpErrorCode.InvalidAction, `${service.serviceType} has no action ${name}`);
}

/** UDA 1.0 QueryStateVariable (Windows XP still uses it): reads one of the endpoint's variables. */
function queryStateVariable(control: ControlEndpoint, call: SoapCall): string {
  const name = call.args['varName'];
  if (typeof name !== 'string') throw invalidArgs('varName is missing');
  const variables = control.variables();
  if (!Object.hasOwn(variables, name)) throw new UpnpError(UpnpErrorCode.InvalidVar, `${name} cannot be queried`);
  return variables[name]!;
}
