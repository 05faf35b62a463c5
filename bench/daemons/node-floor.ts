import { NamespaceProcess } from '../../test/netns/namespace-process.js';
import type { TestNamespace } from '../../test/netns/netns.js';
import type { DaemonUnderTest, GatewaySetup } from './types.js';
import { DAEMON_ENTRY, shebangOf } from './upnpd.js';

const CONTROL_PATH = '/ctl/IPConn';
export const SERVICE_TYPE = 'urn:schemas-upnp-org:service:WANIPConnection:1';

/**
 * Node's own floor: a bare `node:http` server (default options, nothing else loaded) answering
 * a constant description and a constant GetExternalIPAddress response, run with upnpd's Node and
 * shebang flags on the same gateway, address and port, driven by the same generator. What upnpd
 * spends per request above it is upnpd's; what it costs is what Node's HTTP server costs.
 * For the walks it answers GetGenericPortMappingEntry too: entry i (read from the request body
 * with one regular expression, formatted into a constant) for i below `entries`, fault 713 from
 * there, as if it held that many mappings.
 */
export function nodeFloor(externalAddress: string, entries: number): DaemonUnderTest {
  return {
    name: 'node:http floor',
    persistence: { supported: false, reason: 'a constant answer, no mappings' },
    floor: 'constant answers',
    version: () => Promise.resolve(`node:http floor: Node.js ${process.version}, createServer() with default options`),
    start: (gateway) => Promise.resolve(startFloor(gateway, externalAddress, entries)),
  };
}

function startFloor(gateway: GatewaySetup, externalAddress: string, entries: number) {
  const { testbed, httpPort } = gateway;
  const address = testbed.addresses.gatewayLan;
  const server = startFloorProgram(testbed.gateway, floorProgram(address, httpPort, externalAddress, { entries, client: testbed.addresses.lanClient }));
  return {
    pid: server.pid,
    descriptionUrl: `http://${address}:${httpPort}/rootDesc.xml`,
    diagnostics: () => `node:http floor output:\n${server.output()}`,
    async stop() {
      const code = await server.stop('SIGTERM', 5_000);
      if (code !== 0) throw new Error(`the node:http floor exited ${code}:\n${server.output()}`);
      return undefined;
    },
  };
}

/** A floor's `node -e` program in `namespace`, run with the Node and shebang flags of upnpd's. */
export function startFloorProgram(namespace: TestNamespace, program: string): NamespaceProcess {
  const shebang = shebangOf(DAEMON_ENTRY);
  return NamespaceProcess.start(namespace, [
    'env',
    ...shebang.variables,
    process.execPath,
    ...shebang.nodeFlags,
    // Profiled alike when upnpd is (bench/README.md, "Profiling").
    ...(process.env.BENCH_UPNPD_NODE_FLAGS?.split(/\s+/).filter(Boolean) ?? []),
    '--input-type=module',
    '-e',
    program,
  ]);
}

/** The least description a control point finds the WANIPConnection service in (the floors' own). */
export const FLOOR_DESCRIPTION =
  '<?xml version="1.0"?><root xmlns="urn:schemas-upnp-org:device-1-0"><device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType>' +
  `<serviceList><service><serviceType>${SERVICE_TYPE}</serviceType><controlURL>${CONTROL_PATH}</controlURL></service></serviceList></device></root>`;

/** A SOAP response around `body` (an action's response element, or a fault). */
export function soapEnvelope(body: string): string {
  return (
    '<?xml version="1.0"?>\r\n<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>' +
    `${body}</s:Body></s:Envelope>`
  );
}

/** A UPnP fault's response body (the floors'). */
export function floorFault(code: number, description: string): string {
  return soapEnvelope(
    '<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail>' +
      `<UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>${code}</errorCode><errorDescription>${description}</errorDescription></UPnPError></detail></s:Fault>`,
  );
}

/** What the floor answers GetGenericPortMappingEntry with: entries 0 to `entries` - 1, TCP, port 20000 + i to `client`. */
export interface FloorEntries {
  readonly entries: number;
  readonly client: string;
}

/** The floor's whole program: what any HTTP server in Node does for a request, and no more. */
export function floorProgram(address: string, port: number, externalAddress: string, table: FloorEntries): string {
  const description = FLOOR_DESCRIPTION;
  const answer = soapEnvelope(
    `<u:GetExternalIPAddressResponse xmlns:u="${SERVICE_TYPE}"><NewExternalIPAddress>${externalAddress}</NewExternalIPAddress></u:GetExternalIPAddressResponse>`,
  );
  // Split where the port goes: the entry is these parts joined around it.
  const entry = soapEnvelope(
    `<u:GetGenericPortMappingEntryResponse xmlns:u="${SERVICE_TYPE}"><NewRemoteHost></NewRemoteHost><NewExternalPort>PORT</NewExternalPort>` +
      `<NewProtocol>TCP</NewProtocol><NewInternalPort>PORT</NewInternalPort><NewInternalClient>${table.client}</NewInternalClient><NewEnabled>1</NewEnabled>` +
      '<NewPortMappingDescription>floor</NewPortMappingDescription><NewLeaseDuration>0</NewLeaseDuration></u:GetGenericPortMappingEntryResponse>',
  ).split('PORT');
  const noSuchEntry = floorFault(713, 'SpecifiedArrayIndexInvalid');
  return `
import { createServer } from 'node:http';
const description = ${JSON.stringify(description)};
const answer = ${JSON.stringify(answer)};
const entry = ${JSON.stringify(entry)};
const noSuchEntry = ${JSON.stringify(noSuchEntry)};
const INDEX = /<NewPortMappingIndex>\\s*(\\d+)\\s*</;
const send = (res, status, body) => {
  res.writeHead(status, { 'Content-Type': 'text/xml; charset="utf-8"', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
};
// The raw header values, not req.headers: Node builds that object on first use, which the
// GetExternalIPAddress rows would then pay for.
const asksForEntry = (req) => {
  for (let i = 1; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i].includes('#GetGenericPortMappingEntry')) return true;
  return false;
};
const server = createServer((req, res) => {
  if (req.method === 'POST' && asksForEntry(req)) {
    let request = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => (request += chunk));
    req.on('end', () => {
      const index = Number(INDEX.exec(request)?.[1] ?? -1);
      if (index >= 0 && index < ${table.entries}) send(res, 200, entry.join(String(20000 + index)));
      else send(res, 500, noSuchEntry);
    });
    return;
  }
  const body = req.method === 'GET' ? description : answer;
  req.resume();
  req.on('end', () => send(res, 200, body));
});
server.listen(${port}, ${JSON.stringify(address)}, () => console.log('FLOOR READY'));
// An orderly exit, so that a --cpu-prof profile is written.
process.on('SIGTERM', () => process.exit(0));
`;
}
