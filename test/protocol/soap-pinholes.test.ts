import { describe, expect, it } from 'vitest';
import { RecordingBackend } from '../support/fakes.js';
import { WANIP6FC, rawRequest, soap, useSharedIgd, type IgdFixture } from './fixture.js';

/**
 * WANIPv6FirewallControl:1, spec-style: each case is a request and the response it must get. The
 * client is 127.0.0.1 (or 127.0.0.2); which IPv6 addresses belong to which of them is what the
 * gateway's neighbour table answers in the daemon, given here as a table.
 */

const OWN: Readonly<Record<string, readonly string[]>> = {
  '127.0.0.1': ['2001:db8:77::10', '2001:db8:77::20'],
  '127.0.0.2': ['2001:db8:77::11'],
};
const OTHER_CLIENT = '127.0.0.2';
const call = (f: IgdFixture, action: string, args: Record<string, string | number> = {}, localAddress?: string) =>
  soap(f, action, args, { typePrefix: WANIP6FC, localAddress });

function addArgs(overrides: Record<string, string | number> = {}): Record<string, string | number> {
  return { RemoteHost: '', RemotePort: 0, InternalClient: '2001:db8:77::10', InternalPort: 8080, Protocol: 6, LeaseTime: 3600, ...overrides };
}

interface Case {
  readonly name: string;
  readonly args: Record<string, string | number>;
  readonly fault: number;
}

const ADD_PINHOLE_FAULTS: readonly Case[] = [
  { name: 'Protocol 65535 (the wildcard): 707 ProtocolWildcardingNotAllowed', args: addArgs({ Protocol: 65535 }), fault: 707 },
  { name: 'Protocol 1 (ICMP): 705 ProtocolNotSupported', args: addArgs({ Protocol: 1 }), fault: 705 },
  { name: 'InternalPort 0 (the wildcard): 706 InternalPortWildcardingNotAllowed', args: addArgs({ InternalPort: 0 }), fault: 706 },
  { name: 'InternalClient empty: 708 WildCardNotPermittedInSrcIP', args: addArgs({ InternalClient: '' }), fault: 708 },
  { name: 'InternalClient "*": 708', args: addArgs({ InternalClient: '*' }), fault: 708 },
  { name: 'InternalClient not an address: 402', args: addArgs({ InternalClient: 'printer.lan' }), fault: 402 },
  { name: 'InternalClient IPv4: 402', args: addArgs({ InternalClient: '127.0.0.1' }), fault: 402 },
  { name: 'InternalClient with a zone: 402', args: addArgs({ InternalClient: 'fe80::1%lo' }), fault: 402 },
  { name: 'RemoteHost not an IPv6 address: 402', args: addArgs({ RemoteHost: '203.0.113.9' }), fault: 402 },
  { name: 'LeaseTime 0: 402 (1 to 86400)', args: addArgs({ LeaseTime: 0 }), fault: 402 },
  { name: 'LeaseTime 86401: 402', args: addArgs({ LeaseTime: 86401 }), fault: 402 },
  { name: 'RemotePort above 65535: 402', args: addArgs({ RemotePort: 70000 }), fault: 402 },
  { name: "another host's address: 606", args: addArgs({ InternalClient: '2001:db8:77::11' }), fault: 606 },
  { name: 'an address that is no LAN host of ours: 606', args: addArgs({ InternalClient: '2001:db8:99::1' }), fault: 606 },
];

