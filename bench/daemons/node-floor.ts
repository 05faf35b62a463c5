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
 */
export function nodeFloor(externalAddress: string): DaemonUnderTest {
  return {
    name: 'node:http floor',
    persistence: { supported: false, reason: 'a constant answer, no mappings' },
    floor: 'constant answers',
    version: () => Promise.resolve(`node:http floor: Node.js ${process.version}, createServer() with default options`),
    start: (gateway) => Promise.resolve(startFloor(gateway, externalAddress)),
  };
}

function startFloor(gateway: GatewaySetup, externalAddress: string) {
  const { testbed, httpPort } = gateway;
  const address = testbed.addresses.gatewayLan;
  const server = startFloorProgram(testbed.gateway, floorProgram(address, httpPort, externalAddress));
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

/** The floor's whole program: what any HTTP server in Node does for a request, and no more. */
export function floorProgram(address: string, port: number, externalAddress: string): string {
  const description = FLOOR_DESCRIPTION;
  const answer = soapEnvelope(
    `<u:GetExternalIPAddressResponse xmlns:u="${SERVICE_TYPE}"><NewExternalIPAddress>${externalAddress}</NewExternalIPAddress></u:GetExternalIPAddressResponse>`,
  );
  return `
import { createServer } from 'node:http';
const description = ${JSON.stringify(description)};
const answer = ${JSON.stringify(answer)};
const server = createServer((req, res) => {
  const body = req.method === 'GET' ? description : answer;
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'Content-Type': 'text/xml; charset="utf-8"', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  });
});
server.listen(${port}, ${JSON.stringify(address)}, () => console.log('FLOOR READY'));
// An orderly exit, so that a --cpu-prof profile is written.
process.on('SIGTERM', () => process.exit(0));
`;
}
