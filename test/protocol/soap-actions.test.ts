import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { MappingRequest } from '../../core/mapping/types.js';
import { L3F, TEST_EXTERNAL_IP, WANCOMMON, WANIP, addArgs, soap, startIgd, type IgdFixture, type SoapCallOptions, useSharedIgd } from './fixture.js';

/**
 * SOAP control, spec-style: each case is a request and the response it must get (values or the
 * UPnP fault code), run against both WANIPConnection versions unless it names one. The front-end
 * runs over a real MappingService with an in-memory backend and secure mode; the client is
 * 127.0.0.1 unless a case connects from another loopback address.
 */

type Version = 1 | 2;
const OTHER_CLIENT = '127.0.0.2';

interface Case {
  readonly name: string;
  readonly versions?: readonly Version[];
  /** Mappings present before the request (made through the MappingService, as their owner). */
  readonly existing?: readonly Partial<MappingRequest>[];
  readonly action: string;
  readonly args?: Readonly<Record<string, string | number>>;
  readonly options?: SoapCallOptions;
  readonly expect: { readonly fault: number | Readonly<Record<Version, number>> } | { readonly values: Readonly<Record<string, string | RegExp>> };
  /** Checks on the mapping table afterwards. */
  readonly then?: (f: IgdFixture, version: Version) => void;
}

function mapping(overrides: Partial<MappingRequest> = {}): MappingRequest {
  return {
    remoteHost: '',
    externalPort: 5000,
    protocol: 'TCP',
    internalClient: '127.0.0.1',
    internalPort: 5000,
    enabled: true,
    description: 'existing',
    leaseSeconds: 3600,
    ...overrides,
  };
}

const key = (externalPort: number, protocol: 'TCP' | 'UDP' = 'TCP') => ({ remoteHost: '', externalPort, protocol });
const rangeArgs = (overrides: Record<string, string | number> = {}) => ({ NewStartPort: 1, NewEndPort: 65535, NewProtocol: 'TCP', NewManage: 1, ...overrides });

