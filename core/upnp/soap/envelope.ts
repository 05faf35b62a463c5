import { XMLParser } from 'fast-xml-parser';
import type { UpnpFault } from '../../errors.js';
import { XML_DECLARATION, cdataElement, escapeXml, textElement } from '../description/xml.js';

/** A control request body we refuse to read (answered with HTTP 400, not a UPnP fault). */
export class MalformedSoapError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MalformedSoapError';
  }
}

export interface SoapCall {
  /** Local name of the action element in the SOAP body. */
  readonly action: string;
  /** The action element's children by local name, as the parser gave them (strings when well-formed). */
  readonly args: Readonly<Record<string, unknown>>;
}

/** Envelope → Body → action → argument, plus a little room for a SOAP Header. */
const MAX_XML_DEPTH = 8;

const parser = new XMLParser({
  // No entity expansion at all (billion laughs and friends); the five predefined entities and
  // character references are decoded per value by decodeXmlText.
  processEntities: false,
  htmlEntities: false,
  // Keep every value a string: "08080" must not become 8080 before we validate it.
  parseTagValue: false,
  ignoreAttributes: true,
  removeNSPrefix: true,
  ignoreDeclaration: true,
  ignorePiTags: true,
  maxNestedTags: MAX_XML_DEPTH,
  // No callback reads the path: do not build its string for every element.
  jPath: false,
});

/** Reads the action call out of a SOAP envelope. Throws MalformedSoapError for anything unexpected. */
export function parseSoapEnvelope(body: string): SoapCall {
  // A DTD is never needed in SOAP 1.1 and is where entity attacks live.
  if (/<!DOCTYPE|<!ENTITY/i.test(body)) throw new MalformedSoapError('DTDs are not accepted');
  return plainSoapEnvelope(body) ?? parsedSoapEnvelope(body);
}

// The plain envelope every control point sends: an optional XML declaration, Envelope, Body, one
// action element holding argument elements of text (no comment, CDATA, PI, Header or nesting).
// Names with an optional prefix; attributes only as name="value" or name='value'.
const NAME = String.raw`(?:[A-Za-z_][\w.-]*:)?([A-Za-z_][\w.-]*)`;
const ATTRIBUTES = String.raw`(?:\s+[^\s=<>/"']+\s*=\s*(?:"[^"<]*"|'[^'<]*'))*\s*`;
const PLAIN_ENVELOPE = new RegExp(
  String.raw`^\s*(?:<\?xml${ATTRIBUTES}\?>\s*)?<(${NAME})${ATTRIBUTES}>\s*<(${NAME})${ATTRIBUTES}>\s*<(${NAME})${ATTRIBUTES}(?:/>|>([^<]*(?:<(?:[A-Za-z_][\w.-]*:)?[A-Za-z_][\w.-]*${ATTRIBUTES}(?:/>|>[^<]*</[^<>]+>)[^<]*)*)</\5\s*>)\s*</\3\s*>\s*</\1\s*>\s*$`,
);
const RESERVED_NAME = /__proto__|constructor|prototype/;
const PLAIN_ARGUMENT = new RegExp(String.raw`<(${NAME})${ATTRIBUTES}(?:/>|>([^<]*)</([^<>]+)>)`, 'g');

/**
 * The call in a plain envelope (PLAIN_ENVELOPE), read without building a document: what the XML
 * parser gives for it, at a fraction of its cost on each request. Undefined for anything else,
 * which the parser then reads (and refuses if it must): this never refuses.
 */
export function plainSoapEnvelope(body: string): SoapCall | undefined {
  // Names the parser refuses (they would reach an object's prototype): its to refuse.
  if (RESERVED_NAME.test(body)) return undefined;
  const envelope = PLAIN_ENVELOPE.exec(body);
  if (!envelope || envelope[2] !== 'Envelope' || envelope[4] !== 'Body') return undefined;
  const action = envelope[6]!;
  const content = envelope[7];
  // The parser renames names that objects inherit (toString → __toString): its to read.
  if (action in Object.prototype) return undefined;
  if (content === undefined || content.trim() === '') return { action, args: {} };
  // As the parser gives them: no prototype.
  const args = Object.create(null) as Record<string, string>;
  let end = 0;
  for (const argument of content.matchAll(PLAIN_ARGUMENT)) {
    const [whole, qualified, name, text = '', closing] = argument;
    if (content.slice(end, argument.index).trim() !== '') return undefined;
    end = argument.index + whole.length;
    // A repeated name is a list to the parser; a mismatched end tag is its to refuse.
    if ((closing !== undefined && closing.trim() !== qualified) || Object.hasOwn(args, name!) || name! in Object.prototype) return undefined;
    args[name!] = text.trim();
  }
  return content.slice(end).trim() === '' ? { action, args } : undefined;
}

/** The call read by the XML parser (any well-formed envelope); exported for the tests that hold the plain reading to it. */
export function parsedSoapEnvelope(body: string): SoapCall {
  let document: unknown;
  try {
    document = parser.parse(body);
  } catch (err) {
    throw new MalformedSoapError(`not well-formed XML: ${(err as Error).message}`);
  }
  const envelope = childObject(document, 'Envelope');
  const soapBody = envelope && childObject(envelope, 'Body');
  if (!soapBody) throw new MalformedSoapError('no SOAP Envelope/Body');
  const names = Object.keys(soapBody);
  if (names.length !== 1) throw new MalformedSoapError(`the SOAP Body must hold one action element, not ${names.length}`);
  const action = names[0]!;
  const content = soapBody[action];
  if (content === '') return { action, args: {} };
  if (!isPlainObject(content)) throw new MalformedSoapError('the action element must hold argument elements');
  return { action, args: content };
}

function childObject(value: unknown, name: string): Record<string, unknown> | undefined {
  if (!isPlainObject(value) || !Object.hasOwn(value, name)) return undefined;
  const child = value[name];
  return isPlainObject(child) ? child : undefined;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const ENVELOPE_START = '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>';
const ENVELOPE_END = '</s:Body></s:Envelope>';

export interface OutputValue {
  readonly name: string;
  readonly value: string;
  /** The value is an XML document (sent as CDATA). */
  readonly xmlDocument?: boolean;
}

/** A successful action response; `serviceType` is the one the caller used (its version echoed). */
export function soapResponse(serviceType: string, action: string, values: readonly OutputValue[]): string {
  const args = values.map((v) => (v.xmlDocument ? cdataElement(v.name, v.value) : textElement(v.name, v.value))).join('');
  return `${XML_DECLARATION}\n${ENVELOPE_START}<u:${action}Response xmlns:u="${escapeXml(serviceType)}">${args}</u:${action}Response>${ENVELOPE_END}\n`;
}

/** A UPnP fault (UDA 1.1 §3.2.2): sent with HTTP 500. */
export function soapFault(fault: UpnpFault): string {
  return (
    `${XML_DECLARATION}\n${ENVELOPE_START}<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring>` +
    `<detail><UPnPError xmlns="urn:schemas-upnp-org:control-1-0">${textElement('errorCode', fault.upnpCode)}` +
    `${textElement('errorDescription', fault.description)}</UPnPError></detail></s:Fault>${ENVELOPE_END}\n`
  );
}
