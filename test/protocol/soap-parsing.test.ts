import { describe, expect, it } from 'vitest';
import { toUpnpFault } from '../../core/errors.js';
import { silentLogger } from '../../core/logger.js';
import { igdView } from '../../core/upnp/description/igd-views.js';
import { serviceAtVersion } from '../../core/upnp/description/service-model.js';
import { WAN_IP_CONNECTION } from '../../core/upnp/description/services.js';
import { decodeXmlText, escapeXml } from '../../core/upnp/description/xml.js';
import { readArguments } from '../../core/upnp/soap/arguments.js';
import { SoapControl } from '../../core/upnp/soap/control.js';
import { MalformedSoapError, parseSoapEnvelope, soapFault } from '../../core/upnp/soap/envelope.js';
import { parseSoapAction } from '../../core/upnp/soap/soap-action.js';

/** The pure pieces of SOAP control: SOAPACTION, envelope, argument conversion, entity handling. */

describe('parseSoapAction', () => {
  const WANIP1 = 'urn:schemas-upnp-org:service:WANIPConnection:1';
  it.each([
    [`"${WANIP1}#AddPortMapping"`, { kind: 'action', serviceName: 'WANIPConnection', version: 1, action: 'AddPortMapping' }],
    [`${WANIP1}#AddPortMapping`, { kind: 'action', serviceName: 'WANIPConnection', version: 1, action: 'AddPortMapping' }],
    [`'${WANIP1}#AddPortMapping'`, { kind: 'action', serviceName: 'WANIPConnection', version: 1, action: 'AddPortMapping' }],
    [
      `  "urn:schemas-upnp-org:service:WANIPConnection:2#GetListOfPortMappings" `,
      { kind: 'action', serviceName: 'WANIPConnection', version: 2, action: 'GetListOfPortMappings' },
    ],
    ['"urn:schemas-upnp-org:control-1-0#QueryStateVariable"', { kind: 'query-state-variable' }],
    ["'", undefined],
    ['"', undefined],
    ['""', undefined],
    [`"${WANIP1}#AddPortMapping'`, undefined],
    [`"${WANIP1}#Add"PortMapping"`, undefined],
    [`${WANIP1}`, undefined],
    [`${WANIP1}#`, undefined],
    ['urn:schemas-upnp-org:service:WANIPConnection:0#AddPortMapping', undefined],
    ['urn:schemas-upnp-org:service:WANIPConnection:1#Add PortMapping', undefined],
    ['urn:schemas-upnp-org:service:../../x:1#AddPortMapping', undefined],
    ['http://evil/#AddPortMapping', undefined],
  ])('%s', (header, expected) => {
    expect(parseSoapAction(header)).toEqual(expected);
  });
});

describe('decodeXmlText', () => {
  it.each([
    ['plain', 'plain'],
    ['a &amp; b', 'a & b'],
    ['&lt;&gt;&quot;&apos;', '<>"\''],
    ['&#65;&#x42;&#x263a;', 'AB☺'],
    ['raw & stays', 'raw & stays'],
    ['&unknown; stays', '&unknown; stays'],
    ['&#0; and &#x1; are not characters', '&#0; and &#x1; are not characters'],
    ['&#x110000; is out of range', '&#x110000; is out of range'],
    ['&amp;lt; decodes once', '&lt; decodes once'],
  ])('%s', (text, expected) => {
    expect(decodeXmlText(text)).toBe(expected);
  });

  it('is the inverse of escapeXml', () => {
    const text = `Tom & Jerry's <"quoted"> &amp; ]]>`;
    expect(decodeXmlText(escapeXml(text))).toBe(text);
  });
});

