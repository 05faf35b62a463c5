import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  grantedTimeoutSeconds,
  MAX_SUBSCRIPTION_SECONDS,
  MIN_SUBSCRIPTION_SECONDS,
  parseGenaRequest,
  type GenaParseResult,
} from '../../core/upnp/gena/headers.js';

const PEER = '192.168.1.10';
const CB = 'http://192.168.1.10:5000/notify';
const SID = 'uuid:0b7a4b2e-3c1d-4e5f-8a9b-0c1d2e3f4a5b';
const LIMITS = { maxCallbackLength: 64 };

interface Case {
  readonly name: string;
  readonly method?: string;
  readonly headers: Record<string, string>;
  readonly peer?: string;
}

function parse(c: Case): GenaParseResult {
  return parseGenaRequest(c.method ?? 'SUBSCRIBE', c.headers, c.peer ?? PEER, LIMITS);
}

describe('parseGenaRequest: accepted requests', () => {
  it.each<Case & { callbacks: string[]; timeout: number }>([
    { name: 'one delivery URL', headers: { callback: `<${CB}>`, nt: 'upnp:event', timeout: 'Second-1800' }, callbacks: [CB], timeout: 1800 },
    {
      name: 'several URLs, with and without space between them',
      headers: { callback: `<${CB}> <http://192.168.1.10:5001/b><http://192.168.1.10/c>`, nt: 'upnp:event' },
      callbacks: [CB, 'http://192.168.1.10:5001/b', 'http://192.168.1.10/c'],
      timeout: MIN_SUBSCRIPTION_SECONDS,
    },
    { name: 'NT in any case', headers: { callback: `<${CB}>`, nt: 'UPnP:Event' }, callbacks: [CB], timeout: MIN_SUBSCRIPTION_SECONDS },
    { name: 'a dual-stack peer address', peer: `::ffff:${PEER}`, headers: { callback: `<${CB}>`, nt: 'upnp:event' }, callbacks: [CB], timeout: 1800 },
    {
      name: 'a link-local peer (its address with the zone it came in on) and its URL without zone',
      peer: 'fe80::10%br-lan',
      headers: { callback: '<http://[fe80::10]:2869/upnp/eventing/abc>', nt: 'upnp:event' },
      callbacks: ['http://[fe80::10]:2869/upnp/eventing/abc'],
      timeout: 1800,
    },
    {
      name: "a link-local peer's URL with its own zone, as RFC 6874 writes it (dropped: it names the subscriber's interface)",
      peer: 'fe80::10%br-lan',
      headers: { callback: '<http://[FE80::10%2512]:2869/e>', nt: 'upnp:event' },
      callbacks: ['http://[fe80::10]:2869/e'],
      timeout: 1800,
    },
    {
      name: "a link-local peer's URL with a raw zone",
      peer: 'fe80::10%br-lan',
      headers: { callback: '<http://[fe80::10%eth0]/e>', nt: 'upnp:event' },
      callbacks: ['http://[fe80::10]/e'],
      timeout: 1800,
    },
    {
      name: 'a global IPv6 peer, its URL written uncompressed',
      peer: '2001:db8:77::10',
      headers: { callback: '<http://[2001:db8:77:0:0:0:0:10]:5000/>', nt: 'upnp:event' },
      callbacks: ['http://[2001:db8:77::10]:5000/'],
      timeout: 1800,
    },
    {
      name: 'a requested duration inside our bounds',
      headers: { callback: `<${CB}>`, nt: 'upnp:event', timeout: 'second-2400' },
      callbacks: [CB],
      timeout: 2400,
    },
  ])('SUBSCRIBE with $name', (c) => {
    const result = parse(c);
    expect(result).toMatchObject({ ok: true, request: { kind: 'subscribe', timeoutSeconds: c.timeout } });
    if (result.ok && result.request.kind === 'subscribe') expect(result.request.callbacks.map((u) => u.href)).toEqual(c.callbacks);
  });

  it('SUBSCRIBE with SID is a renewal', () => {
    expect(parse({ name: '', headers: { sid: SID, timeout: 'Second-3000' } })).toEqual({
      ok: true,
      request: { kind: 'renew', sid: SID, timeoutSeconds: 3000 },
    });
  });

  it('UNSUBSCRIBE with SID', () => {
    expect(parse({ name: '', method: 'UNSUBSCRIBE', headers: { sid: SID } })).toEqual({ ok: true, request: { kind: 'unsubscribe', sid: SID } });
  });
});

