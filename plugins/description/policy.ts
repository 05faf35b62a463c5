import type { MappingRequest, Plugin } from 'upnpd';

/** miniupnpd 2.3.11 caps descriptions at 256 bytes; clients send a few dozen ("qBittorrent/4.6 TCP"). */
export const DEFAULT_DESCRIPTION_MAX_BYTES = 256;

export interface DescriptionOptions {
  /** Longer descriptions are cut to this many UTF-8 bytes (at a character boundary). */
  readonly maxBytes: number;
}

/**
 * C0 controls, DEL, C1 controls and the Unicode line/paragraph separators: what could forge a
 * line in a log or a state file (miniupnpd 2.3.11 fixed lease-file injection this way).
 */
// eslint-disable-next-line no-control-regex
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;

/**
 * Makes a description safe to keep and log: control characters removed, then cut to `maxBytes`.
 * Adjusts the request (never refuses) and runs first, so that no other plugin, log record or
 * state file sees the raw text.
 */
export class DescriptionPolicy implements Plugin {
  readonly name = 'description';
  readonly order = 'pre' as const;
  readonly hooks: Plugin['hooks'] = { beforeMap: (request) => this.clean(request) };

  constructor(private options: DescriptionOptions) {}

  reconfigure(options: unknown): void {
    this.options = options as DescriptionOptions;
  }

  private clean(request: MappingRequest): MappingRequest | void {
    const description = cleanDescription(request.description, this.options.maxBytes);
    return description === request.description ? undefined : { ...request, description };
  }
}

export function cleanDescription(text: string, maxBytes: number): string {
  const stripped = text.replace(CONTROL_CHARACTERS, '');
  if (Buffer.byteLength(stripped, 'utf8') <= maxBytes) return stripped;
  // Every UTF-16 unit is at least one byte: the first maxBytes units hold more than enough. A high
  // surrogate left without its pair by that cut is dropped.
  let head = stripped.slice(0, maxBytes);
  if (/[\ud800-\udbff]$/.test(head)) head = head.slice(0, -1);
  const bytes = Buffer.from(head, 'utf8');
  if (bytes.length <= maxBytes) return head;
  // Back off to a character boundary: never keep half of a multi-byte character.
  let end = maxBytes;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end).toString('utf8');
}
