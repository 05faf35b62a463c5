import { MINIUPNPD_IPTABLES, legacyFirewallScript } from './miniupnpd-config.js';
import { resetLegacyTables } from './miniupnpd.js';
import { FLOOR_DESCRIPTION, SERVICE_TYPE, floorFault, soapEnvelope, startFloorProgram } from './node-floor.js';
import type { DaemonUnderTest, GatewaySetup, RunningDaemon } from './types.js';

/**
 * The x_tables floor: the least a daemon can do to add mappings one at a time under x_tables
 * when each is committed before it is answered. A bare `node:http` server answers AddPortMapping
 * by running one `iptables-legacy-restore --noflush` with the two rules a mapping needs behind a
 * forward policy that drops (a DNAT rule in nat, an ACCEPT rule in filter), appended to
 * miniupnpd's chains as Debian's iptables_init.sh lays them out: no comment, no check, no state.
 * x_tables replaces a whole table at each commit, so this is what the kernel and iptables charge
 * for the table sizes the add rows pass through; what a daemon spends above it is its own.
 */
export const xtablesFloor: DaemonUnderTest = {
  name: 'x_tables floor',
  persistence: { supported: false, reason: 'it keeps no state' },
  floor: 'adds',
  version: () =>
    Promise.resolve(`x_tables floor: Node.js ${process.version}, one iptables-legacy-restore --noflush per AddPortMapping (nat DNAT + filter ACCEPT)`),
  start: (gateway) => startFloor(gateway),
};

async function startFloor(gateway: GatewaySetup): Promise<RunningDaemon> {
  const { testbed, httpPort } = gateway;
  const address = testbed.addresses.gatewayLan;
  const interfaces = { lanInterface: testbed.lanInterface, wanInterface: testbed.wanInterface };
  await resetLegacyTables(testbed.gateway);
  await testbed.gateway.exec('iptables-legacy-restore', [], { input: legacyFirewallScript(interfaces, true) });
  const server = startFloorProgram(testbed.gateway, xtablesFloorProgram(address, httpPort, MINIUPNPD_IPTABLES.chain));
  return {
    pid: server.pid,
    descriptionUrl: `http://${address}:${httpPort}/rootDesc.xml`,
    diagnostics: () => `x_tables floor output:\n${server.output()}`,
    async stop() {
      const code = await server.stop('SIGTERM', 5_000);
      await resetLegacyTables(testbed.gateway);
      if (code !== 0) throw new Error(`the x_tables floor exited ${code}:\n${server.output()}`);
      return undefined;
    },
  };
}

/**
 * The floor's whole program. It reads the four arguments a rule needs with regular expressions
 * and checks only that they fit the rule's syntax; anything else is a 401 fault, a failed restore
 * a 501 fault with iptables' words.
 */
export function xtablesFloorProgram(address: string, port: number, chain: string): string {
  const added = soapEnvelope(`<u:AddPortMappingResponse xmlns:u="${SERVICE_TYPE}"></u:AddPortMappingResponse>`);
  const fault = (code: number) => floorFault(code, 'ERRORTEXT');
  return `
import { createServer } from 'node:http';
import { spawn } from 'node:child_process';
const description = ${JSON.stringify(FLOOR_DESCRIPTION)};
const added = ${JSON.stringify(added)};
const invalidAction = ${JSON.stringify(fault(401))};
const actionFailed = ${JSON.stringify(fault(501))};
const chain = ${JSON.stringify(chain)};
const escaped = (text) => text.replace(/[<&]/g, ' ');
const field = (body, name) => new RegExp('<' + name + '>([^<]*)</' + name + '>').exec(body)?.[1];
// A failed spawn may report both 'error' and 'close': the first answers.
const reply = (res, status, body) => {
  if (res.headersSent) return;
  res.writeHead(status, { 'Content-Type': 'text/xml; charset="utf-8"', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
};
const server = createServer((req, res) => {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    if (req.method === 'GET') return reply(res, 200, description);
    const body = Buffer.concat(chunks).toString();
    const externalPort = field(body, 'NewExternalPort');
    const internalPort = field(body, 'NewInternalPort');
    const client = field(body, 'NewInternalClient');
    const protocol = field(body, 'NewProtocol')?.toLowerCase();
    const ok =
      /#AddPortMapping"?$/.test(String(req.headers.soapaction)) &&
      /^\\d{1,5}$/.test(externalPort ?? '') && /^\\d{1,5}$/.test(internalPort ?? '') &&
      /^\\d{1,3}(\\.\\d{1,3}){3}$/.test(client ?? '') && (protocol === 'tcp' || protocol === 'udp');
    if (!ok) return reply(res, 500, invalidAction.replace('ERRORTEXT', 'Invalid Action'));
    const script =
      '*nat\\n-A ' + chain + ' -p ' + protocol + ' -m ' + protocol + ' --dport ' + externalPort + ' -j DNAT --to-destination ' + client + ':' + internalPort + '\\nCOMMIT\\n' +
      '*filter\\n-A ' + chain + ' -d ' + client + '/32 -p ' + protocol + ' -m ' + protocol + ' --dport ' + internalPort + ' -j ACCEPT\\nCOMMIT\\n';
    const restore = spawn('iptables-legacy-restore', ['-w', '10', '--noflush'], { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    restore.stderr.on('data', (chunk) => (stderr += chunk));
    restore.on('error', (err) => reply(res, 500, actionFailed.replace('ERRORTEXT', escaped(err.message))));
    restore.on('close', (code) => {
      if (code === 0) reply(res, 200, added);
      else reply(res, 500, actionFailed.replace('ERRORTEXT', escaped('iptables-legacy-restore exit ' + code + ': ' + stderr.trim())));
    });
    restore.stdin.end(script);
  });
});
server.listen(${port}, ${JSON.stringify(address)}, () => console.log('X_TABLES FLOOR READY'));
process.on('SIGTERM', () => process.exit(0));
`;
}