const CASES: readonly Case[] = [
  // --- connection state -------------------------------------------------------------------
  {
    name: 'GetExternalIPAddress reports the configured address',
    action: 'GetExternalIPAddress',
    expect: { values: { NewExternalIPAddress: TEST_EXTERNAL_IP } },
  },
  {
    name: 'GetStatusInfo reports Connected',
    action: 'GetStatusInfo',
    expect: { values: { NewConnectionStatus: 'Connected', NewLastConnectionError: 'ERROR_NONE', NewUptime: /^\d+$/ } },
  },
  {
    name: 'GetConnectionTypeInfo',
    action: 'GetConnectionTypeInfo',
    expect: { values: { NewConnectionType: 'IP_Routed', NewPossibleConnectionTypes: 'IP_Routed' } },
  },
  { name: 'GetNATRSIPStatus', action: 'GetNATRSIPStatus', expect: { values: { NewRSIPAvailable: '0', NewNATEnabled: '1' } } },
  { name: 'SetConnectionType is read-only (731)', action: 'SetConnectionType', args: { NewConnectionType: 'IP_Bridged' }, expect: { fault: 731 } },
  { name: 'SetConnectionType without its argument is 402', action: 'SetConnectionType', expect: { fault: 402 } },
  { name: 'RequestConnection succeeds while connected', action: 'RequestConnection', expect: { values: {} } },
  { name: 'ForceTermination is not authorized (606)', action: 'ForceTermination', expect: { fault: 606 } },

  // --- AddPortMapping ---------------------------------------------------------------------
  {
    name: 'AddPortMapping creates a mapping',
    action: 'AddPortMapping',
    args: addArgs({ NewPortMappingDescription: 'web' }),
    expect: { values: {} },
    then: (f, version) => {
      expect(f.mappings.get(key(5000))).toMatchObject({
        internalClient: '127.0.0.1',
        internalPort: 5000,
        description: 'web',
        createdBy: { address: '127.0.0.1', via: `upnp-igd:${version}` },
      });
      expect([...f.backend.installed.values()]).toHaveLength(1);
    },
  },
  {
    name: 'AddPortMapping by the same client renews (never 718)',
    existing: [mapping({ description: 'old', leaseSeconds: 60 })],
    action: 'AddPortMapping',
    args: addArgs({ NewPortMappingDescription: 'renewed', NewLeaseDuration: 7200 }),
    expect: { values: {} },
    then: (f) => {
      expect(f.mappings.get(key(5000))!.description).toBe('renewed');
      expect(f.mappings.remainingSeconds(f.mappings.get(key(5000))!)).toBe(7200);
    },
  },
  {
    name: 'AddPortMapping on a port another client holds is 718',
    existing: [mapping({ internalClient: OTHER_CLIENT })],
    action: 'AddPortMapping',
    args: addArgs(),
    expect: { fault: 718 },
  },
  {
    name: 'AddPortMapping with an empty InternalClient maps the requester',
    action: 'AddPortMapping',
    args: addArgs({ NewInternalClient: '' }),
    expect: { values: {} },
    then: (f) => expect(f.mappings.get(key(5000))!.internalClient).toBe('127.0.0.1'),
  },
  {
    name: 'AddPortMapping for another host is refused by secure mode (v2: 606, v1: 718)',
    action: 'AddPortMapping',
    args: addArgs({ NewInternalClient: OTHER_CLIENT }),
    expect: { fault: { 1: 718, 2: 606 } },
    then: (f) => expect(f.mappings.size).toBe(0),
  },
  {
    name: 'AddPortMapping lease 0: IGD:2 gives a week, IGD:1 a permanent mapping',
    action: 'AddPortMapping',
    args: addArgs({ NewLeaseDuration: 0 }),
    expect: { values: {} },
    then: (f, version) => expect(f.mappings.remainingSeconds(f.mappings.get(key(5000))!)).toBe(version === 2 ? 604800 : 0),
  },
  {
    name: 'AddPortMapping lease above a week is cut to a week',
    action: 'AddPortMapping',
    args: addArgs({ NewLeaseDuration: 999999 }),
    expect: { values: {} },
    then: (f) => expect(f.mappings.remainingSeconds(f.mappings.get(key(5000))!)).toBe(604800),
  },
  {
    name: 'AddPortMapping accepts a lower-case protocol and keeps "08080" as port 8080',
    action: 'AddPortMapping',
    args: addArgs({ NewProtocol: 'udp', NewExternalPort: '08080' }),
    expect: { values: {} },
    then: (f) => expect(f.mappings.get(key(8080, 'UDP'))).toBeDefined(),
  },
  {
    name: 'AddPortMapping with a remote host keys the mapping by it; "*" is the wildcard',
    action: 'AddPortMapping',
    args: addArgs({ NewRemoteHost: '*' }),
    expect: { values: {} },
    then: (f) => expect(f.mappings.get(key(5000))).toBeDefined(),
  },
  { name: 'AddPortMapping external port 0 is 716', action: 'AddPortMapping', args: addArgs({ NewExternalPort: 0 }), expect: { fault: 716 } },
  {
    name: 'AddPortMapping internal port 0: v2 732, v1 402',
    action: 'AddPortMapping',
    args: addArgs({ NewInternalPort: 0 }),
    expect: { fault: { 1: 402, 2: 732 } },
  },
  { name: 'AddPortMapping port above 65535 is 402', action: 'AddPortMapping', args: addArgs({ NewExternalPort: 65536 }), expect: { fault: 402 } },
  { name: 'AddPortMapping non-numeric port is 402', action: 'AddPortMapping', args: addArgs({ NewInternalPort: '80a' }), expect: { fault: 402 } },
  { name: 'AddPortMapping negative lease is 402', action: 'AddPortMapping', args: addArgs({ NewLeaseDuration: -1 }), expect: { fault: 402 } },
  { name: 'AddPortMapping protocol other than TCP/UDP is 402', action: 'AddPortMapping', args: addArgs({ NewProtocol: 'ICMP' }), expect: { fault: 402 } },
  {
    name: 'AddPortMapping with a malformed InternalClient is 402',
    action: 'AddPortMapping',
    args: addArgs({ NewInternalClient: '127.0.0' }),
    expect: { fault: 402 },
  },
  {
    name: 'AddPortMapping with a host name as InternalClient is 402 (no DNS)',
    action: 'AddPortMapping',
    args: addArgs({ NewInternalClient: 'localhost' }),
    expect: { fault: 402 },
  },
  {
    name: 'AddPortMapping with a malformed RemoteHost is 402',
    action: 'AddPortMapping',
    args: addArgs({ NewRemoteHost: '300.1.1.1' }),
    expect: { fault: 402 },
  },
  { name: 'AddPortMapping with a bad NewEnabled is 402', action: 'AddPortMapping', args: addArgs({ NewEnabled: 'maybe' }), expect: { fault: 402 } },
  {
    name: 'AddPortMapping with an argument missing is 402',
    action: 'AddPortMapping',
    args: Object.fromEntries(Object.entries(addArgs()).filter(([k]) => k !== 'NewLeaseDuration')),
    expect: { fault: 402 },
  },
  {
    name: 'AddPortMapping with an argument given twice is 402',
    action: 'AddPortMapping',
    options: { rawArgs: '<NewExternalPort>1</NewExternalPort><NewExternalPort>2</NewExternalPort>' },
    expect: { fault: 402 },
  },
  {
    name: 'AddPortMapping keeps a raw & from miniupnpc and decodes entities',
    action: 'AddPortMapping',
    options: {
      rawArgs:
        '<NewRemoteHost></NewRemoteHost><NewExternalPort>5000</NewExternalPort><NewProtocol>TCP</NewProtocol><NewInternalPort>5000</NewInternalPort>' +
        '<NewInternalClient>127.0.0.1</NewInternalClient><NewEnabled>1</NewEnabled>' +
        '<NewPortMappingDescription>Tom & Jerry &amp; &lt;friends&gt; &#x263A;</NewPortMappingDescription><NewLeaseDuration>3600</NewLeaseDuration>',
    },
    expect: { values: {} },
    then: (f) => expect(f.mappings.get(key(5000))!.description).toBe('Tom & Jerry & <friends> ☺'),
  },

  // --- reading mappings -------------------------------------------------------------------
  {
    name: 'GetSpecificPortMappingEntry returns the mapping with its remaining lease',
    existing: [mapping({ description: 'a <b> & "c"' })],
    action: 'GetSpecificPortMappingEntry',
    args: { NewRemoteHost: '', NewExternalPort: 5000, NewProtocol: 'TCP' },
    expect: {
      values: { NewInternalPort: '5000', NewInternalClient: '127.0.0.1', NewEnabled: '1', NewPortMappingDescription: 'a <b> & "c"', NewLeaseDuration: '3600' },
    },
  },
  {
    name: 'GetSpecificPortMappingEntry of nothing is 714',
    action: 'GetSpecificPortMappingEntry',
    args: { NewRemoteHost: '', NewExternalPort: 5000, NewProtocol: 'TCP' },
    expect: { fault: 714 },
  },
  {
    name: 'GetSpecificPortMappingEntry with a bad protocol is 402',
    action: 'GetSpecificPortMappingEntry',
    args: { NewRemoteHost: '', NewExternalPort: 5000, NewProtocol: 'SCTP' },
    expect: { fault: 402 },
  },
  {
    name: 'GetGenericPortMappingEntry returns the entry at an index',
    existing: [mapping(), mapping({ externalPort: 6000, protocol: 'UDP', internalPort: 6001 })],
    action: 'GetGenericPortMappingEntry',
    args: { NewPortMappingIndex: 1 },
    expect: {
      values: { NewRemoteHost: '', NewExternalPort: '6000', NewProtocol: 'UDP', NewInternalPort: '6001', NewInternalClient: '127.0.0.1', NewEnabled: '1' },
    },
  },
  {
    name: 'GetGenericPortMappingEntry past the end is 713',
    existing: [mapping()],
    action: 'GetGenericPortMappingEntry',
    args: { NewPortMappingIndex: 1 },
    expect: { fault: 713 },
  },
  {
    name: 'GetGenericPortMappingEntry with a non-numeric index is 402',
    action: 'GetGenericPortMappingEntry',
    args: { NewPortMappingIndex: 'first' },
    expect: { fault: 402 },
  },

  // --- DeletePortMapping ------------------------------------------------------------------
  {
    name: 'DeletePortMapping removes the mapping and its rule',
    existing: [mapping()],
    action: 'DeletePortMapping',
    args: { NewRemoteHost: '', NewExternalPort: 5000, NewProtocol: 'TCP' },
    expect: { values: {} },
    then: (f) => {
      expect(f.mappings.size).toBe(0);
      expect(f.backend.installed.size).toBe(0);
    },
  },
  {
    name: 'DeletePortMapping of nothing is 714',
    action: 'DeletePortMapping',
    args: { NewRemoteHost: '', NewExternalPort: 5000, NewProtocol: 'TCP' },
    expect: { fault: 714 },
  },
  {
    name: "DeletePortMapping of another client's mapping is 606",
    existing: [mapping({ internalClient: OTHER_CLIENT })],
    action: 'DeletePortMapping',
    args: { NewRemoteHost: '', NewExternalPort: 5000, NewProtocol: 'TCP' },
    expect: { fault: 606 },
    then: (f) => expect(f.mappings.size).toBe(1),
  },
  {
    name: 'DeletePortMapping with an empty protocol (nat-port-mapper) deletes both protocols at the port',
    existing: [mapping(), mapping({ protocol: 'UDP' }), mapping({ externalPort: 5001 })],
    action: 'DeletePortMapping',
    args: { NewRemoteHost: '', NewExternalPort: 5000, NewProtocol: '' },
    expect: { values: {} },
    then: (f) => expect([...f.mappings.values()].map((m) => m.externalPort)).toEqual([5001]),
  },
  {
    name: "DeletePortMapping with an empty protocol on another client's port is 606",
    existing: [mapping({ internalClient: OTHER_CLIENT })],
    action: 'DeletePortMapping',
    args: { NewRemoteHost: '', NewExternalPort: 5000, NewProtocol: '' },
    expect: { fault: 606 },
  },

  // --- IGD:2 only -------------------------------------------------------------------------
  {
    name: 'AddAnyPortMapping returns the asked port when it is free',
    versions: [2],
    action: 'AddAnyPortMapping',
    args: addArgs({ NewExternalPort: 7000 }),
    expect: { values: { NewReservedPort: '7000' } },
  },
  {
    name: 'AddAnyPortMapping picks another port when another client holds the asked one',
    versions: [2],
    existing: [mapping({ externalPort: 7000, internalClient: OTHER_CLIENT })],
    action: 'AddAnyPortMapping',
    args: addArgs({ NewExternalPort: 7000 }),
    expect: { values: { NewReservedPort: '7001' } },
    then: (f) => expect(f.mappings.get(key(7001))!.internalClient).toBe('127.0.0.1'),
  },
  {
    name: 'AddAnyPortMapping returns the port this client already holds for the same internal port',
    versions: [2],
    existing: [mapping({ externalPort: 7005, internalPort: 5000 })],
    action: 'AddAnyPortMapping',
    args: addArgs({ NewExternalPort: 5000, NewInternalPort: 5000 }),
    expect: { values: { NewReservedPort: '7005' } },
    then: (f) => expect(f.mappings.size).toBe(1),
  },
  {
    name: 'AddAnyPortMapping external port 0 is 716',
    versions: [2],
    action: 'AddAnyPortMapping',
    args: addArgs({ NewExternalPort: 0 }),
    expect: { fault: 716 },
  },
  { name: 'AddAnyPortMapping is not in WANIPConnection:1 (401)', versions: [1], action: 'AddAnyPortMapping', args: addArgs(), expect: { fault: 401 } },
  {
    name: 'DeletePortMappingRange deletes the caller’s mappings in the range',
    versions: [2],
    existing: [
      mapping({ externalPort: 5000 }),
      mapping({ externalPort: 5001 }),
      mapping({ externalPort: 6000 }),
      mapping({ externalPort: 5002, protocol: 'UDP' }),
    ],
    action: 'DeletePortMappingRange',
    args: rangeArgs({ NewStartPort: 5000, NewEndPort: 5999, NewManage: 0 }),
    expect: { values: {} },
    then: (f) => expect([...f.mappings.values()].map((m) => `${m.protocol}/${m.externalPort}`)).toEqual(['TCP/6000', 'UDP/5002']),
  },
  {
    name: "DeletePortMappingRange skips other clients' mappings even with NewManage 1 (secure mode)",
    versions: [2],
    existing: [mapping({ externalPort: 5000 }), mapping({ externalPort: 5001, internalClient: OTHER_CLIENT })],
    action: 'DeletePortMappingRange',
    args: rangeArgs(),
    expect: { values: {} },
    then: (f) => expect([...f.mappings.values()].map((m) => m.internalClient)).toEqual([OTHER_CLIENT]),
  },
  {
    name: "DeletePortMappingRange over only other clients' mappings is 730",
    versions: [2],
    existing: [mapping({ internalClient: OTHER_CLIENT })],
    action: 'DeletePortMappingRange',
    args: rangeArgs(),
    expect: { fault: 730 },
    then: (f) => expect(f.mappings.size).toBe(1),
  },
  {
    name: 'DeletePortMappingRange with start above end is 733',
    versions: [2],
    action: 'DeletePortMappingRange',
    args: rangeArgs({ NewStartPort: 6000, NewEndPort: 5000 }),
    expect: { fault: 733 },
  },
  {
    name: 'DeletePortMappingRange with a bad protocol is 402',
    versions: [2],
    action: 'DeletePortMappingRange',
    args: rangeArgs({ NewProtocol: 'ANY' }),
    expect: { fault: 402 },
  },
  {
    name: 'DeletePortMappingRange is not in WANIPConnection:1 (401)',
    versions: [1],
    action: 'DeletePortMappingRange',
    args: rangeArgs(),
    expect: { fault: 401 },
  },
  {
    name: 'GetListOfPortMappings returns a well-formed, escaped PortMappingList, sorted by port',
    versions: [2],
    existing: [mapping({ externalPort: 6000, description: 'b&<c>' }), mapping({ externalPort: 5000, description: ']]> "q"' })],
    action: 'GetListOfPortMappings',
    args: { ...rangeArgs(), NewNumberOfPorts: 0 },
    expect: {
      values: {
        NewPortListing:
          /^<\?xml[^>]*\?>\n<p:PortMappingList xmlns:p="urn:schemas-upnp-org:gw:WANIPConnection".*<p:NewExternalPort>5000<.*<p:NewExternalPort>6000</s,
      },
    },
  },
  {
    name: 'GetListOfPortMappings with NewManage 0 lists only the caller’s mappings',
    versions: [2],
    existing: [mapping({ externalPort: 5000, internalClient: OTHER_CLIENT })],
    action: 'GetListOfPortMappings',
    args: { ...rangeArgs({ NewManage: 0 }), NewNumberOfPorts: 0 },
    expect: { fault: 730 },
  },
  {
    name: 'GetListOfPortMappings of an empty range is 730',
    versions: [2],
    action: 'GetListOfPortMappings',
    args: { ...rangeArgs(), NewNumberOfPorts: 0 },
    expect: { fault: 730 },
  },
  {
    name: 'GetListOfPortMappings with start above end is 733',
    versions: [2],
    action: 'GetListOfPortMappings',
    args: { ...rangeArgs({ NewStartPort: 2, NewEndPort: 1 }), NewNumberOfPorts: 0 },
    expect: { fault: 733 },
  },
  {
    name: 'GetListOfPortMappings is not in WANIPConnection:1 (401)',
    versions: [1],
    action: 'GetListOfPortMappings',
    args: { ...rangeArgs(), NewNumberOfPorts: 0 },
    expect: { fault: 401 },
  },

  // --- dispatch ---------------------------------------------------------------------------
  { name: 'an unknown action is 401', action: 'FlyToTheMoon', expect: { fault: 401 } },
  {
    name: 'SOAPACTION naming a different action than the body is 401',
    action: 'GetExternalIPAddress',
    options: { soapActionHeader: 'SOAPAction: "urn:schemas-upnp-org:service:WANIPConnection:1#GetStatusInfo"' },
    expect: { fault: 401 },
  },
  {
    name: 'a version above the one served is 401',
    versions: [1],
    action: 'GetExternalIPAddress',
    options: { version: 2 },
    expect: { fault: 401 },
  },
  {
    name: 'an older version at a newer control URL is served in the older namespace',
    versions: [2],
    action: 'AddPortMapping',
    args: addArgs({ NewLeaseDuration: 0 }),
    options: { version: 1 },
    expect: { values: {} },
    then: (f) => expect(f.mappings.get(key(5000))).toMatchObject({ expiresAt: null, createdBy: { via: 'upnp-igd:1' } }),
  },
  {
    name: "another service's action at this control URL is 401",
    action: 'GetTotalBytesSent',
    options: { soapActionHeader: 'SOAPAction: "urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1#GetTotalBytesSent"' },
    expect: { fault: 401 },
  },
  {
    name: 'QueryStateVariable reads an evented variable',
    existing: [mapping()],
    action: 'QueryStateVariable',
    options: {
      soapActionHeader: 'SOAPAction: "urn:schemas-upnp-org:control-1-0#QueryStateVariable"',
      rawArgs: '<varName>PortMappingNumberOfEntries</varName>',
    },
    expect: { values: { return: '1' } },
  },
  {
    name: 'QueryStateVariable reads ConnectionStatus (Windows XP)',
    action: 'QueryStateVariable',
    options: { soapActionHeader: 'SOAPAction: "urn:schemas-upnp-org:control-1-0#QueryStateVariable"', rawArgs: '<varName>ConnectionStatus</varName>' },
    expect: { values: { return: 'Connected' } },
  },
  {
    name: 'QueryStateVariable of an unknown variable is 404 Invalid Var',
    action: 'QueryStateVariable',
    options: { soapActionHeader: 'SOAPAction: "urn:schemas-upnp-org:control-1-0#QueryStateVariable"', rawArgs: '<varName>NoSuchThing</varName>' },
    expect: { fault: 404 },
  },

  // --- WANCommonInterfaceConfig and Layer3Forwarding ----------------------------------------
  {
    name: 'GetCommonLinkProperties',
    action: 'GetCommonLinkProperties',
    options: { typePrefix: WANCOMMON },
    expect: {
      values: {
        NewWANAccessType: 'Ethernet',
        NewLayer1UpstreamMaxBitRate: '1000000000',
        NewLayer1DownstreamMaxBitRate: '1000000000',
        NewPhysicalLinkStatus: 'Up',
      },
    },
  },
  {
    name: 'GetTotalBytesSent reads the WAN counter',
    action: 'GetTotalBytesSent',
    options: { typePrefix: WANCOMMON },
    expect: { values: { NewTotalBytesSent: '1234' } },
  },
  {
    name: 'GetTotalBytesReceived wraps at 2^32 (ui4)',
    action: 'GetTotalBytesReceived',
    options: { typePrefix: WANCOMMON },
    expect: { values: { NewTotalBytesReceived: '5' } },
  },
  { name: 'GetTotalPacketsSent', action: 'GetTotalPacketsSent', options: { typePrefix: WANCOMMON }, expect: { values: { NewTotalPacketsSent: '12' } } },
  {
    name: 'GetTotalPacketsReceived',
    action: 'GetTotalPacketsReceived',
    options: { typePrefix: WANCOMMON },
    expect: { values: { NewTotalPacketsReceived: '34' } },
  },
  {
    name: 'GetDefaultConnectionService names the WANIPConnection of this view',
    action: 'GetDefaultConnectionService',
    options: { typePrefix: L3F },
    expect: { values: { NewDefaultConnectionService: /^uuid:[0-9a-f-]{36}:WANConnectionDevice:[12],urn:upnp-org:serviceId:WANIPConn1$/ } },
  },
  {
    name: 'SetDefaultConnectionService to another device is 720 InvalidDeviceUUID',
    action: 'SetDefaultConnectionService',
    args: { NewDefaultConnectionService: 'uuid:00000000-0000-0000-0000-000000000000:WANConnectionDevice:1,urn:upnp-org:serviceId:WANPPPConn1' },
    options: { typePrefix: L3F },
    expect: { fault: 720 },
  },
];

