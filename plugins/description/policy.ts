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
// eslint-disable-next-line no-control-regex -- control characters are exactly what this removes
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

  private clean(request: MappingRequest): MappingRequest {
    return { ...request, description: cleanDescription(request.description, this.options.maxBytes) };
  }
}

/**
 * The description without control characters, cut to `maxBytes` UTF-8 bytes at a character
 * boundary, as a string of its own: never a slice of the text it came from (V8 keeps the parent
 * of a sliced string alive, so a 256-byte slice of a 15 KB description, or of the request body,
 * would hold all of it for as long as the mapping lives: 1.1 GB with 20,000 mappings).
 */
export function cleanDescription(text: string, maxBytes: number): string {
  const stripped = text.replace(CONTROL_CHARACTERS, '');
  // Every UTF-16 unit is at least one byte: the first maxBytes units hold more than enough. A high
  // surrogate left without its pair by that cut is dropped.
  let head = stripped.length > maxBytes ? stripped.slice(0, maxBytes) : stripped;
  if (head.length < stripped.length && /[\ud800-\udbff]$/.test(head)) head = head.slice(0, -1);
  const bytes = Buffer.from(head, 'utf8');
  let end = Math.min(bytes.length, maxBytes);
  // Back off to a character boundary: never keep half of a multi-byte character.
  if (end < bytes.length) while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.toString('utf8', 0, end);
}
