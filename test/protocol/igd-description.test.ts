import { createSocket } from 'node:dgram';
import { XMLValidator } from 'fast-xml-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WAN_IP_CONNECTION, WAN_COMMON_INTERFACE_CONFIG, LAYER3_FORWARDING } from '../../core/upnp/description/services.js';
import { devicesOf, parseDescription, parseScpd, type DescribedDevice, type DescribedService } from '../support/upnp-xml.js';
import { rawRequest, soap, startIgd, type IgdFixture } from './fixture.js';

/** Descriptions: both views, the Microsoft fallback, CONFIGID, escaping, and SCPDs that list exactly what is dispatched. */

async function get(f: IgdFixture, path: string, userAgent?: string) {
  const head = [`GET ${path} HTTP/1.1`, `Host: ${f.host}`, ...(userAgent ? [`User-Agent: ${userAgent}`] : [])].join('\r\n');
  return rawRequest(f.port, head);
}

async function description(f: IgdFixture, path: string, userAgent?: string) {
  const response = await get(f, path, userAgent);
  expect(response.status).toBe(200);
  expect(XMLValidator.validate(response.body)).toBe(true);
  return parseDescription(response.body);
}

function services(root: DescribedDevice): DescribedService[] {
  return devicesOf(root).flatMap((d) => d.serviceList.service);
}

const FRIENDLY_NAME = 'Tom & Jerry\'s <"gateway">';

describe('device descriptions', () => {
  let f: IgdFixture;
  beforeAll(async () => {
    f = await startIgd({ config: { upnp: { friendlyName: FRIENDLY_NAME } } });
  });
  afterAll(async () => {
    await f.close();
  });

  it.each([
    ['the default path, for most clients', '/rootDesc.xml', 'Debian/12, UPnP/1.1, MiniUPnPc/2.2.4', 2],
    ['the default path, for Windows', '/rootDesc.xml', 'Microsoft-Windows/10.0 UPnP/1.0 UPnP-Device-Host/1.0', 1],
    ['the default path, for an Xbox', '/rootDesc.xml', 'Xbox/2.0.17559.0 UPnP/1.0 Xbox/2.0.17559.0', 1],
    ['the IGD:2 path', '/rootDesc2.xml', 'Microsoft-Windows/10.0 UPnP/1.0', 2],
    ['the IGD:1 path', '/rootDesc1.xml', undefined, 1],
  ] as const)('%s shows the IGD:%s tree', async (_, path, userAgent, version) => {
    const root = await description(f, path, userAgent);
    expect(root.specVersion).toEqual({ major: '1', minor: '1' });
    const [gateway] = root.device;
    expect(devicesOf(gateway!).map((d) => d.deviceType)).toEqual([
      `urn:schemas-upnp-org:device:InternetGatewayDevice:${version}`,
      `urn:schemas-upnp-org:device:WANDevice:${version}`,
      `urn:schemas-upnp-org:device:WANConnectionDevice:${version}`,
    ]);
    expect(services(gateway!).map((s) => [s.serviceType, s.serviceId])).toEqual([
      ['urn:schemas-upnp-org:service:Layer3Forwarding:1', 'urn:upnp-org:serviceId:L3Forwarding1'],
      ['urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1', 'urn:upnp-org:serviceId:WANCommonIFC1'],
      [`urn:schemas-upnp-org:service:WANIPConnection:${version}`, 'urn:upnp-org:serviceId:WANIPConn1'],
      // IPv6 pinholes in the IGD:2 tree only: the IGD:1 one stays as the clients that need it know it.
      ...(version === 2 ? [['urn:schemas-upnp-org:service:WANIPv6FirewallControl:1', 'urn:upnp-org:serviceId:WANIPv6Firewall1']] : []),
    ]);
    expect(gateway!.presentationURL).toBe('/');
    expect(new Set(devicesOf(gateway!).map((d) => d.UDN)).size).toBe(3);
  });

  it('echoes the friendly name XML-escaped', async () => {
    const raw = (await get(f, '/rootDesc.xml')).body;
    expect(raw).toContain('<friendlyName>Tom &amp; Jerry&apos;s &lt;&quot;gateway&quot;&gt;</friendlyName>');
    expect((await description(f, '/rootDesc.xml')).device[0]!.friendlyName).toBe(FRIENDLY_NAME);
  });

  it('gives every document the same configId, and the SCPDs a valid, consistent state table', async () => {
    const configIds = new Set<string>();
    for (const path of ['/rootDesc1.xml', '/rootDesc2.xml']) {
      const root = await description(f, path);
      configIds.add(root['@configId']);
      for (const service of services(root.device[0]!)) {
        const scpd = await get(f, service.SCPDURL);
        expect(scpd.status).toBe(200);
        expect(XMLValidator.validate(scpd.body)).toBe(true);
        const parsed = parseScpd(scpd.body);
        configIds.add(parsed['@configId']);
        const variables = new Set(parsed.serviceStateTable.stateVariable.map((v) => v.name));
        for (const action of parsed.actionList.action) {
          for (const argument of action.argumentList?.argument ?? [])
            expect(variables.has(argument.relatedStateVariable), argument.relatedStateVariable).toBe(true);
        }
      }
    }
    expect(configIds.size).toBe(1);
    expect(Number([...configIds][0])).toBeLessThanOrEqual(16777215);
  });

  it('lists in each SCPD exactly the actions its control URL dispatches', async () => {
    const everyAction = [WAN_IP_CONNECTION, WAN_COMMON_INTERFACE_CONFIG, LAYER3_FORWARDING].flatMap((s) => s.actions.map((a) => a.name));
    for (const path of ['/rootDesc1.xml', '/rootDesc2.xml']) {
      for (const service of services((await description(f, path)).device[0]!)) {
        const listed = new Set(parseScpd((await get(f, service.SCPDURL)).body).actionList.action.map((a) => a.name));
        for (const action of everyAction) {
          // No arguments: actions that change anything stop at 402, so probing is harmless.
          const head = [`POST ${service.controlURL} HTTP/1.1`, `Host: ${f.host}`, `SOAPAction: "${service.serviceType}#${action}"`];
          const body = `<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><u:${action} xmlns:u="${service.serviceType}"/></s:Body></s:Envelope>`;
          const result = await rawRequest(f.port, [...head, `Content-Length: ${body.length}`].join('\r\n'), body);
          const invalidAction = result.body.includes('<errorCode>401</errorCode>');
          expect(invalidAction, `${service.serviceType} ${action}`).toBe(!listed.has(action));
        }
      }
    }
    expect(f.mappings.size).toBe(0);
  });

  it('serves the presentation page', async () => {
    const page = await get(f, '/');
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(page.body).toContain('Tom &amp; Jerry&apos;s &lt;&quot;gateway&quot;&gt;');
  });

  it('answers a unicast M-SEARCH with a LOCATION that serves this description and its CONFIGID', async () => {
    const reply = await mSearch(f.ssdpPort, 'urn:schemas-upnp-org:device:InternetGatewayDevice:1');
    const location = new URL(/^LOCATION: *(.+)$/im.exec(reply)![1]!.trim());
    expect(location.host).toBe(f.host);
    const root = await description(f, location.pathname);
    expect(/^CONFIGID\.UPNP\.ORG: *(\d+)/im.exec(reply)![1]).toBe(root['@configId']);
  });

  it('points SOAP at control URLs that work', async () => {
    const root = await description(f, '/rootDesc.xml');
    const wanIp = services(root.device[0]!).find((s) => s.serviceType.includes('WANIPConnection'))!;
    expect(wanIp.controlURL).toBe('/igd2/WANIPConn/control');
    expect((await soap(f, 'GetExternalIPAddress')).status).toBe(200);
  });
});