describe('SOAP control actions', () => {
  let f: IgdFixture;
  useSharedIgd((started) => (f = started));

  const runs = CASES.flatMap((c) => (c.versions ?? [1, 2]).map((version) => ({ ...c, version, title: `[v${version}] ${c.name}` })));

  it.each(runs)('$title', async ({ existing, action, args, options, expect: expected, then, version }) => {
    for (const request of existing ?? []) {
      await f.mappings.add(request as MappingRequest, { address: (request as MappingRequest).internalClient, via: 'test' });
    }
    const result = await soap(f, action, args, { view: version, ...options });
    if ('fault' in expected) {
      const code = typeof expected.fault === 'number' ? expected.fault : expected.fault[version];
      expect({ status: result.status, errorCode: result.errorCode }).toEqual({ status: 500, errorCode: code });
      expect(result.body).toContain('<faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring>');
      expect(result.headers['content-length']).toBe(String(Buffer.byteLength(result.body)));
    } else {
      expect(result.status, result.body).toBe(200);
      for (const [name, value] of Object.entries(expected.values)) {
        if (value instanceof RegExp) expect(result.values[name]).toMatch(value);
        else expect(result.values[name], name).toBe(value);
      }
    }
    then?.(f, version);
  });

  it('GetCommonLinkProperties reports a WAN link that is down, and 0 ("unknown") for a link without a speed', async () => {
    f.network.wanLink = { up: false, speedBitsPerSecond: null };
    try {
      const result = await soap(f, 'GetCommonLinkProperties', {}, { typePrefix: WANCOMMON });
      expect(result.values).toMatchObject({ NewPhysicalLinkStatus: 'Down', NewLayer1UpstreamMaxBitRate: '0', NewLayer1DownstreamMaxBitRate: '0' });
    } finally {
      f.network.wanLink = { up: true, speedBitsPerSecond: 1_000_000_000 };
    }
  });

  it.each([1, 2] as const)('[v%i] SetDefaultConnectionService: our device with another service is 721, our own service is accepted', async (view) => {
    const current = (await soap(f, 'GetDefaultConnectionService', {}, { view, typePrefix: L3F })).values['NewDefaultConnectionService']!;
    const device = current.split(',')[0]!;
    const foreign = await soap(
      f,
      'SetDefaultConnectionService',
      { NewDefaultConnectionService: `${device},urn:upnp-org:serviceId:WANPPPConn1` },
      { view, typePrefix: L3F },
    );
    expect(foreign.errorCode).toBe(721);
    const same = await soap(f, 'SetDefaultConnectionService', { NewDefaultConnectionService: current }, { view, typePrefix: L3F });
    expect(same.status).toBe(200);
  });

  it('renders a well-formed PortMappingList whose entries parse back to the stored values', async () => {
    await f.mappings.add(mapping({ description: 'b&<c> ]]> "q"' }), { address: '127.0.0.1', via: 'test' });
    const listing = (await soap(f, 'GetListOfPortMappings', { ...rangeArgs(), NewNumberOfPorts: 0 })).values['NewPortListing']!;
    expect(XMLValidator.validate(listing)).toBe(true);
    const parsed = new XMLParser({ parseTagValue: false, removeNSPrefix: true }).parse(listing) as { PortMappingList: { PortMappingEntry: unknown } };
    expect(parsed.PortMappingList.PortMappingEntry).toEqual({
      NewRemoteHost: '',
      NewExternalPort: '5000',
      NewProtocol: 'TCP',
      NewInternalPort: '5000',
      NewInternalClient: '127.0.0.1',
      NewEnabled: '1',
      NewDescription: 'b&<c> ]]> "q"',
      NewLeaseTime: '3600',
    });
  });

  it('answers with characters XML allows only, whatever a client put in a description (U+FFFF, U+FFFE, C0 controls)', async () => {
    // What XML 1.0 §2.2 (Char) does not allow: libxml2, expat, Go's encoding/xml refuse a document holding one.
    const notXml = /[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\u{10000}-\u{10ffff}]/u;
    const added = await soap(f, 'AddPortMapping', addArgs({ NewPortMappingDescription: 'a\uffffb\ufffec\u0001d\u001fe' }));
    expect(added.status).toBe(200);
    const answers = [
      await soap(f, 'GetSpecificPortMappingEntry', { NewRemoteHost: '', NewExternalPort: 5000, NewProtocol: 'TCP' }),
      await soap(f, 'GetGenericPortMappingEntry', { NewPortMappingIndex: 0 }),
    ];
    for (const answer of answers) {
      expect(answer.body).not.toMatch(notXml);
      expect(answer.values['NewPortMappingDescription']).toBe('abcde');
    }
    const listing = (await soap(f, 'GetListOfPortMappings', { ...rangeArgs(), NewNumberOfPorts: 0 })).values['NewPortListing']!;
    expect(listing).not.toMatch(notXml);
    expect(listing).toContain('<p:NewDescription>abcde</p:NewDescription>');
  });

  it('lists at most NewNumberOfPorts entries', async () => {
    for (const port of [5002, 5000, 5001]) await f.mappings.add(mapping({ externalPort: port }), { address: '127.0.0.1', via: 'test' });
    const listing = (await soap(f, 'GetListOfPortMappings', { ...rangeArgs(), NewNumberOfPorts: 2 })).values['NewPortListing']!;
    expect([...listing.matchAll(/<p:NewExternalPort>(\d+)</g)].map((m) => m[1])).toEqual(['5000', '5001']);
  });

  it('answers in the namespace (version) the caller used', async () => {
    for (const [view, version] of [
      [2, 2],
      [2, 1],
      [1, 1],
    ] as const) {
      const result = await soap(f, 'GetExternalIPAddress', {}, { view, version });
      expect(result.body).toContain(`<u:GetExternalIPAddressResponse xmlns:u="${WANIP}:${version}">`);
    }
  });

  it('answers a backend failure with 501 and leaves the table unchanged', async () => {
    f.backend.failNext = 1;
    const result = await soap(f, 'AddPortMapping', addArgs());
    expect(result.errorCode).toBe(501);
    expect(f.mappings.size).toBe(0);
  });

  it('keeps the table consistent under many parallel AddPortMapping requests', async () => {
    const ports = Array.from({ length: 40 }, (_, i) => 10000 + i);
    const results = await Promise.all(ports.map((port) => soap(f, 'AddPortMapping', addArgs({ NewExternalPort: port, NewInternalPort: port }))));
    expect(results.map((r) => r.status)).toEqual(ports.map(() => 200));
    // And the same port from two clients at once: exactly one wins, the other gets 718.
    const contested = await Promise.all(
      ['127.0.0.1', OTHER_CLIENT].map((client) =>
        soap(f, 'AddPortMapping', addArgs({ NewExternalPort: 20000, NewInternalClient: client }), { localAddress: client }),
      ),
    );
    expect(contested.map((r) => r.errorCode ?? 0).sort()).toEqual([0, 718]);
    expect(f.mappings.size).toBe(ports.length + 1);
    expect(new Set([...f.backend.installed.keys()])).toEqual(new Set([...f.mappings.values()].map((m) => `TCP/${m.externalPort}/`)));
  });
});

