/**
 * `upnpd/backend`: helpers for firewall backend authors, as the shipped backends use them. Rules
 * are data (RuleSpec); these compare, copy and check them.
 */
import { createHash } from 'node:crypto';
import { isIPv4 } from 'node:net';
import { BackendError } from './errors.js';
import type { RuleSpec } from './mapping/types.js';

export { EMPTY_CHANGE_SET, isEmptyChangeSet, keyOf, keyString, ruleOf, sameRule } from './mapping/types.js';
export { isValidPinholeRule, pinholeRuleOf, pinholeRuleString, samePinholeRule } from './mapping/pinhole.js';
export { canonicalIPv6 } from './net/ipv6.js';
export { INTERFACE_NAME } from './net/network-info.js';
export { interfaceName } from './config/schema.js';
export type { CommandExit, CommandResult, CommandRunner, RunningCommand, StartOptions } from './command-runner.js';
export { CommandOutput, HelperSlot, endCommand, runCommand, startCommand, type SlotProcess, type StartCommandOptions } from './command-runner.js';

function isPort(port: number): boolean {
  return Number.isInteger(port) && port >= 1 && port <= 65535;
}

/** Whether a rule is a well-formed IPv4 port mapping (what a backend may turn into firewall arguments). */
export function isValidRule(rule: RuleSpec): boolean {
  return (
    (rule.protocol === 'TCP' || rule.protocol === 'UDP') &&
    isPort(rule.externalPort) &&
    isPort(rule.internalPort) &&
    isIPv4(rule.internalClient) &&
    (rule.remoteHost === '' || isIPv4(rule.remoteHost))
  );
}

/**
 * A digest of a listing (SHA-256), for telling whether it changed since the last check without
 * keeping it: with 5000 mappings a listing is a string of a megabyte or more.
 */
export function listingDigest(text: string): string {
  return createHash('sha256').update(text).digest('base64');
}

/**
 * Whether two lists hold records with the same fields and values in the same order (flat records
 * of strings and numbers, such as RuleSpec and PinholeRule): what a backend compares to reuse the
 * answer of its last integrity check when neither the listing nor what was expected changed.
 */
export function sameRecords<T extends object>(a: readonly T[], b: readonly T[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i += 1) {
    const x = a[i] as Record<string, unknown>;
    const y = b[i] as Record<string, unknown>;
    const keys = Object.keys(x);
    if (keys.length !== Object.keys(y).length) return false;
    for (const k of keys) if (x[k] !== y[k]) return false;
  }
  return true;
}

/**
 * Throws a BackendError naming the first rule that is not a well-formed IPv4 port mapping. The core
 * validates requests; this guards the one place where values become firewall arguments.
 */
export function assertValidRules(backend: string, rules: Iterable<RuleSpec>): void {
  for (const rule of rules) {
    if (!isValidRule(rule)) throw new BackendError(`${backend}: not a valid IPv4 port mapping: ${JSON.stringify(rule)}`);
  }
}
