import { element, textElement, XML_DECLARATION } from '../description/xml.js';

/** Variable names are our own; checked anyway so that a bad name cannot break the document. */
const VARIABLE_NAME = /^[A-Za-z][\w.-]*$/;

/** Throws when a name could not be an element name or a value is not text: a bug in the caller. */
export function assertStateVariables(variables: Readonly<Record<string, string>>): void {
  for (const [name, value] of Object.entries(variables)) {
    if (!VARIABLE_NAME.test(name)) throw new TypeError(`not a state variable name: ${JSON.stringify(name)}`);
    if (typeof value !== 'string') throw new TypeError(`state variable ${name} must be a string`);
  }
}

/** The body of a NOTIFY (UDA 1.1 §4.3.2): one `e:property` per variable, values XML-escaped. */
export function propertySetXml(variables: Readonly<Record<string, string>>): string {
  assertStateVariables(variables);
  const properties = Object.entries(variables).map(([name, value]) => element('e:property', [textElement(name, value)]));
  return `${XML_DECLARATION}\n<e:propertyset xmlns:e="urn:schemas-upnp-org:event-1-0">${properties.join('')}</e:propertyset>\n`;
}
