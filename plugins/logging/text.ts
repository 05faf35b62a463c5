import type { LogRecord } from 'upnpd';

// eslint-disable-next-line no-control-regex -- control characters are exactly what this escapes
const CONTROL_CHARACTERS = /[\x00-\x1f\x7f]/g;
const NAMED_ESCAPES: Readonly<Record<string, string>> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/**
 * The one-line text that line-oriented outputs (journald, syslog) carry for a record: its message,
 * plus the logged error's message when the text does not already say it. Structured fields are
 * left to the JSON output; call sites write messages that stand on their own.
 *
 * Control characters are escaped: messages may quote what clients sent, and a raw newline would
 * let a client forge a log line of its own.
 */
export function messageText(record: LogRecord): string {
  const message = record.msg ?? '';
  const errorMessage = record.errorMessage ?? '';
  const text = errorMessage && !message.includes(errorMessage) ? (message ? `${message}: ${errorMessage}` : errorMessage) : message;
  return text.replace(CONTROL_CHARACTERS, (c) => NAMED_ESCAPES[c] ?? `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** Cuts a string to at most `maxBytes` bytes of UTF-8 without splitting a character. */
export function truncateUtf8(text: string, maxBytes: number): string {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= maxBytes) return text;
  let end = Math.max(0, maxBytes);
  // Back up over continuation bytes (10xxxxxx) to the start of the character that did not fit.
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end).toString('utf8');
}
