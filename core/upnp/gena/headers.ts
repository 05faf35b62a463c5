import type { IncomingHttpHeaders } from 'node:http';
import { isIP } from 'node:net';
import { formatIpv6, parseIpv6 } from '../../net/ipv6.js';
import { normalizeAddress } from '../../net/network-info.js';

/** Subscriptions last at least this long (UDA: 1800 s or more); also the default. */
export const MIN_SUBSCRIPTION_SECONDS = 1800;
/** Longest subscription granted; clients renew, and a vanished one frees its slot sooner. */
export const MAX_SUBSCRIPTION_SECONDS = 3600;
/** More than this many delivery URLs in one CALLBACK is refused. */
export const MAX_CALLBACK_URLS = 4;

export type GenaRequest =
  | { readonly kind: 'subscribe'; readonly callbacks: readonly URL[]; readonly timeoutSeconds: number }
  | { readonly kind: 'renew'; readonly sid: string; readonly timeoutSeconds: number }
  | { readonly kind: 'unsubscribe'; readonly sid: string };

/** An HTTP status that refuses the request, and why (for the log, never sent). */
export interface GenaRefusal {
  readonly status: 400 | 405 | 412;
  readonly reason: string;
}

export type GenaParseResult = { readonly ok: true; readonly request: GenaRequest } | ({ readonly ok: false } & GenaRefusal);

export interface GenaParseLimits {
  /** Longest accepted delivery URL, in characters. */
  readonly maxCallbackLength: number;
}

const SID_PATTERN = /^uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const TIMEOUT_PATTERN = /^second-(\d+)$/i;

/**
 * Reads a SUBSCRIBE or UNSUBSCRIBE request (UDA 1.1 §4.1) from its method and headers. Pure: the
 * caller decides what a valid request does. Delivery URLs must point back at the subscriber's own
 * IP address (CallStranger, CVE-2020-12695), so no name is ever resolved.
 */
export function parseGenaRequest(method: string | undefined, headers: IncomingHttpHeaders, peerAddress: string, limits: GenaParseLimits): GenaParseResult {
  if (method !== 'SUBSCRIBE' && method !== 'UNSUBSCRIBE') return refuse(405, `method ${method ?? '(none)'} not allowed`);
  const sid = headerValue(headers, 'sid');
  const nt = headerValue(headers, 'nt');
  const callback = headerValue(headers, 'callback');

  if (sid !== undefined && (nt !== undefined || callback !== undefined)) return refuse(400, 'SID together with NT or CALLBACK');
  if (method === 'UNSUBSCRIBE') {
    if (sid === undefined) return refuse(412, 'UNSUBSCRIBE without SID');
    if (!SID_PATTERN.test(sid)) return refuse(412, 'malformed SID');
    return { ok: true, request: { kind: 'unsubscribe', sid } };
  }

  const timeoutSeconds = grantedTimeoutSeconds(headerValue(headers, 'timeout'));
  if (sid !== undefined) {
    if (!SID_PATTERN.test(sid)) return refuse(412, 'malformed SID');
    return { ok: true, request: { kind: 'renew', sid, timeoutSeconds } };
  }
  if (nt === undefined || nt.toLowerCase() !== 'upnp:event') return refuse(412, 'NT must be upnp:event');
  if (callback === undefined) return refuse(412, 'CALLBACK missing');
  const callbacks = parseCallback(callback, normalizeAddress(peerAddress), limits);
  if (typeof callbacks === 'string') return refuse(412, callbacks);
  return { ok: true, request: { kind: 'subscribe', callbacks, timeoutSeconds } };
}

/**
 * The duration granted for a TIMEOUT header: `Second-N` clamped to our bounds; `infinite`, a
 * missing or an unreadable value get a bounded duration too (a subscription never lasts forever).
 */
export function grantedTimeoutSeconds(header: string | undefined): number {
  if (header === undefined) return MIN_SUBSCRIPTION_SECONDS;
  if (header.toLowerCase() === 'second-infinite') return MAX_SUBSCRIPTION_SECONDS;
  const match = TIMEOUT_PATTERN.exec(header);
  if (!match) return MIN_SUBSCRIPTION_SECONDS;
  return Math.min(MAX_SUBSCRIPTION_SECONDS, Math.max(MIN_SUBSCRIPTION_SECONDS, Number(match[1])));
}

/**
 * `<url1><url2>...` → the URLs, or why they are refused. Each must be http, name the peer's own
 * address literally (no host names: nothing is resolved), and carry no credentials.
 *
 * A link-local subscriber's URL may carry a zone (`[fe80::10%2512]` as RFC 6874 writes it, or a
 * raw `%12`): it names an interface of the subscriber, means nothing here, and a WHATWG URL cannot
 * hold one, so it is dropped. The peer's own zone (the interface its request came in on) is what
 * delivery uses (`DeliveryOptions.zone`); it is not part of the comparison.
 */
function parseCallback(header: string, peer: string, limits: GenaParseLimits): URL[] | string {
  const peerAddress = withoutZone(peer);
  if (header.length > MAX_CALLBACK_URLS * (limits.maxCallbackLength + 3)) return 'CALLBACK too long';
  const groups = header.match(/<[^<>]*>/g);
  // The angle-bracket groups, separated by nothing but whitespace, must make up the whole header.
  if (!groups || header.replace(/<[^<>]*>/g, '').trim() !== '') return 'CALLBACK must be a list of <URL>';
  if (groups.length > MAX_CALLBACK_URLS) return `more than ${MAX_CALLBACK_URLS} CALLBACK URLs`;
  const urls: URL[] = [];
  for (const group of groups) {
    const text = group.slice(1, -1).trim();
    if (text.length > limits.maxCallbackLength) return 'CALLBACK URL too long';
    const unzoned = text.replace(ZONE_OF_URL_HOST, '$1]');
    const url = URL.canParse(unzoned) ? new URL(unzoned) : undefined;
    if (!url || url.protocol !== 'http:') return 'CALLBACK URL must be an http URL';
    if (url.username || url.password) return 'CALLBACK URL must not carry credentials';
    const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    if (isIP(host) === 0 || withoutZone(normalizeAddress(host)) !== peerAddress) return "CALLBACK host must be the subscriber's own address";
    if (url.port === '0') return 'CALLBACK URL port must not be 0';
    urls.push(url);
  }
  return urls;
}

/** A URL whose host is a bracketed IPv6 address with a zone (`%25eth0]`, `%12]`); $1 is all before the zone. */
const ZONE_OF_URL_HOST = /^([a-z][a-z\d+.-]*:\/\/\[[\da-f:.]+)%(?:25)?[\w.@-]{1,15}\]/i;

/** An address without its zone, IPv6 in canonical form (as the URL parser writes a host). */
function withoutZone(address: string): string {
  const parsed = address.includes(':') ? parseIpv6(address) : undefined;
  return parsed ? formatIpv6(parsed.value) : address;
}

/** A header's value, trimmed; undefined when absent. Repeated headers arrive joined and fail validation. */
function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  if (value === undefined) return undefined;
  return (Array.isArray(value) ? value.join(', ') : value).trim();
}

function refuse(status: GenaRefusal['status'], reason: string): GenaParseResult {
  return { ok: false, status, reason };
}
