import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeNetns, TestNamespace } from './netns.js';

// Two namespaces joined by a veth pair: the gateway runs the advertiser for its LAN address
// 192.168.77.1/24; the client has 192.168.77.2/24. Both also carry an address of 10.99.0.0/24,
// a subnet that is on the wire but not upnpd's LAN: requests from it must get nothing, although
// the gateway could route an answer there. The gateway's default route is on a WAN interface
// (another veth pair): without the multicast interface set, NOTIFYs would leave there.
const LAN = { gateway: '192.168.77.1', client: '192.168.77.2' };
const FOREIGN = { gateway: '10.99.0.1', client: '10.99.0.2' };
const GROUP = '239.255.255.250';
const PORT = 1900;
const UDNS = {
  gateway: 'uuid:11111111-1111-5111-8111-111111111111',
  wan: 'uuid:22222222-2222-5222-8222-222222222222',
  wanConnection: 'uuid:33333333-3333-5333-8333-333333333333',
};
const IGD = 'urn:schemas-upnp-org:device:InternetGatewayDevice';
const WAN_IP = 'urn:schemas-upnp-org:service:WANIPConnection';
const LOCATION = `http://${LAN.gateway}:5000/rootDesc.xml`;
/** Where answers to searches for IGD:1 types point: the IGD:1 view. */
const LOCATION_IGD1 = `http://${LAN.gateway}:5000/rootDesc1.xml`;
const REPO = fileURLToPath(new URL('../..', import.meta.url));
const ADVERTISER = fileURLToPath(new URL('../../core/upnp/ssdp/advertiser.ts', import.meta.url));

/** Runs the advertiser until SIGTERM (or 60 s), printing `started` and `stopped`. argv: notify interval (s). */
const GATEWAY_SCRIPT = `
import { SsdpAdvertiser } from ${JSON.stringify(ADVERTISER)};
const noop = () => {};
const logger = { fatal: noop, error: console.error, warn: console.error, info: noop, debug: noop, trace: noop, child: () => logger };
const advertiser = new SsdpAdvertiser({
  interfaces: [{ interface: 'vgw', address: ${JSON.stringify(LAN.gateway)}, prefixLength: 24 }],
  location: (lan, igdVersion) => \`http://\${lan.address}:5000/rootDesc\${igdVersion ?? ''}.xml\`,
  udns: ${JSON.stringify(UDNS)},
  igdVersion: 2, bootId: 5, configId: 9, notifyIntervalSeconds: Number(process.argv[2]),
  serverString: 'Linux/6.1 UPnP/1.1 upnpd/0.1.0',
  logger,
});
const deadline = setTimeout(() => process.exit(2), 60_000);
process.once('SIGTERM', async () => {
  await advertiser.stop();
  console.log('stopped');
  clearTimeout(deadline);
  process.exit(0);
});
await advertiser.start();
console.log('started');
`;

/**
 * The client side, plain dgram. `listen`: joins the group on an address and prints every NOTIFY as
 * a JSON line until SIGTERM or maxMs. `search`: sends datagrams from an address (multicast ones
 * out of that address's interface, TTL 2) and prints the answers received within waitMs.
 */
const CLIENT_SCRIPT = `
import { createSocket } from 'node:dgram';
const job = JSON.parse(process.argv[2]);
const socket = createSocket({ type: 'udp4', reuseAddr: true });
const started = performance.now();
if (job.mode === 'listen') {
  socket.on('message', (msg, peer) => {
    const text = msg.toString('latin1');
    if (text.startsWith('NOTIFY ')) console.log(JSON.stringify({ from: peer.address + ':' + peer.port, text, at: performance.now() }));
  });
  socket.bind({ address: ${JSON.stringify(GROUP)}, port: job.port }, () => {
    socket.addMembership(${JSON.stringify(GROUP)}, job.bind);
    console.log('ready');
  });
  const stop = () => socket.close(() => process.exit(0));
  process.once('SIGTERM', stop);
  setTimeout(stop, job.maxMs);
} else {
  const replies = [];
  socket.on('message', (msg, peer) => replies.push({ from: peer.address + ':' + peer.port, text: msg.toString('latin1'), ms: performance.now() - started }));
  socket.bind({ address: job.bind, port: 0 }, () => {
    socket.setMulticastInterface(job.bind);
    socket.setMulticastTTL(2);
    for (const d of job.datagrams) socket.send(d.text, job.port, d.to);
    setTimeout(() => socket.close(() => console.log(JSON.stringify(replies))), job.waitMs);
  });
}
`;

