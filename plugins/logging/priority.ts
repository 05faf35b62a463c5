/** The syslog facilities upnpd may log under (RFC 5424 §6.2.1 numbering). */
export const FACILITIES = {
  user: 1,
  daemon: 3,
  local0: 16,
  local1: 17,
  local2: 18,
  local3: 19,
  local4: 20,
  local5: 21,
  local6: 22,
  local7: 23,
} as const;
export type FacilityName = keyof typeof FACILITIES;

/** Syslog severities (RFC 5424 §6.2.1), the same numbers sd-daemon(3) prefixes use. */
export const Severity = {
  critical: 2,
  error: 3,
  warning: 4,
  informational: 6,
  debug: 7,
} as const;
export type Severity = (typeof Severity)[keyof typeof Severity];

/** pino's levels (fatal 60, error 50, warn 40, info 30, debug 20, trace 10) as syslog severities. */
export function severityOf(pinoLevel: number): Severity {
  if (pinoLevel >= 60) return Severity.critical;
  if (pinoLevel >= 50) return Severity.error;
  if (pinoLevel >= 40) return Severity.warning;
  if (pinoLevel >= 30) return Severity.informational;
  return Severity.debug;
}

/** The PRI value of a syslog message: facility * 8 + severity. */
export function priority(facility: FacilityName, severity: Severity): number {
  return FACILITIES[facility] * 8 + severity;
}
