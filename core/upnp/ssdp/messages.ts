import { NTS_ALIVE, NTS_BYEBYE, NTS_UPDATE } from './constants.js';
import type { NotificationTarget, SearchAnswer } from './targets.js';

/** What every message of one LAN interface carries. */
export interface MessageContext {
  /** Description URL on this LAN interface. */
  readonly location: string;
  readonly serverString: string;
  readonly maxAgeSeconds: number;
  readonly bootId: number;
  readonly configId: number;
  /** `239.255.255.250:1900`. */
  readonly host: string;
  /** Port for unicast M-SEARCH when it is not 1900 (UDA 1.1 SEARCHPORT.UPNP.ORG). */
  readonly searchPort?: number;
}

/** One header line; an undefined value leaves the header out. */
export type SsdpHeader = readonly [name: string, value: string | number | undefined];

/**
 * One SSDP datagram as text: the start line, then `Name: value` per header in the order given,
 * each line ending in CRLF, then the empty line that ends the head (SSDP messages have no body).
 */
export function serializeSsdp(startLine: string, headers: readonly SsdpHeader[]): string {
  let text = `${startLine}\r\n`;
  for (const [name, value] of headers) if (value !== undefined) text += `${name}: ${value}\r\n`;
  return `${text}\r\n`;
}

/** The response to an M-SEARCH; the status line is exactly `HTTP/1.1 200 OK` (nat-port-mapper checks). */
export function buildSearchResponse(answer: SearchAnswer, context: MessageContext, date: Date): string {
  return serializeSsdp('HTTP/1.1 200 OK', [
    cacheControl(context),
    ['DATE', date.toUTCString()],
    ['EXT', ''],
    ['LOCATION', context.location],
    ['SERVER', context.serverString],
    ['ST', answer.st],
    ['USN', answer.usn],
    ...bootHeaders(context),
    searchPortHeader(context),
  ]);
}

export function buildAlive(target: NotificationTarget, context: MessageContext): string {
  return serializeSsdp(NOTIFY_LINE, [
    ['HOST', context.host],
    cacheControl(context),
    ['LOCATION', context.location],
    ['NT', target.nt],
    ['NTS', NTS_ALIVE],
    ['SERVER', context.serverString],
    ['USN', target.usn],
    ...bootHeaders(context),
    searchPortHeader(context),
  ]);
}

export function buildByebye(target: NotificationTarget, context: MessageContext): string {
  return serializeSsdp(NOTIFY_LINE, [['HOST', context.host], ['NT', target.nt], ['NTS', NTS_BYEBYE], ['USN', target.usn], ...bootHeaders(context)]);
}

/**
 * ssdp:update (UDA 1.1 §1.2.4): the device's BOOTID is about to change (a LAN address came or
 * went), sent where it announced before; `context.bootId` is the current one, `nextBootId` the next.
 */
export function buildUpdate(target: NotificationTarget, context: MessageContext, nextBootId: number): string {
  return serializeSsdp(NOTIFY_LINE, [
    ['HOST', context.host],
    ['LOCATION', context.location],
    ['NT', target.nt],
    ['NTS', NTS_UPDATE],
    ['USN', target.usn],
    ...bootHeaders(context),
    ['NEXTBOOTID.UPNP.ORG', nextBootId],
    searchPortHeader(context),
  ]);
}

const NOTIFY_LINE = 'NOTIFY * HTTP/1.1';

function cacheControl(context: MessageContext): SsdpHeader {
  return ['CACHE-CONTROL', `max-age=${context.maxAgeSeconds}`];
}

function bootHeaders(context: MessageContext): SsdpHeader[] {
  return [
    ['BOOTID.UPNP.ORG', context.bootId],
    ['CONFIGID.UPNP.ORG', context.configId],
  ];
}

/** Left out (undefined) on the standard port. */
function searchPortHeader(context: MessageContext): SsdpHeader {
  return ['SEARCHPORT.UPNP.ORG', context.searchPort];
}
