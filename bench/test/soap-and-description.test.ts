import { describe, expect, it } from 'vitest';
import { findWanIpConnection } from '../load/description.js';
import { listedPorts } from '../load/session.js';
import { SoapFault, readSoapResponse, soapEnvelope } from '../load/soap-client.js';

const envelope = (body: string) => `<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>${body}</s:Body></s:Envelope>`;

describe('SOAP responses', () => {
  it('reads out arguments as strings ("08080" stays a string)', () => {
    const body = envelope(
      '<u:GetSpecificPortMappingEntryResponse xmlns:u="x"><NewInternalPort>08080</NewInternalPort><NewEnabled>1</NewEnabled></u:GetSpecificPortMappingEntryResponse>',
    );
    expect(readSoapResponse('GetSpecificPortMappingEntry', { status: 200, body })).toEqual({ NewInternalPort: '08080', NewEnabled: '1' });
  });

  it('reads an empty response element as no out arguments', () => {
    expect(readSoapResponse('AddPortMapping', { status: 200, body: envelope('<u:AddPortMappingResponse xmlns:u="x"></u:AddPortMappingResponse>') })).toEqual(
      {},
    );
  });

  it('turns a UPnP fault into a SoapFault with its code', () => {
    const body = envelope(
      '<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail><UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>713</errorCode><errorDescription>SpecifiedArrayIndexInvalid</errorDescription></UPnPError></detail></s:Fault>',
    );
    const read = () => readSoapResponse('GetGenericPortMappingEntry', { status: 500, body });
    expect(read).toThrow(SoapFault);
    expect(read).toThrow(/GetGenericPortMappingEntry: UPnP error 713 SpecifiedArrayIndexInvalid/);
  });

  it.each([
    ['a 200 for another action', 200, envelope('<u:OtherResponse xmlns:u="x"/>')],
    ['a 500 without a UPnPError', 500, envelope('<s:Fault><faultcode>s:Server</faultcode></s:Fault>')],
    ['a 401', 401, 'Unauthorized'],
  ])('rejects %s', (_name, status, body) => {
    expect(() => readSoapResponse('AddPortMapping', { status, body })).toThrow(/unexpected HTTP/);
  });

  it('escapes argument values in the request envelope', () => {
    const xml = soapEnvelope('urn:schemas-upnp-org:service:WANIPConnection:2', 'AddPortMapping', { NewPortMappingDescription: '<a & "b">' });
    expect(xml).toContain(
      '<u:AddPortMapping xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:2"><NewPortMappingDescription>&#60;a &#38; &#34;b&#34;&#62;</NewPortMappingDescription></u:AddPortMapping>',
    );
  });
});

describe('PortMappingList', () => {
  const entry = (port: number) => `<p:PortMappingEntry><p:NewRemoteHost></p:NewRemoteHost><p:NewExternalPort>${port}</p:NewExternalPort></p:PortMappingEntry>`;
  const list = (ports: number[]) => `<p:PortMappingList xmlns:p="urn:schemas-upnp-org:gw:WANIPConnection">${ports.map(entry).join('')}</p:PortMappingList>`;

  it('reads the ports of an escaped listing (as upnpd sends it, decoded by the envelope parser)', () => {
    const body = envelope(
      `<u:GetListOfPortMappingsResponse xmlns:u="x"><NewPortListing>${list([20000, 20001]).replace(/</g, '&lt;').replace(/>/g, '&gt;')}</NewPortListing></u:GetListOfPortMappingsResponse>`,
    );
    expect(listedPorts(readSoapResponse('GetListOfPortMappings', { status: 200, body }).NewPortListing!)).toEqual([20000, 20001]);
  });

  it('reads the ports of a CDATA listing (as miniupnpd sends it)', () => {
    const body = envelope(
      `<u:GetListOfPortMappingsResponse xmlns:u="x"><NewPortListing><![CDATA[${list([20000])}]]></NewPortListing></u:GetListOfPortMappingsResponse>`,
    );
    expect(listedPorts(readSoapResponse('GetListOfPortMappings', { status: 200, body }).NewPortListing!)).toEqual([20000]);
  });

  it('reads an empty list, and refuses an entry without a port', () => {
    expect(listedPorts(list([]))).toEqual([]);
    expect(() => listedPorts('<p:PortMappingList><p:PortMappingEntry><p:NewProtocol>TCP</p:NewProtocol></p:PortMappingEntry></p:PortMappingList>')).toThrow(
      /NewExternalPort/,
    );
  });
});

describe('finding WANIPConnection in a description', () => {
  const description = (urlBase: string, services: string) =>
    `<?xml version="1.0"?><root xmlns="urn:schemas-upnp-org:device-1-0">${urlBase}<device><deviceList><device><deviceList><device><serviceList>${services}</serviceList></device></deviceList></device></deviceList></device></root>`;
  const service = (type: string, control: string) => `<service><serviceType>${type}</serviceType><controlURL>${control}</controlURL></service>`;

  it('takes the highest version, with the control URL relative to the description', () => {
    const xml = description(
      '',
      service('urn:schemas-upnp-org:service:WANIPConnection:1', '/v1') + service('urn:schemas-upnp-org:service:WANIPConnection:2', 'ctl/IPConn'),
    );
    const found = findWanIpConnection(xml, new URL('http://192.168.77.1:5000/desc/root.xml'));
    expect(found.serviceType).toBe('urn:schemas-upnp-org:service:WANIPConnection:2');
    expect(found.controlUrl.href).toBe('http://192.168.77.1:5000/desc/ctl/IPConn');
  });

  it('resolves against URLBase when there is one', () => {
    const xml = description('<URLBase>http://192.168.77.1:6000/</URLBase>', service('urn:schemas-upnp-org:service:WANIPConnection:1', '/ctl'));
    expect(findWanIpConnection(xml, new URL('http://192.168.77.1:5000/rootDesc.xml')).controlUrl.href).toBe('http://192.168.77.1:6000/ctl');
  });

  it('says so when there is no WANIPConnection (a PPP-only gateway, say)', () => {
    const xml = description('', service('urn:schemas-upnp-org:service:WANPPPConnection:1', '/ppp'));
    expect(() => findWanIpConnection(xml, new URL('http://h/d.xml'))).toThrow(/no WANIPConnection/);
  });
});
