import { PLUGIN_OPTIONS, definePlugin, refusalReporter, z } from 'upnpd';
import { PermissionsPolicy, type PermissionsOptions } from './policy.js';
import { parseRule, type PermissionRule, type RuleInput } from './rules.js';

export const permissionsOptionsSchema = z
  .object({
    /** First match wins: miniupnpd lines (`"allow 1024-65535 192.168.1.0/24 1024-65535"`) or objects. */
    rules: z
      .array(
        z.custom<RuleInput>(
          (v) => typeof v === 'string' || (typeof v === 'object' && v !== null && !Array.isArray(v)),
          'must be a rule line such as "allow 1024-65535 192.168.1.0/24 1024-65535" or a rule object',
        ),
      )
      .transform((rules, ctx): PermissionRule[] => {
        const parsed: PermissionRule[] = [];
        for (const [index, input] of rules.entries()) {
          const rule = parseRule(input);
          if (typeof rule === 'string') ctx.issues.push({ code: 'custom', message: rule, path: [index], input });
          else parsed.push(rule);
        }
        return parsed;
      }),
    defaultAction: z.enum(['allow', 'deny']).default('allow'),
  })
  .strict();

/**
 * `permissions({ rules, defaultAction })`: ordered allow/deny rules on the external port, the
 * internal client, the internal port and the description. Not on by default (no rules).
 */
export const permissions = definePlugin({
  name: 'permissions',
  optionsSchema: permissionsOptionsSchema,
  create: (container) => new PermissionsPolicy(container.resolve(PLUGIN_OPTIONS) as PermissionsOptions, refusalReporter(container, 'permissions')),
});

export { PermissionsPolicy } from './policy.js';
export { DESCRIPTION_PATTERN_LIMITS, parseRule, safePatternProblem, type PermissionRule } from './rules.js';
