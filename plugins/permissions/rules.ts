import { isIPv4 } from 'node:net';
import { z } from 'zod';

/** A permission rule after parsing: plain data (compared as JSON at a reload). */
export interface PermissionRule {
  readonly action: 'allow' | 'deny';
  readonly externalPorts: readonly [number, number];
  /** The internal client's network, `a.b.c.d/len`. */
  readonly internalClient: string;
  readonly internalPorts: readonly [number, number];
  /** A regular expression the description must match (JavaScript syntax, no flags). */
  readonly description?: string;
  /** The rule as the admin wrote it, for messages and counters. */
  readonly text: string;
}

/** An admin's pattern meets a client's description: both are bounded (see safePatternProblem). */
export const DESCRIPTION_PATTERN_LIMITS = {
  maxPatternLength: 256,
  /** Only this many characters of a description are matched (the description policy cuts at 256 bytes anyway). */
  maxSubjectLength: 256,
  reason: 'a pattern runs against text a LAN client chose, on every request',
} as const;

const portRange = z.union([
  z.number().int().min(0).max(65535),
  z.string().regex(/^\d{1,5}(-\d{1,5})?$/, 'must be a port or a range such as "1024-65535"'),
  z.tuple([z.number().int().min(0).max(65535), z.number().int().min(0).max(65535)]),
]);

export const ruleObjectSchema = z
  .object({
    action: z.enum(['allow', 'deny']),
    externalPorts: portRange.default('0-65535'),
    /** An address or a network: `192.168.1.10`, `192.168.1.0/24`, `192.168.1.0/255.255.255.0`. */
    internalClient: z.string().default('0.0.0.0/0'),
    internalPorts: portRange.default('0-65535'),
    description: z.string().optional(),
  })
  .strict();

export type RuleInput = string | z.input<typeof ruleObjectSchema>;

/**
 * Parses a rule: a miniupnpd line `allow|deny EXTPORTS INTADDR[/MASK] INTPORTS [REGEX]`, verbatim,
 * or a typed object. Returns the rule, or the problem to report.
 */
export function parseRule(input: RuleInput): PermissionRule | string {
  if (typeof input === 'string') return parseLine(input);
  const parsed = ruleObjectSchema.safeParse(input);
  if (!parsed.success) return parsed.error.issues.map((i) => `${i.path.join('.') || 'rule'}: ${i.message}`).join('; ');
  const { action, externalPorts, internalClient, internalPorts, description } = parsed.data;
  const text = `${action} ${describePorts(externalPorts)} ${internalClient} ${describePorts(internalPorts)}${description === undefined ? '' : ` ${description}`}`;
  return build(action, externalPorts, internalClient, internalPorts, description, text);
}

function parseLine(line: string): PermissionRule | string {
  const text = line.trim();
  const match = /^(allow|deny)\s+(\S+)\s+(\S+)\s+(\S+)(?:\s+(.+))?$/.exec(text);
  if (!match) return `"${line}" is not "allow|deny EXTPORTS INTADDR[/MASK] INTPORTS [REGEX]"`;
  const [, action, ext, client, int, description] = match;
  return build(action as 'allow' | 'deny', ext!, client!, int!, description, text);
}

function build(
  action: 'allow' | 'deny',
  ext: z.output<typeof portRange>,
  client: string,
  int: z.output<typeof portRange>,
  description: string | undefined,
  text: string,
): PermissionRule | string {
  const externalPorts = parsePorts(ext);
  if (typeof externalPorts === 'string') return `external ports ${externalPorts}`;
  const internalPorts = parsePorts(int);
  if (typeof internalPorts === 'string') return `internal ports ${internalPorts}`;
  const internalClient = parseNetwork(client);
  if (internalClient === undefined) return `"${client}" is not an IPv4 address or network (a.b.c.d, a.b.c.d/len, a.b.c.d/mask)`;
  if (description !== undefined) {
    const problem = safePatternProblem(description);
    if (problem) return `description pattern "${description}": ${problem}`;
  }
  return { action, externalPorts, internalClient, internalPorts, ...(description !== undefined && { description }), text };
}

