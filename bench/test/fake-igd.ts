import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A minimal IGD on loopback for the load generator's tests: a description with WANIPConnection:1
 * and :2, and the actions the generator calls, over an in-memory table. `closeEachResponse` makes
 * it answer like miniupnpd (Connection: close).
 */
export class FakeIgd {
  readonly mappings = new Map<number, { client: string; description: string }>();
  readonly calls: string[] = [];
  /** Each request's `Connection` header (undefined when absent) and the number of the connection it came on. */
  readonly requests: Array<{ readonly connection: string | undefined; readonly socket: number }> = [];
  private connections = 0;
  private readonly socketNumbers = new WeakMap<object, number>();
  /** Each state-changing call (AddPortMapping, DeletePortMapping) in order: its port and source address. */
  readonly changes: Array<{ readonly action: string; readonly port: number; readonly from: string }> = [];
  private server: Server | undefined;

  constructor(private readonly options: { closeEachResponse?: boolean; externalAddress?: string; faultOn?: { action: string; code: number } } = {}) {}

  async start(port = 0): Promise<string> {
    this.server = createServer((req, res) => this.handle(req, res));
    this.server.on('connection', (socket) => this.socketNumbers.set(socket, ++this.connections));
    await new Promise<void>((resolve) => this.server!.listen(port, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/rootDesc.xml`;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    this.requests.push({ connection: req.headers.connection, socket: this.socketNumbers.get(req.socket) ?? 0 });
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      const headers: Record<string, string> = { 'Content-Type': 'text/xml; charset="utf-8"' };
      if (this.options.closeEachResponse) headers.Connection = 'close';
      if (req.method === 'GET' && req.url === '/rootDesc.xml') {
        send(res, 200, headers, DESCRIPTION);
        return;
      }
      const [serviceType, action] = String(req.headers.soapaction ?? '')
        .replace(/"/g, '')
        .split('#');
      this.calls.push(action!);
      const args = Object.fromEntries([...body.matchAll(/<(New\w+)>([^<]*)<\/\1>/g)].map((m): [string, string | undefined] => [m[1]!, m[2]]));
      if (action === 'AddPortMapping' || action === 'DeletePortMapping') {
        this.changes.push({ action, port: Number(args.NewExternalPort), from: req.socket.remoteAddress ?? '' });
      }
      const answer = this.act(action!, args);
      if ('fault' in answer) {
        send(
          res,
          500,
          headers,
          envelope(
            `<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail><UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>${answer.fault}</errorCode><errorDescription>fault</errorDescription></UPnPError></detail></s:Fault>`,
          ),
        );
        return;
      }
      const out = Object.entries(answer.out)
        .map(([name, value]) => `<${name}>${value}</${name}>`)
        .join('');
      send(res, 200, headers, envelope(`<u:${action}Response xmlns:u="${serviceType}">${out}</u:${action}Response>`));
    });
  }

  private act(action: string, args: Record<string, string | undefined>): { out: Record<string, string | number> } | { fault: number } {
    if (this.options.faultOn?.action === action) return { fault: this.options.faultOn.code };
    const port = Number(args.NewExternalPort);
    const sorted = [...this.mappings.keys()].sort((a, b) => a - b);
    switch (action) {
      case 'GetExternalIPAddress':
        return { out: { NewExternalIPAddress: this.options.externalAddress ?? '203.0.113.1' } };
      case 'AddPortMapping':
        this.mappings.set(port, { client: args.NewInternalClient!, description: args.NewPortMappingDescription! });
        return { out: {} };
      case 'DeletePortMapping':
        return this.mappings.delete(port) ? { out: {} } : { fault: 714 };
      case 'GetSpecificPortMappingEntry':
        return this.mappings.has(port) ? { out: { NewInternalPort: port } } : { fault: 714 };
      case 'GetGenericPortMappingEntry': {
        const found = sorted[Number(args.NewPortMappingIndex)];
        return found === undefined ? { fault: 713 } : { out: { NewExternalPort: found } };
      }
      case 'GetListOfPortMappings': {
        const listed = sorted.filter((p) => p >= Number(args.NewStartPort) && p <= Number(args.NewEndPort)).slice(0, Number(args.NewNumberOfPorts));
        if (listed.length === 0) return { fault: 730 };
        const entries = listed.map((p) => `<p:PortMappingEntry><p:NewExternalPort>${p}</p:NewExternalPort></p:PortMappingEntry>`).join('');
        const document = `<?xml version="1.0"?><p:PortMappingList xmlns:p="urn:schemas-upnp-org:gw:WANIPConnection">${entries}</p:PortMappingList>`;
        return { out: { NewPortListing: document.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;') } };
      }
      default:
        return { fault: 401 };
    }
  }
}

/** With a Content-Length, as both daemons answer (never chunked). */
function send(res: ServerResponse, status: number, headers: Record<string, string>, body: string): void {
  res.writeHead(status, { ...headers, 'Content-Length': String(Buffer.byteLength(body)) }).end(body);
}

function envelope(body: string): string {
  return `<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>${body}</s:Body></s:Envelope>`;
}

const DESCRIPTION = `<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0"><specVersion><major>1</major><minor>1</minor></specVersion>
<device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:2</deviceType>
<serviceList><service><serviceType>urn:schemas-upnp-org:service:Layer3Forwarding:1</serviceType><controlURL>/ctl/L3F</controlURL></service></serviceList>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:2</deviceType>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:2</deviceType>
<serviceList>
<service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType><controlURL>/ctl/v1</controlURL></service>
<service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:2</serviceType><controlURL>/ctl/IPConn</controlURL></service>
</serviceList></device></deviceList></device></deviceList></device></root>`;
