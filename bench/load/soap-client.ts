import { XMLParser } from 'fast-xml-parser';
import type { HttpClient, HttpResponse } from './http-client.js';

/** A UPnP fault (HTTP 500 with a UPnPError) the daemon answered. */
export class SoapFault extends Error {
  constructor(
    readonly action: string,
    readonly code: number,
    description: string,
  ) {
    super(`${action}: UPnP error ${code} ${description}`);
    this.name = 'SoapFault';
  }
}

// Responses come from the daemons under test, which the harness trusts; entities are decoded so
// that an escaped NewPortListing comes out as the XML document it carries.
const parser = new XMLParser({
  ignoreAttributes: true,
  removeNSPrefix: true,
  parseTagValue: false,
  processEntities: true,
  ignoreDeclaration: true,
});

export function parseXml(text: string): unknown {
  return parser.parse(text);
}

/** Out arguments of an action response, by name, as strings. */
export type ActionOutput = Readonly<Record<string, string>>;

/** Calls actions of one service at its control URL, the way a UPnP control point does. */
export class SoapClient {
  constructor(
    readonly controlUrl: URL,
    readonly serviceType: string,
    private readonly http: HttpClient,
  ) {}

  async call(action: string, args: Readonly<Record<string, string | number>> = {}): Promise<ActionOutput> {
    return readSoapResponse(action, await this.post(action, args));
  }

  /**
   * Calls an action and checks only what a listing needs: a 200 response that holds `element`, or
   * a fault (its code read without parsing the document). Where one client's requests follow each
   * other, parsing every answer in full would add the generator's time to the daemon's.
   */
  async callExpecting(action: string, args: Readonly<Record<string, string | number>>, element: string): Promise<void> {
    const response = await this.post(action, args);
    if (response.status === 200 && response.body.includes(`<${element}>`)) return;
    const fault = response.status === 500 ? /<errorCode>\s*(\d+)\s*<\/errorCode>/.exec(response.body) : null;
    if (fault) throw new SoapFault(action, Number(fault[1]), '');
    throw new Error(`${action}: unexpected HTTP ${response.status} response without ${element}: ${response.body.slice(0, 300)}`);
  }

  private post(action: string, args: Readonly<Record<string, string | number>>): Promise<HttpResponse> {
    const body = soapEnvelope(this.serviceType, action, args);
    return this.http.request(this.controlUrl, {
      method: 'POST',
      headers: {
        'Content-Type': 'text/xml; charset="utf-8"',
        SOAPAction: `"${this.serviceType}#${action}"`,
      },
      body,
    });
  }
}

export function soapEnvelope(serviceType: string, action: string, args: Readonly<Record<string, string | number>>): string {
  const argumentXml = Object.entries(args)
    .map(([name, value]) => `<${name}>${escapeXml(String(value))}</${name}>`)
    .join('');
  return (
    '<?xml version="1.0"?>\r\n' +
    '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">' +
    `<s:Body><u:${action} xmlns:u="${serviceType}">${argumentXml}</u:${action}></s:Body></s:Envelope>`
  );
}

/** The out arguments of a 200 response; a SoapFault for a UPnP fault; an Error for anything else. */
export function readSoapResponse(action: string, response: HttpResponse): ActionOutput {
  const body = objectAt(parseXml(response.body), ['Envelope', 'Body']);
  if (response.status === 200) {
    const output = body?.[`${action}Response`];
    if (output === '') return {};
    if (isRecord(output)) return Object.fromEntries(Object.entries(output).map(([name, value]) => [name, String(value)]));
  } else if (response.status === 500) {
    const error = objectAt(body, ['Fault', 'detail', 'UPnPError']);
    if (error) throw new SoapFault(action, Number(error.errorCode), typeof error.errorDescription === 'string' ? error.errorDescription : '');
  }
  throw new Error(`${action}: unexpected HTTP ${response.status} response: ${response.body.slice(0, 300)}`);
}

export function objectAt(value: unknown, path: readonly string[]): Record<string, unknown> | undefined {
  let current = value;
  for (const name of path) {
    if (!isRecord(current)) return undefined;
    current = current[name];
  }
  return isRecord(current) ? current : undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