interface Reply {
  readonly from: string;
  readonly text: string;
  readonly ms: number;
}

interface Notify {
  readonly from: string;
  readonly text: string;
  /** Arrival, in ms on the listener's clock. */
  readonly at: number;
}

/** A long-running process inside a namespace whose stdout lines the test can wait for. */
class NamespaceProcess {
  readonly lines: string[] = [];
  readonly stderr: string[] = [];
  private readonly child: ChildProcess;
  private readonly exited: Promise<number | null>;
  private exitCode: number | null | undefined;

  constructor(ns: TestNamespace, args: readonly string[]) {
    this.child = spawn('ip', ['netns', 'exec', ns.name, process.execPath, ...args], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    createInterface({ input: this.child.stdout! }).on('line', (line) => this.lines.push(line));
    createInterface({ input: this.child.stderr! }).on('line', (line) => this.stderr.push(line));
    this.exited = new Promise((resolve) =>
      this.child.once('exit', (code) => {
        this.exitCode = code;
        resolve(code);
      }),
    );
  }

  async waitForLine(wanted: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.lines.includes(wanted)) {
      if (this.exitCode !== undefined || Date.now() > deadline) {
        throw new Error(`no "${wanted}" (exit code ${this.exitCode}); stderr: ${this.stderr.join('\n')}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** SIGTERM, then the exit code (SIGKILL after timeoutMs). */
  async terminate(timeoutMs = 10_000): Promise<number | null> {
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }
}

function mSearch(st: string, mx?: number): string {
  const mxLine = mx === undefined ? [] : [`MX: ${mx}`];
  return ['M-SEARCH * HTTP/1.1', `HOST: ${GROUP}:${PORT}`, 'MAN: "ssdp:discover"', `ST: ${st}`, ...mxLine, '', ''].join('\r\n');
}

function header(text: string, name: string): string | undefined {
  const line = text.split('\r\n').find((l) => l.toUpperCase().startsWith(`${name.toUpperCase()}:`));
  return line?.slice(name.length + 1).trim();
}

describeNetns('SSDP between two namespaces', ['ip', 'nft', 'upnpc'], () => {
  let gatewayNs: TestNamespace | undefined;
  let clientNs: TestNamespace | undefined;
  let scripts: string | undefined;
  let gatewayScript: string;
  let clientScript: string;
  let listener: NamespaceProcess;
  let gateway: NamespaceProcess;
  let notifiesAtStart: Notify[];

  const notifies = () => listener.lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Notify);

  async function search(bind: string, datagrams: { to: string; text: string }[], waitMs: number): Promise<Reply[]> {
    const job = JSON.stringify({ mode: 'search', bind, port: PORT, waitMs, datagrams });
    const stdout = await clientNs!.exec(process.execPath, [clientScript, job], { timeoutMs: waitMs + 10_000 });
    return JSON.parse(stdout) as Reply[];
  }

  beforeAll(async () => {
    try {
      gatewayNs = await TestNamespace.create('ssdp-gw');
      clientNs = await TestNamespace.create('ssdp-cl');
      await gatewayNs.exec('ip', ['link', 'add', 'vgw', 'type', 'veth', 'peer', 'name', 'vcl', 'netns', clientNs.name]);
      for (const [ns, dev, addresses] of [
        [gatewayNs, 'vgw', [LAN.gateway, FOREIGN.gateway]],
        [clientNs, 'vcl', [LAN.client, FOREIGN.client]],
      ] as const) {
        for (const a of addresses) await ns.exec('ip', ['addr', 'add', `${a}/24`, 'dev', dev]);
        await ns.exec('ip', ['link', 'set', dev, 'up']);
      }
      await gatewayNs.exec('ip', ['link', 'add', 'wan0', 'type', 'veth', 'peer', 'name', 'wan0peer']);
      await gatewayNs.exec('ip', ['addr', 'add', '203.0.113.1/24', 'dev', 'wan0']);
      for (const dev of ['wan0', 'wan0peer']) await gatewayNs.exec('ip', ['link', 'set', dev, 'up']);
      await gatewayNs.exec('ip', ['route', 'add', 'default', 'via', '203.0.113.254']);
      await gatewayNs.exec('nft', ['-f', '-'], {
        input: `table ip ssdp_wan {
          chain output {
            type filter hook output priority 0; policy accept;
            oifname "wan0" udp sport ${PORT} counter
          }
        }`,
      });
      // Counts the gateway's multicast by TTL, as the client receives it (a veth does not route).
      await clientNs.exec('nft', ['-f', '-'], {
        input: `table ip ssdp_ttl {
          chain input {
            type filter hook input priority 0; policy accept;
            ip saddr ${LAN.gateway} ip daddr ${GROUP} ip ttl 2 counter
            ip saddr ${LAN.gateway} ip daddr ${GROUP} ip ttl != 2 counter
          }
        }`,
      });

      scripts = await mkdtemp(join(tmpdir(), 'upnpd-ssdp-'));
      gatewayScript = join(scripts, 'gateway.mts');
      clientScript = join(scripts, 'client.mjs');
      await writeFile(gatewayScript, GATEWAY_SCRIPT);
      await writeFile(clientScript, CLIENT_SCRIPT);

      listener = new NamespaceProcess(clientNs, [clientScript, JSON.stringify({ mode: 'listen', bind: LAN.client, port: PORT, maxMs: 50_000 })]);
      await listener.waitForLine('ready', 10_000);
      gateway = new NamespaceProcess(gatewayNs, ['--import', 'tsx', gatewayScript, '300']);
      await gateway.waitForLine('started', 20_000);
      // The last alive left before `started`; give it time to arrive.
      await new Promise((resolve) => setTimeout(resolve, 200));
      notifiesAtStart = notifies();
    } catch (err) {
      await cleanUp();
      throw err;
    }
  });

  async function cleanUp(): Promise<void> {
    await gatewayNs?.destroy();
    await clientNs?.destroy();
    if (scripts) await rm(scripts, { recursive: true, force: true });
  }
  afterAll(cleanUp);

  const ALL_NTS = [
    'upnp:rootdevice',
    UDNS.gateway,
    `${IGD}:2`,
    'urn:schemas-upnp-org:service:Layer3Forwarding:1',
    UDNS.wan,
    'urn:schemas-upnp-org:device:WANDevice:2',
    'urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1',
    UDNS.wanConnection,
    'urn:schemas-upnp-org:device:WANConnectionDevice:2',
    `${WAN_IP}:2`,
    'urn:schemas-upnp-org:service:WANIPv6FirewallControl:1',
  ];
  const SET = ALL_NTS.length;

  it('says byebye for the whole set before the first alive, on the LAN, with TTL 2', async () => {
    expect(notifiesAtStart.map((n) => header(n.text, 'NTS'))).toEqual([...Array<string>(SET).fill('ssdp:byebye'), ...Array<string>(SET).fill('ssdp:alive')]);
    expect(notifiesAtStart.slice(0, SET).map((n) => header(n.text, 'NT'))).toEqual(ALL_NTS);
    expect(notifiesAtStart.slice(SET).map((n) => header(n.text, 'NT'))).toEqual(ALL_NTS);
    for (const n of notifiesAtStart) {
      expect(n.from).toBe(`${LAN.gateway}:${PORT}`);
      expect(header(n.text, 'BOOTID.UPNP.ORG')).toBe('5');
      expect(header(n.text, 'CONFIGID.UPNP.ORG')).toBe('9');
    }
    for (const alive of notifiesAtStart.slice(SET)) expect(header(alive.text, 'LOCATION')).toBe(LOCATION);
    const counters = await clientNs!.exec('nft', ['list', 'chain', 'ip', 'ssdp_ttl', 'input']);
    expect(counters).toMatch(new RegExp(`ip ttl 2 counter packets ${2 * SET} `));
    expect(counters).toMatch(/ip ttl != 2 counter packets 0 /);
  });

  it('answers multicast searches from the LAN with the version asked for, from the LAN address', async () => {
    const replies = await search(
      LAN.client,
      [
        { to: GROUP, text: mSearch(`${IGD}:1`, 1) },
        { to: GROUP, text: mSearch(`${IGD}:2`, 0) },
        { to: GROUP, text: mSearch('upnp:rootdevice', 1) },
        { to: GROUP, text: mSearch(`${WAN_IP}:1`, 1) },
        // No MX: a multicast search without it is ignored.
        { to: GROUP, text: mSearch('urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1') },
        // Unicast to the LAN address needs no MX.
        { to: LAN.gateway, text: mSearch(UDNS.wan) },
      ],
      1_500,
    );
    const answered = replies.map((r) => [header(r.text, 'ST'), header(r.text, 'USN'), header(r.text, 'LOCATION')]);
    expect(answered).toHaveLength(5);
    expect(answered).toEqual(
      expect.arrayContaining([
        [`${IGD}:1`, `${UDNS.gateway}::${IGD}:1`, LOCATION_IGD1],
        [`${IGD}:2`, `${UDNS.gateway}::${IGD}:2`, LOCATION],
        ['upnp:rootdevice', `${UDNS.gateway}::upnp:rootdevice`, LOCATION],
        [`${WAN_IP}:1`, `${UDNS.wanConnection}::${WAN_IP}:1`, LOCATION_IGD1],
        [UDNS.wan, UDNS.wan, LOCATION],
      ]),
    );
    for (const r of replies) {
      expect(r.text.startsWith('HTTP/1.1 200 OK\r\n')).toBe(true);
      expect(r.from).toBe(`${LAN.gateway}:${PORT}`);
      expect(r.ms).toBeLessThan(1_300);
    }
    // MX 0 (nat-port-mapper) is answered at once.
    const igd2 = replies.find((r) => header(r.text, 'ST') === `${IGD}:2`)!;
    expect(igd2.ms).toBeLessThan(300);
  });

  it('is found by miniupnpc, which searches IGD:1 first', async () => {
    // No HTTP server runs here, so upnpc gets no further than discovery; -l still lists what it found.
    const r = await clientNs!.runner().run('upnpc', ['-m', 'vcl', '-l'], { timeoutMs: 20_000 });
    expect(r.stdout).toContain(`desc: ${LOCATION_IGD1}\n st: ${IGD}:1`);
  });

  it('gives nothing to a requester outside the LAN subnets, multicast or unicast', async () => {
    const fromOutside = await search(
      FOREIGN.client,
      [
        { to: GROUP, text: mSearch('upnp:rootdevice', 1) },
        { to: LAN.gateway, text: mSearch('upnp:rootdevice') },
      ],
      1_500,
    );
    expect(fromOutside).toEqual([]);
  });

  it('says byebye for the whole set at shutdown', async () => {
    const before = notifies().length;
    expect(await gateway.terminate()).toBe(0);
    expect(gateway.lines).toContain('stopped');
    await new Promise((resolve) => setTimeout(resolve, 200));
    const atStop = notifies().slice(before);
    expect(atStop.map((n) => header(n.text, 'NTS'))).toEqual(Array(SET).fill('ssdp:byebye'));
    expect(atStop.map((n) => header(n.text, 'NT'))).toEqual(ALL_NTS);
  });

  it('repeats the alive set every notify interval, jittered up to 20% early', async () => {
    const before = notifies().length;
    const fastGateway = new NamespaceProcess(gatewayNs!, ['--import', 'tsx', gatewayScript, '1']);
    await fastGateway.waitForLine('started', 20_000);
    await new Promise((resolve) => setTimeout(resolve, 2_600));
    expect(await fastGateway.terminate()).toBe(0);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const seen = notifies().slice(before);
    const rootAlives = seen.filter((n) => header(n.text, 'NTS') === 'ssdp:alive' && header(n.text, 'NT') === 'upnp:rootdevice');
    // The start-up set and at least two repeats, each 0.8 to 1 s (plus the previous set's pacing) later.
    expect(rootAlives.length).toBeGreaterThanOrEqual(3);
    const gaps = rootAlives.slice(1).map((n, k) => n.at - rootAlives[k]!.at);
    for (const gap of gaps) {
      expect(gap).toBeGreaterThanOrEqual(750);
      expect(gap).toBeLessThanOrEqual(1_200);
    }
    // Each repeat is the whole alive set.
    expect(seen.filter((n) => header(n.text, 'NTS') === 'ssdp:alive')).toHaveLength(rootAlives.length * ALL_NTS.length);
  });

  it('sent nothing out of the WAN interface', async () => {
    expect(await gatewayNs!.exec('nft', ['list', 'chain', 'ip', 'ssdp_wan', 'output'])).toMatch(/oifname "wan0" udp sport 1900 counter packets 0 /);
  });
});
