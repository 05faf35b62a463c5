import { createServer } from 'node:http';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Ipv6Lan, readIpv6Addresses } from '../../core/net/ipv6.js';
import { describeRequiring } from '../support/requirements.js';
import { rawRequest, startIgd, type IgdFixture } from './fixture.js';

/**
 * HTTP over IPv6 on loopback (::1 as the LAN, as in dry-run): listening, the Host forms of
 * UDA 1.1 / RFC 6874, and per-client connection limits keyed by the IPv6 address. Peers outside
 * the LAN prefixes and link-local zones are tested in the namespace testbed (test/netns/ipv6.test.ts).
 */
const LOOPBACK_IPV6 = readIpv6Addresses('lo').filter((a) => a.address === '::1');

describeRequiring('HTTP over IPv6 (::1)', Promise.resolve(LOOPBACK_IPV6.length === 0 ? 'no ::1 on this host (IPv6 off)' : undefined), () => {
  let f: IgdFixture;
  beforeAll(async () => {
    f = await startIgd({ lanIpv6: new Ipv6Lan(LOOPBACK_IPV6), httpLimits: { maxConnectionsPerClient: 2 } });
  });
  afterAll(async () => {
    await f?.close();
  });

  const get = (host: string) => rawRequest(f.port, `GET /rootDesc.xml HTTP/1.1\r\nHost: ${host}`, '', { address: '::1' });

  it('listens on the IPv6 address with the same port, and describes it after the IPv4 URL', async () => {
    expect(f.frontEnd.describe()).toEqual([`http://127.0.0.1:${f.port}/rootDesc.xml`, `http://[::1]:${f.port}/rootDesc.xml`]);
    const result = await get(`[::1]:${f.port}`);
    expect(result.status).toBe(200);
    expect(result.body).toContain('<deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:');
  });

  it('accepts Host with a zone, as RFC 6874 writes it (%25) and raw', async () => {
    expect((await get(`[::1%25lo]:${f.port}`)).status).toBe(200);
    expect((await get(`[::1%eth0]:${f.port}`)).status).toBe(200);
    expect((await get(`[0:0:0:0:0:0:0:1]:${f.port}`)).status).toBe(200);
  });

  it('refuses a Host that is not our address and port (403) or not an address (400)', async () => {
    expect((await get(`[::2]:${f.port}`)).status).toBe(403);
    expect((await get(`[::1]:${f.port === 65535 ? 1 : f.port + 1}`)).status).toBe(403);
    expect((await get(`[::1]`)).status).toBe(403);
    expect((await get(`localhost:${f.port}`)).status).toBe(400);
    expect((await get(`::1:${f.port}`)).status).toBe(400);
  });

  it('accepts a GENA subscription from an IPv6 client whose CALLBACK names its own address, and delivers the initial event there', async () => {
    const received: string[] = [];
    const receiver = createServer((req, res) => {
      received.push(`${req.method} ${req.url} SEQ ${String(req.headers['seq'])}`);
      res.writeHead(200, { 'Content-Length': '0' }).end();
    });
    await new Promise<void>((resolve) => receiver.listen(0, '::1', resolve));
    const callbackPort = (receiver.address() as { port: number }).port;
    try {
      const subscribe = (callback: string) =>
        rawRequest(
          f.port,
          [`SUBSCRIBE /igd2/WANIPConn/events HTTP/1.1`, `Host: [::1]:${f.port}`, `CALLBACK: <${callback}>`, 'NT: upnp:event', 'TIMEOUT: Second-1800'].join(
            '\r\n',
          ),
          '',
          { address: '::1' },
        );
      expect((await subscribe(`http://[::1]:${callbackPort}/ev`)).status).toBe(200);
      await expect.poll(() => received, { timeout: 5_000 }).toContain('NOTIFY /ev SEQ 0');
      // Another address than its own is refused (CallStranger).
      expect((await subscribe(`http://[::2]:${callbackPort}/ev`)).status).toBe(412);
    } finally {
      receiver.closeAllConnections();
      await new Promise((resolve) => receiver.close(resolve));
    }
  });

  it('counts connections per IPv6 client: one over the share is closed, an IPv4 client is another client', async () => {
    const open = (host: string) =>
      new Promise<Socket>((resolve, reject) => {
        const socket = connect({ host, port: f.port }, () => resolve(socket));
        socket.on('error', reject);
      });
    const held = [await open('::1'), await open('::1')];
    try {
      const third = await open('::1');
      const closed = await new Promise<boolean>((resolve) => {
        third.on('close', () => resolve(true));
        third.on('error', () => undefined);
        setTimeout(() => resolve(false), 5_000);
      });
      expect(closed).toBe(true);
      const v4 = await rawRequest(f.port, `GET /rootDesc.xml HTTP/1.1\r\nHost: 127.0.0.1:${f.port}`);
      expect(v4.status).toBe(200);
    } finally {
      for (const socket of held) socket.destroy();
    }
  });
});

describe('an IPv6 address that cannot be bound', () => {
  it('is left out: the front-end starts and serves IPv4 (HTTP and SSDP) all the same', async () => {
    const gone = new Ipv6Lan([{ interface: 'lo', address: '2001:db8::dead', prefixLength: 64, scopeId: 1, linkLocal: false }]);
    const f = await startIgd({ lanIpv6: gone });
    try {
      expect((await rawRequest(f.port, `GET /rootDesc.xml HTTP/1.1\r\nHost: ${f.host}`)).status).toBe(200);
    } finally {
      await f.close();
    }
  });
});