describe('SOAP control without an external address', () => {
  let f: IgdFixture;
  beforeEach(async () => {
    // No externalIp in the config and a WAN interface without an address.
    f = await startIgd({ config: { externalIp: undefined } });
  });
  afterEach(async () => {
    await f.close();
  });

  it.each([1, 2] as const)('[v%i] refuses new mappings with 501 and reports Disconnected and an empty address', async (view) => {
    expect((await soap(f, 'AddPortMapping', addArgs(), { view })).errorCode).toBe(501);
    expect((await soap(f, 'RequestConnection', {}, { view })).errorCode).toBe(501);
    expect((await soap(f, 'GetExternalIPAddress', {}, { view })).values).toEqual({ NewExternalIPAddress: '' });
    expect((await soap(f, 'GetStatusInfo', {}, { view })).values).toMatchObject({
      NewConnectionStatus: 'Disconnected',
      NewLastConnectionError: 'ERROR_IP_CONFIGURATION',
    });
    expect((await soap(f, 'GetCommonLinkProperties', {}, { view, typePrefix: WANCOMMON })).values).toMatchObject({ NewPhysicalLinkStatus: 'Down' });
  });

  it('picks up an address that appears on the WAN interface at the next poll', async () => {
    f.network.wanAddresses = ['198.51.100.20'];
    await f.clock.advance(10_000);
    expect((await soap(f, 'GetExternalIPAddress')).values).toEqual({ NewExternalIPAddress: '198.51.100.20' });
    expect((await soap(f, 'AddPortMapping', addArgs())).status).toBe(200);
  });

  it('answers 501 for the traffic counters when the WAN interface has none', async () => {
    f.network.wanCounters = null;
    expect((await soap(f, 'GetTotalBytesSent', {}, { typePrefix: WANCOMMON })).errorCode).toBe(501);
  });
});
