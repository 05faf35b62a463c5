import { isIP } from 'node:net';
import { z } from 'zod';
import { FACILITIES, type FacilityName } from './priority.js';

export const STDOUT_FORMATS = ['json', 'pretty', 'journald'] as const;
export type StdoutFormat = (typeof STDOUT_FORMATS)[number];

export const SYSLOG_FORMATS = ['rfc5424', 'rfc3164'] as const;
export type SyslogFormat = (typeof SYSLOG_FORMATS)[number];

const hostName = z
  .string()
  .refine(
    (v) => isIP(v) !== 0 || /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/.test(v),
    'must be an IP address or a host name',
  );

/**
 * `syslog: { ... }`: a unix datagram socket (`path`, default /dev/log) or UDP to `host`:`port`.
 * Its output is also valid input: parsing twice changes nothing.
 */
const syslogSchema = z
  .object({
    path: z.string().min(1).optional(),
    host: hostName.optional(),
    port: z.number().int().min(1).max(65535).optional(),
    protocol: z.literal('udp').optional(),
    /** Default: rfc3164 for a local socket (what syslog(3) sends), rfc5424 over UDP. */
    format: z.enum(SYSLOG_FORMATS).optional(),
    facility: z.enum(Object.keys(FACILITIES) as [FacilityName, ...FacilityName[]]).default('daemon'),
    /** The APP-NAME (RFC 5424) or TAG (RFC 3164). */
    tag: z
      .string()
      .regex(/^[A-Za-z0-9._-]{1,32}$/, 'must be 1 to 32 letters, digits, ".", "_" or "-"')
      .default('upnpd'),
  })
  .strict()
  .superRefine((value, ctx) => {
    if (value.path !== undefined && value.host !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['host'], message: 'give either path (a local socket) or host (UDP), not both' });
    }
    if (value.host === undefined) {
      for (const key of ['port', 'protocol'] as const) {
        if (value[key] !== undefined) ctx.addIssue({ code: 'custom', path: [key], message: `${key} needs host (it applies to UDP only)` });
      }
    }
  });

export const loggingOptionsSchema = z
  .object({
    /** 'auto': readable text on a terminal, journald's format under systemd, else JSON. */
    stdout: z
      .union([z.enum([...STDOUT_FORMATS, 'auto']), z.literal(false)], {
        error: `must be ${[...STDOUT_FORMATS, 'auto'].map((f) => `"${f}"`).join(', ')} or false`,
      })
      .default('auto'),
    /** `false` (the default) is no syslog. Not a union: errors inside the object keep their own path and message. */
    syslog: z.preprocess((value) => (value === false ? undefined : value), syslogSchema.optional()),
  })
  .strict()
  .refine((value) => value.stdout !== false || value.syslog !== undefined, {
    message: 'stdout and syslog are both off: nothing would be logged (use logLevel "silent" for that)',
  });

export type LoggingOptions = z.output<typeof loggingOptionsSchema>;
export type LoggingOptionsInput = z.input<typeof loggingOptionsSchema>;
type SyslogOptions = NonNullable<LoggingOptions['syslog']>;

interface SyslogCommon {
  readonly format: SyslogFormat;
  readonly facility: FacilityName;
  readonly tag: string;
}

/** Where syslog records go, with the defaults that depend on the transport filled in. */
export type SyslogTarget =
  | (SyslogCommon & { readonly transport: 'unix'; readonly path: string })
  | (SyslogCommon & { readonly transport: 'udp'; readonly host: string; readonly port: number });

const DEFAULT_SYSLOG_SOCKET = '/dev/log';
const DEFAULT_SYSLOG_PORT = 514;

export function syslogTarget(options: SyslogOptions): SyslogTarget {
  const common = { facility: options.facility, tag: options.tag };
  if (options.host !== undefined) {
    return { ...common, transport: 'udp', host: options.host, port: options.port ?? DEFAULT_SYSLOG_PORT, format: options.format ?? 'rfc5424' };
  }
  return { ...common, transport: 'unix', path: options.path ?? DEFAULT_SYSLOG_SOCKET, format: options.format ?? 'rfc3164' };
}

/** The syslog target named in messages, e.g. "udp://10.0.0.2:514" or "unix:/dev/log". */
export function describeTarget(target: SyslogTarget): string {
  return target.transport === 'udp' ? `udp://${isIP(target.host) === 6 ? `[${target.host}]` : target.host}:${target.port}` : `unix:${target.path}`;
}
