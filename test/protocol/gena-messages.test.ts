import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { propertySetXml } from '../../core/upnp/gena/propertyset.js';
import { nextEventKey } from '../../core/upnp/gena/subscription.js';
import { propertySetVariables } from '../support/upnp-xml.js';

describe('propertySetXml', () => {
  it('has one e:property per variable in the event namespace', () => {
    expect(propertySetXml({ ConnectionStatus: 'Connected', PortMappingNumberOfEntries: '3' })).toBe(
      '<?xml version="1.0" encoding="utf-8"?>\n<e:propertyset xmlns:e="urn:schemas-upnp-org:event-1-0">' +
        '<e:property><ConnectionStatus>Connected</ConnectionStatus></e:property>' +
        '<e:property><PortMappingNumberOfEntries>3</PortMappingNumberOfEntries></e:property>' +
        '</e:propertyset>\n',
    );
  });

  it('escapes markup in values', () => {
    expect(propertySetXml({ V: `<a href="x">&'</a>` })).toContain('<V>&lt;a href=&quot;x&quot;&gt;&amp;&apos;&lt;/a&gt;</V>');
  });

  it('any value reads back unchanged', () => {
    // eslint-disable-next-line no-control-regex -- deliberately leaves out the control characters XML 1.0 cannot carry (and CR, which parsers turn into LF)
    const value = fc.string({ unit: 'grapheme' }).filter((s) => !/[\u0000-\u0008\u000b\u000c\u000e-\u001f\r]/.test(s));
    fc.assert(
      fc.property(value, (v) => {
        expect(propertySetVariables(propertySetXml({ ExternalIPAddress: v })).ExternalIPAddress ?? '').toBe(v);
      }),
    );
  });

  it.each(['a><b', '', '1st', '__proto__', 'e:property'])('refuses the name %j', (name) => {
    expect(() => propertySetXml({ [name]: 'x' })).toThrow(TypeError);
  });
});

describe('nextEventKey', () => {
  it.each([
    [0, 1],
    [1, 2],
    [4294967294, 4294967295],
    [4294967295, 1],
  ])('%d → %d', (key, next) => {
    expect(nextEventKey(key)).toBe(next);
  });
});
