import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { findWanIpv6FirewallControl } from '../load/description.js';
import { addPinholes, pinholesInListing, planPinholes } from '../load/pinholes.js';

const HOSTS = ['2001:db8:77::100', '2001:db8:77::101', '2001:db8:77::102'];
const FIREWALL_CONTROL = 'urn:schemas-upnp-org:service:WANIPv6FirewallControl:1';

describe('the pinhole plan', () => {
  it('spreads the pinholes over the hosts in turn, each (host, port) once', () => {
    const plan = planPinholes(7, HOSTS, 30000);
    expect(plan.map((p) => `${p.host.slice(-3)}:${p.port}`)).toEqual([
      '100:30000',
      '101:30000',
      '102:30000',
      '100:30001',
      '101:30001',
      '102:30001',
      '100:30002',
    ]);
    expect(new Set(planPinholes(1000, HOSTS, 30000).map((p) => `${p.host}/${p.port}`)).size).toBe(1000);
  });

  it('refuses no hosts, and ports beyond 65535', () => {
    expect(() => planPinholes(1, [], 30000)).toThrow(/no LAN hosts/);
    expect(() => planPinholes(4, HOSTS.slice(0, 1), 65533)).toThrow(/do not fit/);
  });
});

describe('pinholes in an nft listing', () => {
  const plan = planPinholes(4, HOSTS.slice(0, 2), 30000);

  it("counts upnpd's set elements", () => {
    const listing =
      'set upnpd-pinholes {\n\t\telements = { 2001:db8:77::100 . tcp . 30000, 2001:db8:77::101 . tcp . 30000,\n\t\t\t     2001:db8:77::100 . tcp . 30001 }\n';
    expect(pinholesInListing(listing, plan)).toBe(3);
  });

  it("counts miniupnpd's rules, which match raw IPv6 header bytes", () => {
    const rule = (port: number, hex: string) => `\t\tiif "wan0" th dport ${port} @nh,192,128 0x20010db8007700000000000000000${hex} @nh,48,8 0x6 accept\n`;
    const listing = `chain miniupnpd {\n${rule(30000, '100')}${rule(30001, '101')}${rule(30001, '101')}${rule(30002, '100')}}`;
    // 30001 for ::101 twice counts once; 30002 was not planned.
    expect(pinholesInListing(listing, plan)).toBe(2);
  });

  it('counts nothing in an empty table or for UDP', () => {
    expect(pinholesInListing('table inet filter {\n}', plan)).toBe(0);
    expect(pinholesInListing('elements = { 2001:db8:77::100 . udp . 30000 }', plan)).toBe(0);
  });
});

describe('the pinhole load', () => {
  let server: Server | undefined;
  afterEach(() => new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve())));

  /** A WANIPv6FirewallControl on ::1 that answers AddPinhole as `answer` says and records each request's body. */
  async function fakeGateway(answer: (body: string) => number): Promise<{ url: string; bodies: string[] }> {
    const bodies: string[] = [];
    server = createServer((request, response) => {
      if (request.method === 'GET') {
        // An IGD:1 view without the service, IGD:2's with it.
        const type = request.url === '/igd1.xml' ? 'urn:schemas-upnp-org:service:WANIPConnection:1' : FIREWALL_CONTROL;
        response.end(
          `<root><device><serviceList><service><serviceType>${type}</serviceType><controlURL>/ctl/6FC</controlURL></service></serviceList></device></root>`,
        );
        return;
      }
      let body = '';
      request.on('data', (chunk: Buffer) => (body += chunk.toString()));
      request.on('end', () => {
        bodies.push(body);
        const status = answer(body);
        response.statusCode = status;
        response.end(
          status === 200
            ? '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><u:AddPinholeResponse><UniqueID>1</UniqueID></u:AddPinholeResponse></s:Body></s:Envelope>'
            : '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault><detail><UPnPError><errorCode>701</errorCode><errorDescription>PinholeSpaceExhausted</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>',
        );
      });
    });
    await new Promise<void>((resolve) => server!.listen(0, '::1', resolve));
    return { url: `http://[::1]:${(server.address() as AddressInfo).port}`, bodies };
  }

  const options = (url: string) => ({
    descriptionUrls: [`${url}/igd1.xml`, `${url}/rootDesc2.xml`],
    hosts: ['::1'],
    count: 20,
    firstPort: 30000,
    leaseSeconds: 3600,
    concurrency: 4,
    maxMs: 10_000,
  });

  it('finds the service over IPv6 and adds every planned pinhole to its requester', async () => {
    const gateway = await fakeGateway(() => 200);
    const result = await addPinholes(options(gateway.url));
    expect(result).toMatchObject({ added: 20, controlUrl: `${gateway.url}/ctl/6FC` });
    expect(result.error).toBeUndefined();
    expect(gateway.bodies).toHaveLength(20);
    expect(gateway.bodies[0]).toContain(
      '<InternalClient>::1</InternalClient><InternalPort>30000</InternalPort><Protocol>6</Protocol><LeaseTime>3600</LeaseTime>',
    );
    expect(new Set(gateway.bodies.map((b) => /<InternalPort>(\d+)</.exec(b)![1])).size).toBe(20);
  });

  it('stops at the first fault and says which', async () => {
    const gateway = await fakeGateway((body) => (body.includes('<InternalPort>30005<') ? 500 : 200));
    const result = await addPinholes(options(gateway.url));
    expect(result.added).toBeLessThan(20);
    expect(result.error).toMatch(/AddPinhole from ::1 port 30005: .*701/);
  });

  it('says so when no description has WANIPv6FirewallControl', async () => {
    const gateway = await fakeGateway(() => 200);
    await expect(addPinholes({ ...options(gateway.url), descriptionUrls: [`${gateway.url}/igd1.xml`] })).rejects.toThrow(
      /no WANIPv6FirewallControl service over IPv6: .*igd1\.xml: no WANIPv6FirewallControl service in the description/,
    );
    expect(gateway.bodies).toEqual([]);
  });

  it('finds the service in an IGD:2 description', () => {
    const xml = `<root><URLBase>http://[2001:db8:77::1]:5000/</URLBase><device><serviceList><service><serviceType>${FIREWALL_CONTROL}</serviceType><controlURL>/ctl/6FC</controlURL></service></serviceList></device></root>`;
    expect(findWanIpv6FirewallControl(xml, new URL('http://[2001:db8:77::1]:49152/rootDesc.xml')).controlUrl.href).toBe('http://[2001:db8:77::1]:5000/ctl/6FC');
  });
});