function parsePorts(value: z.output<typeof portRange>): [number, number] | string {
  let low: number;
  let high: number;
  if (typeof value === 'number') [low, high] = [value, value];
  else if (Array.isArray(value)) [low, high] = value;
  else {
    const [first, last = first] = value.split('-');
    [low, high] = [Number(first), Number(last)];
  }
  if (!Number.isInteger(low) || !Number.isInteger(high) || low < 0 || high > 65535) return `"${String(value)}" must be ports from 0 to 65535`;
  if (low > high) return `"${String(value)}" starts above its end`;
  return [low, high];
}

function describePorts(value: z.output<typeof portRange>): string {
  return Array.isArray(value) ? `${value[0]}-${value[1]}` : String(value);
}

/** `a.b.c.d`, `a.b.c.d/len` or `a.b.c.d/m.m.m.m` as `network/len`; undefined when invalid. */
function parseNetwork(text: string): string | undefined {
  const [address, mask] = text.split('/', 2) as [string, string | undefined];
  if (!isIPv4(address)) return undefined;
  let prefixLength = 32;
  if (mask !== undefined) {
    if (/^\d{1,2}$/.test(mask)) prefixLength = Number(mask);
    else if (isIPv4(mask)) {
      const bits = mask.split('.').reduce((acc, octet) => acc * 256 + Number(octet), 0);
      const ones = bits.toString(2).replace(/0+$/, '');
      if (bits !== 0 && ones.includes('0')) return undefined;
      prefixLength = bits === 0 ? 0 : ones.length;
    } else return undefined;
  }
  if (prefixLength > 32) return undefined;
  return `${address}/${prefixLength}`;
}

/**
 * Why an admin's description pattern is unsafe or invalid, if it is. The pattern is trusted but
 * runs against client-chosen text on each request, so backtracking must stay bounded: nested
 * quantifiers (`(a+)+`, `(a|ab)*`) and back-references, which can take exponential time, are
 * refused when the config is read; the subject is cut to DESCRIPTION_PATTERN_LIMITS.maxSubjectLength.
 */
export function safePatternProblem(pattern: string): string | undefined {
  if (pattern.length > DESCRIPTION_PATTERN_LIMITS.maxPatternLength) return `longer than ${DESCRIPTION_PATTERN_LIMITS.maxPatternLength} characters`;
  try {
    new RegExp(pattern);
  } catch (err) {
    return `not a valid regular expression (${(err as Error).message})`;
  }
  if (/\\[1-9]|\\k</.test(pattern)) return 'back-references are not allowed (their matching time is unbounded)';
  // Per open group: whether it holds a quantifier or an alternation.
  const groups: boolean[] = [];
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '\\') {
      i++;
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
      continue;
    }
    if (c === '[') inClass = true;
    else if (c === '(') groups.push(false);
    else if (c === ')') {
      const risky = groups.pop() ?? false;
      if (risky && isQuantifierAt(pattern, i + 1)) return 'a quantified group holds a quantifier or an alternation (catastrophic backtracking); simplify it';
      if (risky && groups.length > 0) groups[groups.length - 1] = true;
    } else if ((c === '|' || isQuantifierAt(pattern, i)) && groups.length > 0) groups[groups.length - 1] = true;
  }
  return undefined;
}

/** A quantifier that repeats (`*`, `+`, `{n,}`, `{n,m}`); `?` and `{0}`/`{1}` do not. */
function isQuantifierAt(pattern: string, i: number): boolean {
  const c = pattern[i];
  if (c === '*' || c === '+') return true;
  const braces = c === '{' ? /^\{(\d+)(,(\d*))?\}/.exec(pattern.slice(i)) : null;
  if (!braces) return false;
  const max = braces[2] === undefined ? Number(braces[1]) : braces[3] === '' ? Infinity : Number(braces[3]);
  return max > 1;
}