describe('WANIPv6FirewallControl:1 (IGD:2 view)', () => {
  let f: IgdFixture;
  useSharedIgd((fixture) => {
    f = fixture;
    f.mappings.checkPinholeTargets((client, requester) => Promise.resolve(OWN[requester]?.includes(client) ? undefined : 'not an address of this host'));
  });

  it('GetFirewallStatus: the firewall is on and inbound pinholes are allowed', async () => {
    const r = await call(f, 'GetFirewallStatus');
    expect(r.values).toEqual({ FirewallEnabled: '1', InboundPinholeAllowed: '1' });
  });

  it('AddPinhole answers a UniqueID and opens the pinhole; the same pinhole again answers the same UniqueID', async () => {
    const first = await call(f, 'AddPinhole', addArgs());
    const id = Number(first.values.UniqueID);
    expect(id).toBeGreaterThan(0);
    expect([...f.backend.installedPinholes.keys()]).toEqual(['TCP [*]:* -> [2001:db8:77::10]:8080']);
    expect((await call(f, 'AddPinhole', addArgs({ LeaseTime: 60 }))).values).toEqual({ UniqueID: String(id) });
    expect((await call(f, 'AddPinhole', addArgs({ InternalClient: '2001:db8:77::20', Protocol: 17 }))).values).toEqual({ UniqueID: String(id + 1) });
  });

  it('AddPinhole keeps a remote host and port restriction, addresses in canonical form', async () => {
    await call(f, 'AddPinhole', addArgs({ RemoteHost: '2001:DB8:FF:0::2', RemotePort: 443 }));
    expect([...f.backend.installedPinholes.keys()]).toEqual(['TCP [2001:db8:ff::2]:443 -> [2001:db8:77::10]:8080']);
  });

  for (const c of ADD_PINHOLE_FAULTS) {
    it(`AddPinhole, ${c.name}`, async () => {
      expect((await call(f, 'AddPinhole', c.args)).errorCode).toBe(c.fault);
      expect(f.backend.installedPinholes.size).toBe(0);
    });
  }

  it('UpdatePinhole, DeletePinhole, GetPinholePackets, CheckPinholeWorking: 704 for a UniqueID no pinhole has', async () => {
    for (const action of ['UpdatePinhole', 'DeletePinhole', 'GetPinholePackets', 'CheckPinholeWorking']) {
      const args: Record<string, number> = action === 'UpdatePinhole' ? { UniqueID: 9, NewLeaseTime: 60 } : { UniqueID: 9 };
      expect((await call(f, action, args)).errorCode, action).toBe(704);
    }
  });

  it("another client can neither update, delete nor read a client's pinhole (606); its owner can", async () => {
    const UniqueID = Number((await call(f, 'AddPinhole', addArgs())).values.UniqueID);
    expect((await call(f, 'UpdatePinhole', { UniqueID, NewLeaseTime: 60 }, OTHER_CLIENT)).errorCode).toBe(606);
    expect((await call(f, 'DeletePinhole', { UniqueID }, OTHER_CLIENT)).errorCode).toBe(606);
    expect((await call(f, 'GetPinholePackets', { UniqueID }, OTHER_CLIENT)).errorCode).toBe(606);
    expect(f.backend.installedPinholes.size).toBe(1);
    expect((await call(f, 'UpdatePinhole', { UniqueID, NewLeaseTime: 60 })).errorCode).toBeUndefined();
    expect((await call(f, 'UpdatePinhole', { UniqueID, NewLeaseTime: 0 })).errorCode).toBe(402);
    expect((await call(f, 'DeletePinhole', { UniqueID })).errorCode).toBeUndefined();
    expect(f.backend.installedPinholes.size).toBe(0);
  });

  it('CheckPinholeWorking: 709 NoTrafficReceived until the kernel counted a packet; GetPinholePackets reports the count', async () => {
    const UniqueID = Number((await call(f, 'AddPinhole', addArgs())).values.UniqueID);
    expect((await call(f, 'CheckPinholeWorking', { UniqueID })).errorCode).toBe(709);
    expect((await call(f, 'GetPinholePackets', { UniqueID })).values).toEqual({ PinholePackets: '0' });
    f.backend.pinholePackets.set('TCP [*]:* -> [2001:db8:77::10]:8080', 3);
    expect((await call(f, 'CheckPinholeWorking', { UniqueID })).values).toEqual({ IsWorking: '1' });
    expect((await call(f, 'GetPinholePackets', { UniqueID })).values).toEqual({ PinholePackets: '3' });
  });

  it('GetOutboundPinholeTimeout answers a number of seconds; its arguments are checked as AddPinhole checks them', async () => {
    const r = await call(f, 'GetOutboundPinholeTimeout', {
      RemoteHost: '',
      RemotePort: 0,
      InternalClient: '2001:db8:77::10',
      InternalPort: 8080,
      Protocol: 17,
    });
    expect(Number(r.values.OutboundPinholeTimeout)).toBeGreaterThan(0);
    const bad = await call(f, 'GetOutboundPinholeTimeout', {
      RemoteHost: '',
      RemotePort: 0,
      InternalClient: '2001:db8:77::10',
      InternalPort: 8080,
      Protocol: 65535,
    });
    expect(bad.errorCode).toBe(707);
  });

  it('nat-port-mapper (libp2p): the pinhole actions through WANIPConnection:2 in its namespace, RemotePort empty for any port', async () => {
    // What it sends: AddPinhole, UpdatePinhole (refresh) and DeletePinhole (unmap) to the
    // WANIPConnection:2 controlURL with SOAPAction "urn:...:WANIPConnection:2#AddPinhole".
    const viaWanIp = (action: string, args: Record<string, string | number>, version: 1 | 2 = 2) => soap(f, action, args, { version });
    const added = await viaWanIp('AddPinhole', addArgs({ RemotePort: '' }));
    expect(added.body).toContain('<u:AddPinholeResponse xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:2">');
    const UniqueID = Number(added.values.UniqueID);
    expect([...f.backend.installedPinholes.keys()]).toEqual(['TCP [*]:* -> [2001:db8:77::10]:8080']);
    expect((await viaWanIp('UpdatePinhole', { UniqueID, NewLeaseTime: 7200 })).status).toBe(200);
    expect(f.mappings.pinholes.get(UniqueID)?.leaseSeconds).toBe(7200);
    expect((await viaWanIp('DeletePinhole', { UniqueID }, 2)).status).toBe(200);
    expect(f.backend.installedPinholes.size).toBe(0);
    // Its own arguments and ownership still hold there.
    expect((await viaWanIp('AddPinhole', addArgs({ InternalClient: '2001:db8:77::11' }))).errorCode).toBe(606);
    expect((await viaWanIp('AddPinhole', addArgs({ RemotePort: 'any' }))).errorCode).toBe(402);
  });

  it('is not in the IGD:1 view', async () => {
    const head = [
      `POST /igd1/WANIP6FC/control HTTP/1.1`,
      `Host: ${f.host}`,
      'Content-Type: text/xml',
      'SOAPAction: "urn:schemas-upnp-org:service:WANIPv6FirewallControl:1#GetFirewallStatus"',
      'Content-Length: 0',
    ].join('\r\n');
    expect((await rawRequest(f.port, head)).status).toBe(404);
    expect((await soap(f, 'AddPinhole', addArgs(), { view: 1 })).errorCode).toBe(401);
  });
});

describe('WANIPv6FirewallControl:1 over a firewall backend without pinholes', () => {
  let f: IgdFixture;
  useSharedIgd(
    (fixture) => {
      f = fixture;
    },
    { backend: new RecordingBackend({ pinholes: false }) },
  );

  it('says inbound pinholes are not allowed, and AddPinhole answers 703 InboundPinholeNotAllowed', async () => {
    expect((await call(f, 'GetFirewallStatus')).values).toEqual({ FirewallEnabled: '1', InboundPinholeAllowed: '0' });
    expect((await call(f, 'AddPinhole', addArgs({ InternalClient: '2001:db8:77::10' }))).errorCode).toBe(703);
    expect(f.backend.applied).toEqual([]);
  });
});
