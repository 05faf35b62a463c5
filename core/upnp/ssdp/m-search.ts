/**
 * Hard limits on an incoming datagram (libupnp's SSDP overflows, CVE-2012-5958..5965, came from
 * unbounded parsing). A real M-SEARCH is a few hundred bytes and under ten header lines.
 */
export const M_SEARCH_LIMITS = {
  maxDatagramBytes: 2048,
  maxHeaderLines: 32,
  maxLineLength: 512,
} as const;

/** UDA 1.1: a device waits at most 5 seconds whatever MX asks for. */
export const MAX_MX_SECONDS = 5;

export interface MSearchRequest {
  readonly searchTarget: string;
  /** The MX header as sent, undefined when absent; see `responseWindowSeconds`. */
  readonly mx: string | undefined;
}

export type MSearchParseResult = { readonly ok: true; readonly request: MSearchRequest } | { readonly ok: false; readonly reason: string };

const REQUEST_LINE = /^M-SEARCH \* HTTP\/1\.[01]$/;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Headers whose value decides the answer: a second copy makes the request ambiguous. */
const SINGLE_HEADERS = new Set(['man', 'st', 'mx']);

/**
 * Parses an M-SEARCH request within `M_SEARCH_LIMITS`. Header names are case-insensitive and the
 * space after the colon is optional (libtorrent sends `ST:upnp:rootdevice`). Anything else —
 * NOTIFYs of other devices, responses, malformed or oversized datagrams — is rejected with a reason.
 */
export function parseMSearch(datagram: Uint8Array): MSearchParseResult {
  if (datagram.length > M_SEARCH_LIMITS.maxDatagramBytes) return reject(`datagram larger than ${M_SEARCH_LIMITS.maxDatagramBytes} bytes`);
  // latin1 maps every byte to one character, so lengths stay bounded and decoding cannot fail.
  const lines = Buffer.from(datagram.buffer, datagram.byteOffset, datagram.length).toString('latin1').split(/\r?\n/);
  if (!REQUEST_LINE.test(lines[0] ?? '')) return reject('not an M-SEARCH request');

  const headers = new Map<string, string>();
  let lineCount = 0;
  for (const line of lines.slice(1)) {
    if (line === '') break;
    if (++lineCount > M_SEARCH_LIMITS.maxHeaderLines) return reject(`more than ${M_SEARCH_LIMITS.maxHeaderLines} header lines`);
    if (line.length > M_SEARCH_LIMITS.maxLineLength) return reject(`header line longer than ${M_SEARCH_LIMITS.maxLineLength} characters`);
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).trim().toLowerCase();
    if (colon < 0 || !HEADER_NAME.test(name)) return reject('malformed header line');
    if (SINGLE_HEADERS.has(name) && headers.has(name)) return reject(`duplicate ${name.toUpperCase()} header`);
    headers.set(name, line.slice(colon + 1).trim());
  }

  if (headers.get('man') !== '"ssdp:discover"') return reject('MAN is not "ssdp:discover"');
  const searchTarget = headers.get('st');
  if (!searchTarget) return reject('no ST header');
  return { ok: true, request: { searchTarget, mx: headers.get('mx') } };
}

/**
 * Within how many seconds to answer, or undefined when the request must be ignored. A multicast
 * search must carry MX (absent or not a number → ignore; 0 → at once; above 5 → 5). A unicast
 * search is answered at once: UDA 1.1 does not use MX for it.
 */
export function responseWindowSeconds(mx: string | undefined, delivery: 'multicast' | 'unicast'): number | undefined {
  if (delivery === 'unicast') return 0;
  if (mx === undefined || !/^\d+$/.test(mx)) return undefined;
  return Math.min(Number(mx), MAX_MX_SECONDS);
}

function reject(reason: string): MSearchParseResult {
  return { ok: false, reason };
}
