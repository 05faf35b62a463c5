import type { PortMapping } from '../../mapping/types.js';
import { XML_DECLARATION, element, textElement } from '../description/xml.js';

/**
 * The PortMappingList document of GetListOfPortMappings (WANIPConnection:2, schema
 * WANIPConnection-v2.xsd). The caller embeds it, escaped once more, as the NewPortListing value.
 */
export function portMappingListXml(mappings: readonly PortMapping[], remainingSeconds: (m: PortMapping) => number): string {
  const entries = mappings.map((m) =>
    element('p:PortMappingEntry', [
      textElement('p:NewRemoteHost', m.remoteHost),
      textElement('p:NewExternalPort', m.externalPort),
      textElement('p:NewProtocol', m.protocol),
      textElement('p:NewInternalPort', m.internalPort),
      textElement('p:NewInternalClient', m.internalClient),
      textElement('p:NewEnabled', m.enabled ? 1 : 0),
      textElement('p:NewDescription', m.description),
      textElement('p:NewLeaseTime', remainingSeconds(m)),
    ]),
  );
  return (
    `${XML_DECLARATION}\n<p:PortMappingList xmlns:p="urn:schemas-upnp-org:gw:WANIPConnection" ` +
    `xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ` +
    `xsi:schemaLocation="urn:schemas-upnp-org:gw:WANIPConnection http://www.upnp.org/schemas/gw/WANIPConnection-v2.xsd">` +
    `${entries.join('')}</p:PortMappingList>`
  );
}