describe('parseSoapEnvelope', () => {
  const envelope = (body: string) =>
    `<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>${body}</s:Body></s:Envelope>`;

  it('reads the action and its arguments by local name, keeping values as strings', () => {
    expect(
      parseSoapEnvelope(envelope('<u:AddPortMapping xmlns:u="x"><NewExternalPort>08080</NewExternalPort><NewRemoteHost></NewRemoteHost></u:AddPortMapping>')),
    ).toEqual({
      action: 'AddPortMapping',
      args: { NewExternalPort: '08080', NewRemoteHost: '' },
    });
  });

  it('reads an action without arguments', () => {
    expect(parseSoapEnvelope(envelope('<u:GetStatusInfo xmlns:u="x"/>'))).toEqual({ action: 'GetStatusInfo', args: {} });
  });

  it('ignores a SOAP Header', () => {
    const xml = envelope('<u:GetStatusInfo xmlns:u="x"></u:GetStatusInfo>').replace('<s:Body>', '<s:Header><x>1</x></s:Header><s:Body>');
    expect(parseSoapEnvelope(xml).action).toBe('GetStatusInfo');
  });

  it.each([
    ['a DOCTYPE', `<!DOCTYPE x>${envelope('<u:A/>')}`],
    ['an ENTITY declaration', envelope('<u:A/>').replace('<s:Body>', '<!ENTITY x "y"><s:Body>')],
    ['nesting deeper than 8', envelope(`<u:A>${'<b>'.repeat(8)}${'</b>'.repeat(8)}</u:A>`)],
    ['no envelope', '<u:A/>'],
    ['an empty body', envelope('')],
    ['text in the body', envelope('just text')],
    ['a reserved element name', envelope('<u:A><constructor>1</constructor></u:A>')],
  ])('refuses %s', (_, xml) => {
    expect(() => parseSoapEnvelope(xml)).toThrow(MalformedSoapError);
  });
});

describe('readArguments', () => {
  const v2 = serviceAtVersion(WAN_IP_CONNECTION, 2);
  const action = v2.actions.find((a) => a.name === 'GetListOfPortMappings')!;
  const valid = { NewStartPort: '1', NewEndPort: '65535', NewProtocol: 'TCP', NewManage: 'true', NewNumberOfPorts: ' 10 ' };

  it('converts by the data type of the related state variable', () => {
    const args = readArguments(v2, action, valid);
    expect([
      args.number('NewStartPort'),
      args.number('NewEndPort'),
      args.string('NewProtocol'),
      args.boolean('NewManage'),
      args.number('NewNumberOfPorts'),
    ]).toEqual([1, 65535, 'TCP', true, 10]);
  });

  it.each([
    ['a missing argument', { ...valid, NewManage: undefined }],
    ['a ui2 above 65535', { ...valid, NewEndPort: '65536' }],
    ['a negative number', { ...valid, NewStartPort: '-1' }],
    ['a decimal', { ...valid, NewStartPort: '1.5' }],
    ['hex', { ...valid, NewStartPort: '0x10' }],
    ['an empty number', { ...valid, NewStartPort: '' }],
    ['a bad boolean', { ...valid, NewManage: 'perhaps' }],
    ['an argument given twice', { ...valid, NewStartPort: ['1', '2'] }],
    ['an argument with child elements', { ...valid, NewProtocol: { x: 'TCP' } }],
  ])('answers 402 for %s', (_, raw) => {
    const defined = Object.fromEntries(Object.entries(raw).filter(([, v]) => v !== undefined));
    let code: number | undefined;
    try {
      readArguments(v2, action, defined);
    } catch (err) {
      code = toUpnpFault(err).upnpCode;
    }
    expect(code).toBe(402);
  });
});

describe('SoapControl', () => {
  it('refuses to start when a listed action has no handler', () => {
    const view = igdView(2);
    expect(() => new SoapControl([{ endpoint: view.wanIpConnection, handlers: {}, variables: () => ({}) }], silentLogger)).toThrow(
      /no handler for SetConnectionType/,
    );
  });

  it('writes faults with code and description', () => {
    expect(soapFault({ upnpCode: 718, description: 'ConflictInMappingEntry' })).toContain(
      '<detail><UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>718</errorCode><errorDescription>ConflictInMappingEntry</errorDescription></UPnPError></detail>',
    );
  });
});
