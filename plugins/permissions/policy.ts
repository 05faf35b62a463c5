import { SubnetSet, UpnpError, UpnpErrorCode, type MappingRequest, type Plugin, type PolicyContext, type RefusalReporter } from 'upnpd';
import { DESCRIPTION_PATTERN_LIMITS, type PermissionRule } from './rules.js';

export interface PermissionsOptions {
  readonly rules: readonly PermissionRule[];
  /** What happens to a request no rule matches. */
  readonly defaultAction: 'allow' | 'deny';
}

interface CompiledRule {
  readonly rule: PermissionRule;
  readonly client: SubnetSet;
  readonly description: RegExp | undefined;
}

/**
 * Ordered allow/deny rules, as miniupnpd's: the first rule matching the external port, the
 * internal client, the internal port and (if it has one) the description decides; none matching,
 * the default action. Refusals are 606 Action not authorized, except through WANIPConnection:1,
 * whose AddPortMapping has no 606 (718 there), as miniupnpd and secure mode answer.
 */
export class PermissionsPolicy implements Plugin {
  readonly name = 'permissions';
  readonly hooks: Plugin['hooks'] = { beforeMap: (request, context) => this.check(request, context) };
  private compiled!: { readonly rules: readonly CompiledRule[]; readonly defaultAction: 'allow' | 'deny' };

  constructor(
    options: PermissionsOptions,
    private readonly refusals: RefusalReporter,
  ) {
    this.reconfigure(options);
  }

  reconfigure(options: unknown): void {
    const { rules, defaultAction } = options as PermissionsOptions;
    this.compiled = {
      defaultAction,
      // Compiled once: the patterns were checked when the config was read (rules.ts).
      rules: rules.map((rule) => {
        const [address, prefixLength] = rule.internalClient.split('/');
        return {
          rule,
          client: new SubnetSet([{ interface: '', address: address!, prefixLength: Number(prefixLength) }]),
          description: rule.description === undefined ? undefined : new RegExp(rule.description),
        };
      }),
    };
  }

  private check(request: MappingRequest, { requester }: PolicyContext): void {
    const matched = this.compiled.rules.find((c) => matches(c, request));
    const action = matched?.rule.action ?? this.compiled.defaultAction;
    if (action === 'allow') return;
    const rule = matched ? matched.rule.text : `defaultAction deny`;
    const code = requester.via === 'upnp-igd:1' ? UpnpErrorCode.ConflictInMappingEntry : UpnpErrorCode.NotAuthorized;
    throw this.refusals.refuse(
      rule,
      requester,
      new UpnpError(code, `${request.protocol} ${request.externalPort} -> ${request.internalClient}:${request.internalPort} is denied by "${rule}"`),
    );
  }
}

function matches({ rule, client, description }: CompiledRule, request: MappingRequest): boolean {
  return (
    within(request.externalPort, rule.externalPorts) &&
    within(request.internalPort, rule.internalPorts) &&
    client.contains(request.internalClient) &&
    (description === undefined || description.test(request.description.slice(0, DESCRIPTION_PATTERN_LIMITS.maxSubjectLength)))
  );
}

function within(port: number, [low, high]: readonly [number, number]): boolean {
  return port >= low && port <= high;
}
