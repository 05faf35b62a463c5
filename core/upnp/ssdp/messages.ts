import SsdpHeader from 'node-ssdp/lib/ssdpHeader.js';
import ssdp from 'node-ssdp/lib/const.js';
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

/** The response to an M-SEARCH; the status line is exactly `HTTP/1.1 200 OK` (nat-port-mapper checks). */
export function buildSearchResponse(answer: SearchAnswer, context: MessageContext, date: Date): string {
  return new SsdpHeader(
    '200 OK',
    {
      'CACHE-CONTROL': `max-age=${context.maxAgeSeconds}`,
      DATE: date.toUTCString(),
      EXT: '',
      LOCATION: context.location,
      SERVER: context.serverString,
      ST: answer.st,
      USN: answer.usn,
      ...bootHeaders(context),
      ...searchPortHeader(context),
    },
    true,
  ).toString();
}

export function buildAlive(target: NotificationTarget, context: MessageContext): string {
  return new SsdpHeader('NOTIFY', {
    HOST: context.host,
    'CACHE-CONTROL': `max-age=${context.maxAgeSeconds}`,
    LOCATION: context.location,
    NT: target.nt,
    NTS: ssdp.SSDP_ALIVE,
    SERVER: context.serverString,
    USN: target.usn,
    ...bootHeaders(context),
    ...searchPortHeader(context),
  }).toString();
}

export function buildByebye(target: NotificationTarget, context: MessageContext): string {
  return new SsdpHeader('NOTIFY', {
    HOST: context.host,
    NT: target.nt,
    NTS: ssdp.SSDP_BYE,
    USN: target.usn,
    ...bootHeaders(context),
  }).toString();
}

function bootHeaders(context: MessageContext): Record<string, number> {
  return { 'BOOTID.UPNP.ORG': context.bootId, 'CONFIGID.UPNP.ORG': context.configId };
}

function searchPortHeader(context: MessageContext): Record<string, number> {
  return context.searchPort === undefined ? {} : { 'SEARCHPORT.UPNP.ORG': context.searchPort };
}