describe('configuration and CONFIGID', () => {
  it('keeps CONFIGID across restarts and changes it when a description changes', async () => {
    const ids: string[] = [];
    for (const friendlyName of ['gw', 'gw', 'other name']) {
      const f = await startIgd({ config: { upnp: { friendlyName } } });
      try {
        ids.push((await description(f, '/rootDesc.xml'))['@configId']);
      } finally {
        await f.close();
      }
    }
    expect(ids[0]).toBe(ids[1]);
    expect(ids[2]).not.toBe(ids[0]);
  });

  it('serves only IGD:1 when igdVersion is 1, to every client', async () => {
    const f = await startIgd({ config: { upnp: { igdVersion: 1 } } });
    try {
      const root = await description(f, '/rootDesc.xml', 'libp2p/nat-port-mapper');
      expect(root.device[0]!.deviceType).toBe('urn:schemas-upnp-org:device:InternetGatewayDevice:1');
      expect((await get(f, '/rootDesc2.xml')).status).toBe(404);
      expect((await soap(f, 'GetExternalIPAddress', {}, { view: 1 })).status).toBe(200);
    } finally {
      await f.close();
    }
  });

  it('serves IGD:2 to everyone, Windows included, when igdVersion is 2', async () => {
    const f = await startIgd({ config: { upnp: { igdVersion: 2 } } });
    try {
      const root = await description(f, '/rootDesc.xml', 'Microsoft-Windows/10.0 UPnP/1.0');
      expect(root.device[0]!.deviceType).toBe('urn:schemas-upnp-org:device:InternetGatewayDevice:2');
      expect((await get(f, '/rootDesc1.xml')).status).toBe(404);
    } finally {
      await f.close();
    }
  });
});

function mSearch(port: number, searchTarget: string): Promise<string> {
  const socket = createSocket('udp4');
  const message = ['M-SEARCH * HTTP/1.1', `HOST: 127.0.0.1:${port}`, 'MAN: "ssdp:discover"', `ST: ${searchTarget}`, '', ''].join('\r\n');
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.close();
      reject(new Error('no M-SEARCH reply within 3 s'));
    }, 3_000);
    socket.on('message', (data) => {
      clearTimeout(timer);
      socket.close();
      resolve(data.toString('latin1'));
    });
    socket.bind(0, '127.0.0.1', () => socket.send(message, port, '127.0.0.1'));
  });
}
