import type { IncomingMessage, ServerResponse } from 'node:http';
import { describe, expect, it } from 'vitest';
import { RouteTable } from '../../core/upnp/http/routes.js';
import { SubnetSet } from '../../core/net/network-info.js';

/** Dispatches a request for `target` and returns the path the handler saw, or the refusal status. */
function route(target: string, method = 'GET'): string | number {
  let seen: string | number = 0;
  const table = new RouteTable().add('/rootDesc.xml', ['GET'], () => void (seen = 'rootDesc')).add('/ctl/IPConn', ['POST'], () => void (seen = 'control'));
  const res = {
    headersSent: false,
    destroyed: false,
    statusCode: 200,
    writeHead(status: number) {
      this.statusCode = status;
      return this;
    },
    end() {
      seen = this.statusCode;
    },
  };
  void table.dispatch({ url: target, method } as IncomingMessage, res as unknown as ServerResponse, '192.168.1.10');
  return seen;
}

describe('request targets are routed by their path', () => {
  it('routes a plain path, and the same path with a query, a fragment or in absolute form', () => {
    expect(route('/rootDesc.xml')).toBe('rootDesc');
    expect(route('/ctl/IPConn', 'POST')).toBe('control');
    expect(route('/rootDesc.xml?x=1')).toBe('rootDesc');
    expect(route('http://192.168.1.1:5000/rootDesc.xml')).toBe('rootDesc');
  });

  it('routes what URL parsing normalizes (dot segments) and keeps percent-encoding distinct', () => {
    expect(route('/ctl/../rootDesc.xml')).toBe('rootDesc');
    expect(route('/ctl/%49PConn', 'POST')).toBe(404);
  });

  it('answers 404 for unknown paths and 405 for a known path with another method', () => {
    expect(route('/rootdesc.xml')).toBe(404);
    expect(route('/')).toBe(404);
    expect(route('/ctl/IPConn', 'GET')).toBe(405);
  });
});

describe('SubnetSet', () => {
  const lan = new SubnetSet([
    { address: '192.168.1.1', prefixLength: 24 },
    { address: '10.0.0.1', prefixLength: 32 },
  ] as never);

  it('holds the addresses of its subnets, IPv4-mapped IPv6 included', () => {
    expect(lan.contains('192.168.1.200')).toBe(true);
    expect(lan.contains('::ffff:192.168.1.7')).toBe(true);
    expect(lan.contains('10.0.0.1')).toBe(true);
  });

  it('does not hold neighbours, IPv6 or garbage', () => {
    expect(lan.contains('192.168.2.1')).toBe(false);
    expect(lan.contains('10.0.0.2')).toBe(false);
    expect(lan.contains('fe80::1')).toBe(false);
    expect(lan.contains('not-an-address')).toBe(false);
  });

  it('a /0 subnet holds every IPv4 address', () => {
    expect(new SubnetSet([{ address: '0.0.0.0', prefixLength: 0 }] as never).contains('203.0.113.9')).toBe(true);
  });
});
