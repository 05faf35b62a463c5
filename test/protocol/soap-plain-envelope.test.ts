import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseSoapEnvelope, parsedSoapEnvelope, plainSoapEnvelope } from '../../core/upnp/soap/envelope.js';

/**
 * The plain reading of an envelope (no document built) must give exactly what the XML parser
 * gives, or step aside: it is an optimisation, never a second opinion.
 */

const WANIP1 = 'urn:schemas-upnp-org:service:WANIPConnection:1';
const envelopeOf = (action: string, args: string, prefix = 's') =>
  `<?xml version="1.0"?>\r\n<${prefix}:Envelope xmlns:${prefix}="http://schemas.xmlsoap.org/soap/envelope/" ${prefix}:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">` +
  `<${prefix}:Body><u:${action} xmlns:u="${WANIP1}">${args}</u:${action}></${prefix}:Body></${prefix}:Envelope>\r\n`;

describe('the plain envelope reading', () => {
  it.each([
    ['miniupnpc', envelopeOf('GetExternalIPAddress', '')],
    [
      'miniupnpc AddPortMapping',
      envelopeOf(
        'AddPortMapping',
        '<NewRemoteHost></NewRemoteHost><NewExternalPort>40000</NewExternalPort><NewProtocol>TCP</NewProtocol><NewInternalPort>40000</NewInternalPort>' +
          '<NewInternalClient>192.168.77.100</NewInternalClient><NewEnabled>1</NewEnabled><NewPortMappingDescription>libminiupnpc &amp; co</NewPortMappingDescription><NewLeaseDuration>0</NewLeaseDuration>',
      ),
    ],
    ['self-closing arguments and SOAP-ENV prefix', envelopeOf('DeletePortMapping', '<NewRemoteHost/>\n  <NewExternalPort>1</NewExternalPort>\n', 'SOAP-ENV')],
    ['an empty self-closing action', '<?xml version="1.0"?><s:Envelope xmlns:s="x"><s:Body><u:GetExternalIPAddress xmlns:u="y"/></s:Body></s:Envelope>'],
    [
      'no declaration, no prefixes',
      '<Envelope><Body><GetGenericPortMappingEntry><NewPortMappingIndex> 7 </NewPortMappingIndex></GetGenericPortMappingEntry></Body></Envelope>',
    ],
  ])('reads what a control point sends (%s) as the XML parser does', (_name, body) => {
    const plain = plainSoapEnvelope(body);
    expect(plain).toBeDefined();
    expect(plain).toEqual(parsedSoapEnvelope(body));
  });

  it.each([
    ['a comment', envelopeOf('AddPortMapping', '<!-- x --><NewProtocol>TCP</NewProtocol>')],
    ['CDATA', envelopeOf('AddPortMapping', '<NewPortMappingDescription><![CDATA[a<b]]></NewPortMappingDescription>')],
    ['a repeated argument', envelopeOf('AddPortMapping', '<NewProtocol>TCP</NewProtocol><NewProtocol>UDP</NewProtocol>')],
    ['a nested argument', envelopeOf('AddPortMapping', '<NewProtocol><x>TCP</x></NewProtocol>')],
    ['a mismatched end tag', envelopeOf('AddPortMapping', '<NewProtocol>TCP</NewProtocl>')],
    ['a SOAP Header', '<s:Envelope xmlns:s="x"><s:Header/><s:Body><u:A xmlns:u="y"/></s:Body></s:Envelope>'],
    ['two actions', '<s:Envelope xmlns:s="x"><s:Body><u:A xmlns:u="y"/><u:B xmlns:u="y"/></s:Body></s:Envelope>'],
    ['text beside the arguments', envelopeOf('AddPortMapping', 'junk<NewProtocol>TCP</NewProtocol>')],
    ['another root', '<s:Evelope xmlns:s="x"><s:Body><u:A xmlns:u="y"/></s:Body></s:Evelope>'],
    ['a reserved name', envelopeOf('AddPortMapping', '<__proto__>1</__proto__>')],
  ])('leaves anything else (%s) to the XML parser', (_name, body) => {
    expect(plainSoapEnvelope(body)).toBeUndefined();
  });

  it('still refuses through the parser what the parser refuses', () => {
    expect(() => parseSoapEnvelope('<s:Envelope><s:Body><u:A>x</u:A><u:B/></s:Body></s:Envelope>')).toThrow(/one action element/);
    expect(() => parseSoapEnvelope('<s:Envelope><s:Bod><u:A/></s:Bod></s:Envelope>')).toThrow(/Envelope\/Body/);
    expect(() => parseSoapEnvelope(`<!DOCTYPE x [<!ENTITY a "b">]>${envelopeOf('A', '')}`)).toThrow(/DTD/);
  });

  const name = fc.oneof(
    { weight: 9, arbitrary: fc.stringMatching(/^[A-Za-z_][\w.-]{0,6}$/) },
    fc.constantFrom('constructor', '__proto__', 'prototype', 'toString', 'Body'),
  );
  const prefix = fc.option(name, { nil: undefined });
  const space = fc.constantFrom('', ' ', '\n', '\r\n\t ');
  const attribute = fc.tuple(name, fc.constantFrom('"', "'"), fc.string({ maxLength: 6 })).map(([n, q, v]) => ` ${n}=${q}${v.replace(/[<"']/g, '')}${q}`);
  const attributes = fc.array(attribute, { maxLength: 2 }).map((a) => a.join(''));
  const text = fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom('&amp;', ' 8080 ', '&#60;', 'a > b', '', 'ünï'));
  const qualified = (p: string | undefined, n: string) => (p ? `${p}:${n}` : n);
  const argument = fc
    .tuple(prefix, name, attributes, text, fc.boolean(), space)
    .map(([p, n, a, t, selfClosing, s]) => `${s}<${qualified(p, n)}${a}${selfClosing ? '/>' : `>${t}</${qualified(p, n)}>`}`);
  const envelope = fc
    .tuple(fc.boolean(), prefix, prefix, name, attributes, fc.array(argument, { maxLength: 5 }), space, fc.boolean())
    .map(
      ([declaration, envPrefix, actionPrefix, action, a, args, s, emptySelfClosing]) =>
        `${declaration ? '<?xml version="1.0"?>' : ''}${s}<${qualified(envPrefix, 'Envelope')}${a}>${s}<${qualified(envPrefix, 'Body')}>${s}` +
        (emptySelfClosing && args.length === 0
          ? `<${qualified(actionPrefix, action)}${a}/>`
          : `<${qualified(actionPrefix, action)}${a}>${args.join('')}${s}</${qualified(actionPrefix, action)}>`) +
        `${s}</${qualified(envPrefix, 'Body')}>${s}</${qualified(envPrefix, 'Envelope')}>${s}`,
    );

  it('gives what the XML parser gives, whenever it reads an envelope (generated envelopes)', () => {
    let read = 0;
    fc.assert(
      fc.property(envelope, (body) => {
        const plain = plainSoapEnvelope(body);
        if (plain === undefined) return;
        read += 1;
        expect(plain).toEqual(parsedSoapEnvelope(body));
      }),
      { numRuns: 2000 },
    );
    // Many generated envelopes are plain ones: the property is not vacuous.
    expect(read).toBeGreaterThan(600);
  });

  it('never accepts what the XML parser refuses, and steps aside rather than guess (mutated envelopes)', () => {
    const mutated = fc.tuple(envelope, fc.nat(), fc.constantFrom('<', '>', '/', '"', '&', '=', 'x', ' ', '<!--', ']]>', '<a>')).map(([body, at, insert]) => {
      const i = at % (body.length + 1);
      return body.slice(0, i) + insert + body.slice(i);
    });
    fc.assert(
      fc.property(mutated, (body) => {
        const plain = plainSoapEnvelope(body);
        if (plain === undefined) return;
        expect(plain).toEqual(parsedSoapEnvelope(body));
      }),
      { numRuns: 3000 },
    );
  });

  it('takes linear time on hostile bodies of the largest size the server accepts', () => {
    const hostile = [
      `<s:Envelope><s:Body><u:A>${'<a x="1"'.repeat(2000)}`,
      `<s:Envelope><s:Body><u:A>${'<a>b</a>'.repeat(2000)}<`,
      `<s:Envelope${' '.repeat(16_000)}`,
      `<s:Envelope><s:Body><u:A${' a="b"'.repeat(2600)}`,
      `<?xml${' a="b"'.repeat(2600)}`,
    ];
    for (const body of hostile) {
      const start = performance.now();
      plainSoapEnvelope(body);
      // Far below a millisecond when linear; a backtracking blow-up would take seconds.
      expect(performance.now() - start).toBeLessThan(200);
    }
  });
});