describe('parseGenaRequest: refusals', () => {
  it.each<Case & { status: number }>([
    { name: 'SID with NT', headers: { sid: SID, nt: 'upnp:event' }, status: 400 },
    { name: 'SID with CALLBACK', headers: { sid: SID, callback: `<${CB}>` }, status: 400 },
    { name: 'UNSUBSCRIBE with SID and NT', method: 'UNSUBSCRIBE', headers: { sid: SID, nt: 'upnp:event' }, status: 400 },
    { name: 'UNSUBSCRIBE with SID and CALLBACK', method: 'UNSUBSCRIBE', headers: { sid: SID, callback: `<${CB}>` }, status: 400 },
    { name: 'NT missing', headers: { callback: `<${CB}>` }, status: 412 },
    { name: 'NT not upnp:event', headers: { callback: `<${CB}>`, nt: 'upnp:propchange' }, status: 412 },
    { name: 'CALLBACK missing', headers: { nt: 'upnp:event' }, status: 412 },
    { name: 'CALLBACK without angle brackets', headers: { callback: CB, nt: 'upnp:event' }, status: 412 },
    { name: 'CALLBACK with text between URLs', headers: { callback: `<${CB}>, <${CB}>`, nt: 'upnp:event' }, status: 412 },
    { name: 'CALLBACK empty brackets', headers: { callback: '<>', nt: 'upnp:event' }, status: 412 },
    { name: 'CALLBACK not a URL', headers: { callback: '<not a url>', nt: 'upnp:event' }, status: 412 },
    { name: 'CALLBACK https', headers: { callback: '<https://192.168.1.10:5000/>', nt: 'upnp:event' }, status: 412 },
    { name: 'CALLBACK to a host name', headers: { callback: '<http://printer.lan:5000/>', nt: 'upnp:event' }, status: 412 },
    { name: 'CALLBACK to another host', headers: { callback: '<http://192.168.1.11:5000/>', nt: 'upnp:event' }, status: 412 },
    { name: 'CALLBACK to a longer address sharing a prefix', headers: { callback: '<http://192.168.1.100:5000/>', nt: 'upnp:event' }, status: 412 },
    { name: 'CALLBACK to the peer, then a third party', headers: { callback: `<${CB}><http://10.0.0.1/>`, nt: 'upnp:event' }, status: 412 },
    { name: 'CALLBACK to an IPv6 address from an IPv4 peer', headers: { callback: '<http://[::1]:5000/>', nt: 'upnp:event' }, status: 412 },
    {
      name: 'CALLBACK to another link-local address from a link-local peer',
      peer: 'fe80::10%br-lan',
      headers: { callback: '<http://[fe80::11%25br-lan]:5000/>', nt: 'upnp:event' },
      status: 412,
    },
    {
      name: 'CALLBACK to the link-local address of a global IPv6 peer',
      peer: '2001:db8:77::10',
      headers: { callback: '<http://[fe80::10]:5000/>', nt: 'upnp:event' },
      status: 412,
    },
    {
      name: 'CALLBACK with a zone that is not one',
      peer: 'fe80::10%br-lan',
      headers: { callback: '<http://[fe80::10%25a/b]:5000/>', nt: 'upnp:event' },
      status: 412,
    },
    { name: 'CALLBACK with credentials', headers: { callback: '<http://u:p@192.168.1.10:5000/>', nt: 'upnp:event' }, status: 412 },
    { name: 'CALLBACK to port 0', headers: { callback: '<http://192.168.1.10:0/>', nt: 'upnp:event' }, status: 412 },
    { name: 'CALLBACK URL too long', headers: { callback: `<${CB}/${'a'.repeat(64)}>`, nt: 'upnp:event' }, status: 412 },
    { name: 'CALLBACK with too many URLs', headers: { callback: `<${CB}>`.repeat(5), nt: 'upnp:event' }, status: 412 },
    { name: 'CALLBACK header far too long', headers: { callback: `<${CB}>${' '.repeat(10_000)}<${CB}>`, nt: 'upnp:event' }, status: 412 },
    { name: 'renewal with a malformed SID', headers: { sid: 'uuid:nope' }, status: 412 },
    { name: 'renewal with two SIDs joined', headers: { sid: `${SID}, ${SID}` }, status: 412 },
    { name: 'UNSUBSCRIBE without SID', method: 'UNSUBSCRIBE', headers: {}, status: 412 },
    { name: 'UNSUBSCRIBE with a malformed SID', method: 'UNSUBSCRIBE', headers: { sid: 'x' }, status: 412 },
    { name: 'another method', method: 'GET', headers: { callback: `<${CB}>`, nt: 'upnp:event' }, status: 405 },
  ])('$name → $status', (c) => {
    expect(parse(c)).toMatchObject({ ok: false, status: c.status });
  });
});

describe('grantedTimeoutSeconds', () => {
  it.each([
    [undefined, MIN_SUBSCRIPTION_SECONDS],
    ['Second-1', MIN_SUBSCRIPTION_SECONDS],
    ['Second-1800', 1800],
    ['Second-99999999', MAX_SUBSCRIPTION_SECONDS],
    // More digits than a 32-bit count holds is still "as long as you give": the longest, not the shortest.
    ['Second-99999999999', MAX_SUBSCRIPTION_SECONDS],
    [`Second-${'9'.repeat(400)}`, MAX_SUBSCRIPTION_SECONDS],
    ['Second-infinite', MAX_SUBSCRIPTION_SECONDS],
    ['infinite', MIN_SUBSCRIPTION_SECONDS],
    ['Second-', MIN_SUBSCRIPTION_SECONDS],
    ['Second--5', MIN_SUBSCRIPTION_SECONDS],
  ])('%s → %d', (header, expected) => {
    expect(grantedTimeoutSeconds(header)).toBe(expected);
  });

  it('is always within [1800, max] and never infinite, whatever is asked', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.nat().map((n) => `Second-${n}`),
        ),
        (header) => {
          const granted = grantedTimeoutSeconds(header);
          expect(Number.isInteger(granted)).toBe(true);
          expect(granted).toBeGreaterThanOrEqual(1800);
          expect(granted).toBeLessThanOrEqual(MAX_SUBSCRIPTION_SECONDS);
        },
      ),
    );
  });
});
