import type { SyslogFormat } from './options.js';
import { priority, type FacilityName, type Severity } from './priority.js';
import { truncateUtf8 } from './text.js';

/** Everything a syslog message says. */
export interface SyslogMessage {
  readonly facility: FacilityName;
  readonly severity: Severity;
  readonly time: Date;
  readonly hostname: string;
  /** APP-NAME (RFC 5424) or TAG (RFC 3164). */
  readonly tag: string;
  readonly pid: number;
  /** One line, control characters already escaped. */
  readonly text: string;
}

/**
 * Largest message sent per format: RFC 3164 §4.1 caps a packet at 1024 bytes; RFC 5426 §3.2 asks
 * receivers to accept 2048 bytes over UDP.
 */
const MAX_MESSAGE_BYTES: Record<SyslogFormat, number> = { rfc3164: 1024, rfc5424: 2048 };

const NIL = '-';

/**
 * RFC 5424 §6: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG`, with a UTC
 * timestamp in milliseconds, no MSGID and no structured data.
 */
export function formatRfc5424(message: SyslogMessage): string {
  const header = [
    `<${priority(message.facility, message.severity)}>1`,
    message.time.toISOString(),
    headerField(message.hostname, 255),
    headerField(message.tag, 48),
    headerField(String(message.pid), 128),
    NIL,
    NIL,
  ].join(' ');
  return withText(`${header} `, message.text, MAX_MESSAGE_BYTES.rfc5424);
}

/**
 * RFC 3164 §4.1: `<PRI>Mmm dd hh:mm:ss HOSTNAME TAG[PID]: MSG`, local time, the host name without
 * its domain.
 */
export function formatRfc3164(message: SyslogMessage): string {
  const hostname = headerField(message.hostname.split('.')[0] ?? '', 255);
  const header = `<${priority(message.facility, message.severity)}>${bsdTimestamp(message.time)} ${hostname} ${message.tag}[${message.pid}]: `;
  return withText(header, message.text, MAX_MESSAGE_BYTES.rfc3164);
}

export const SYSLOG_FORMATTERS: Record<SyslogFormat, (message: SyslogMessage) => string> = {
  rfc5424: formatRfc5424,
  rfc3164: formatRfc3164,
};

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** "Jan  2 03:04:05": the day is padded with a space, not a zero (RFC 3164 §4.1.2). */
export function bsdTimestamp(time: Date): string {
  const two = (n: number) => String(n).padStart(2, '0');
  const day = String(time.getDate()).padStart(2, ' ');
  return `${MONTHS[time.getMonth()]} ${day} ${two(time.getHours())}:${two(time.getMinutes())}:${two(time.getSeconds())}`;
}

/** Header fields are printable US-ASCII without spaces (RFC 5424 §6), or "-" when empty. */
function headerField(value: string, maxLength: number): string {
  const printable = value.replace(/[^\x21-\x7e]/g, '_').slice(0, maxLength);
  return printable === '' ? NIL : printable;
}

function withText(header: string, text: string, maxBytes: number): string {
  return header + truncateUtf8(text, maxBytes - Buffer.byteLength(header));
}
