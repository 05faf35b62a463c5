import { Agent, request } from 'node:http';
import { XMLParser } from 'fast-xml-parser';

/** Largest response the generator reads (a GetListOfPortMappings page of 1000 entries is ~400 KB). */
const MAX_RESPONSE_BYTES = 8 * 1024 * 1024;
const REQUEST_TIMEOUT_MS = 10_000;

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

export interface HttpResponse {
  readonly status: number;
  readonly body: string;
}

/** GET or POST over the given agent (keep-alive where the server allows it). */
export function httpRequest(
  url: URL,
  agent: Agent,
  options: { method: 'GET' | 'POST'; headers?: Record<string, string>; body?: string },
): Promise<HttpResponse> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: options.method, agent, headers: options.headers, timeout: REQUEST_TIMEOUT_MS }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_RESPONSE_BYTES) req.destroy(new Error(`${url}: response larger than ${MAX_RESPONSE_BYTES} bytes`));
        else chunks.push(chunk);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${url}: no response within ${REQUEST_TIMEOUT_MS} ms`)));
    req.on('error', reject);
    req.end(options.body);
  });
}

/** Out arguments of an action response, by name, as strings. */
export type ActionOutput = Readonly<Record<string, string>>;

/** Calls actions of one service at its control URL, the way a UPnP control point does. */
export class SoapClient {
  constructor(
    readonly controlUrl: URL,
    readonly serviceType: string,
    private readonly agent: Agent,
  ) {}

  async call(action: string, args: Readonly<Record<string, string | number>> = {}): Promise<ActionOutput> {
    const body = soapEnvelope(this.serviceType, action, args);
    const response = await httpRequest(this.controlUrl, this.agent, {
      method: 'POST',
      headers: {
        'Content-Type': 'text/xml; charset="utf-8"',
        SOAPAction: `"${this.serviceType}#${action}"`,
        'Content-Length': String(Buffer.byteLength(body)),
      },
      body,
    });
    return readSoapResponse(action, response);
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
    if (error) throw new SoapFault(action, Number(error.errorCode), String(error.errorDescription ?? ''));
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
