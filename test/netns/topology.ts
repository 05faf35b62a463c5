import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, beforeEach } from 'vitest';
import { fileURLToPath } from 'node:url';
import { TestNamespace } from './netns.js';
import { NamespaceProcess } from './namespace-process.js';
import type { RuleSpec } from '../../core/mapping/types.js';

/**
 * The addresses of the testbed. The WAN side is TEST-NET-3 (203.0.113.0/24, RFC 5737) on purpose:
 * no public address is used, not even inside namespaces. miniupnpc therefore calls the gateway's
 * IGD "not connected" (it wants a public external address). Its commands work all the same: with
 * discovery `upnpc` needs `-i` to carry on ("Trying to continue anyway"); with `-u <description
 * URL>` it skips the check.
 */
export const TESTBED_ADDRESSES = {
  lanClient: '192.168.77.10',
  lanClient2: '192.168.77.11',
  gatewayLan: '192.168.77.1',
  lanSubnet: '192.168.77.0/24',
  gatewayWan: '203.0.113.1',
  wanHost: '203.0.113.2',
  /** A second address of the `wan` namespace: a second remote host, for remote-host-restricted mappings. */
  wanHostAlt: '203.0.113.3',
  prefixLength: 24,
} as const;

/**
 * The IPv6 addresses of a testbed created with `ipv6: true`: the documentation prefix
 * 2001:db8::/32 (RFC 3849) and fixed link-local addresses (no address is generated from a MAC, and
 * these are added without duplicate address detection, so every one is usable at once).
 */
export const TESTBED_IPV6_ADDRESSES = {
  lanPrefix: '2001:db8:77::/64',
  gatewayLan: '2001:db8:77::1',
  gatewayLanLinkLocal: 'fe80::1',
  lanClient: '2001:db8:77::10',
  lanClientLinkLocal: 'fe80::10',
  lanClient2: '2001:db8:77::11',
  lanClient2LinkLocal: 'fe80::11',
  gatewayWan: '2001:db8:ff::1',
  gatewayWanLinkLocal: 'fe80::ff:1',
  wanHost: '2001:db8:ff::2',
  wanHostLinkLocal: 'fe80::ff:2',
  /** A second address of the `wan` namespace. */
  wanHostAlt: '2001:db8:ff::3',
  prefixLength: 64,
} as const;

export type IptablesFlavour = 'iptables' | 'iptables-legacy';

export interface TestbedOptions {
  /** Policy of the gateway's FORWARD chain (default DROP, so forwarded traffic needs an ACCEPT rule). */
  readonly forwardPolicy?: 'DROP' | 'ACCEPT';
  /**
   * Which iptables installs the admin's own rules (default 'iptables', i.e. nf_tables). A backend
   * under test must use the same one: a legacy ACCEPT cannot override an nf_tables DROP.
   */
  readonly adminFlavour?: IptablesFlavour;
  /**
   * Also give every namespace the IPv6 addresses of TESTBED_IPV6_ADDRESSES, with routes (LAN hosts
   * through the gateway, the WAN host to the LAN prefix through the gateway) and IPv6 forwarding on.
   * Without it the namespaces keep the kernel's defaults, as before.
   */
  readonly ipv6?: boolean;
}

/**
 * Four namespaces joined only by veth pairs between them (nothing in the root namespace):
 *
 *   lan  (eth0 192.168.77.10) ─┐
 *                              ├─ br-lan 192.168.77.1  gateway  wan0 203.0.113.1 ── wan (eth0 203.0.113.2, .3)
 *   lan2 (eth0 192.168.77.11) ─┘
 *
 * Interface names are local to each namespace, so parallel testbeds cannot collide; namespace
 * names carry a random suffix (TestNamespace).
 */
export interface Testbed {
  readonly lan: TestNamespace;
  readonly lan2: TestNamespace;
  readonly gateway: TestNamespace;
  readonly wan: TestNamespace;
  readonly addresses: typeof TESTBED_ADDRESSES;
  /** The gateway's LAN interface (a bridge over the two LAN veths). */
  readonly lanInterface: string;
  /** The gateway's WAN interface. */
  readonly wanInterface: string;
  /** Removes every namespace of the testbed (and whatever runs in them). Safe to call twice. */
  destroy(): Promise<void>;
}

const LAN_INTERFACE = 'br-lan';
const WAN_INTERFACE = 'wan0';
/** The name of each client's or WAN host's own interface. */
export const HOST_INTERFACE = 'eth0';

export async function createTestbed(options: TestbedOptions = {}): Promise<Testbed> {
  const created: TestNamespace[] = [];
  const destroy = async () => {
    for (const ns of created.splice(0).reverse()) await ns.destroy();
  };
  const namespace = async (role: string) => {
    const ns = await TestNamespace.create(role);
    created.push(ns);
    return ns;
  };
  try {
    const gateway = await namespace('gw');
    const lan = await namespace('lan');
    const lan2 = await namespace('lan2');
    const wan = await namespace('wan');
    const a = TESTBED_ADDRESSES;
    const gw = (...args: string[]) => gateway.exec('ip', args);
    // Duplicate address detection stays on, as on a real gateway: the LAN bridge's link-local
    // address is ready a moment after the daemon started, a LAN change served in place.
    if (options.ipv6) for (const ns of created) await withoutAddressGeneration(ns);

    // Each veth pair is made inside the gateway with its peer born in the other namespace.
    await gw('link', 'add', LAN_INTERFACE, 'type', 'bridge');
    await gw('link', 'add', 'lan0', 'type', 'veth', 'peer', 'name', HOST_INTERFACE, 'netns', lan.name);
    await gw('link', 'add', 'lan1', 'type', 'veth', 'peer', 'name', HOST_INTERFACE, 'netns', lan2.name);
    await gw('link', 'add', WAN_INTERFACE, 'type', 'veth', 'peer', 'name', HOST_INTERFACE, 'netns', wan.name);
    for (const port of ['lan0', 'lan1']) {
      await gw('link', 'set', port, 'master', LAN_INTERFACE);
      await gw('link', 'set', port, 'up');
    }
    await gw('addr', 'add', `${a.gatewayLan}/${a.prefixLength}`, 'dev', LAN_INTERFACE);
    await gw('addr', 'add', `${a.gatewayWan}/${a.prefixLength}`, 'dev', WAN_INTERFACE);
    await gw('link', 'set', LAN_INTERFACE, 'up');
    await gw('link', 'set', WAN_INTERFACE, 'up');
    await gw('route', 'add', 'default', 'via', a.wanHost);
    await gateway.exec('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1']);
    // Where br_netfilter is loaded, bridged LAN-to-LAN frames would meet the FORWARD policy too;
    // a home gateway does not filter its own LAN switch.
    await gateway.exec('sh', ['-c', 'f=/proc/sys/net/bridge/bridge-nf-call-iptables; [ ! -e $f ] || echo 0 > $f']);
    await installAdminFirewall(gateway, options);

    await configureHost(lan, [a.lanClient], a.gatewayLan);
    await configureHost(lan2, [a.lanClient2], a.gatewayLan);
    await configureHost(wan, [a.wanHost, a.wanHostAlt], undefined);
    if (options.ipv6) await configureIpv6({ gateway, lan, lan2, wan });

    return { lan, lan2, gateway, wan, addresses: a, lanInterface: LAN_INTERFACE, wanInterface: WAN_INTERFACE, destroy };
  } catch (err) {
    await destroy();
    throw err;
  }
}

/** No address generated from a MAC on links made from now on (the testbed's fixed addresses only). */
async function withoutAddressGeneration(ns: TestNamespace): Promise<void> {
  for (const scope of ['all', 'default']) await ns.exec('sysctl', ['-q', '-w', `net.ipv6.conf.${scope}.addr_gen_mode=1`]);
}

async function configureIpv6(ns: { gateway: TestNamespace; lan: TestNamespace; lan2: TestNamespace; wan: TestNamespace }): Promise<void> {
  const a = TESTBED_IPV6_ADDRESSES;
  const add = (target: TestNamespace, address: string, dev: string) =>
    target.exec('ip', ['-6', 'addr', 'add', `${address}/${a.prefixLength}`, 'dev', dev, 'nodad']);
  await add(ns.gateway, a.gatewayLan, LAN_INTERFACE);
  await add(ns.gateway, a.gatewayLanLinkLocal, LAN_INTERFACE);
  await add(ns.gateway, a.gatewayWan, WAN_INTERFACE);
  await add(ns.gateway, a.gatewayWanLinkLocal, WAN_INTERFACE);
  await ns.gateway.exec('ip', ['-6', 'route', 'add', 'default', 'via', a.wanHost, 'dev', WAN_INTERFACE]);
  await ns.gateway.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.all.forwarding=1']);
  for (const [host, address, linkLocal] of [
    [ns.lan, a.lanClient, a.lanClientLinkLocal],
    [ns.lan2, a.lanClient2, a.lanClient2LinkLocal],
  ] as const) {
    await add(host, address, HOST_INTERFACE);
    await add(host, linkLocal, HOST_INTERFACE);
    await host.exec('ip', ['-6', 'route', 'add', 'default', 'via', a.gatewayLanLinkLocal, 'dev', HOST_INTERFACE]);
  }
  await add(ns.wan, a.wanHost, HOST_INTERFACE);
  await add(ns.wan, a.wanHostAlt, HOST_INTERFACE);
  await add(ns.wan, a.wanHostLinkLocal, HOST_INTERFACE);
  await ns.wan.exec('ip', ['-6', 'route', 'add', a.lanPrefix, 'via', a.gatewayWan, 'dev', HOST_INTERFACE]);
}

async function configureHost(ns: TestNamespace, addresses: readonly string[], defaultRoute: string | undefined): Promise<void> {
  for (const address of addresses) await ns.exec('ip', ['addr', 'add', `${address}/${TESTBED_ADDRESSES.prefixLength}`, 'dev', HOST_INTERFACE]);
  await ns.exec('ip', ['link', 'set', HOST_INTERFACE, 'up']);
  if (defaultRoute) await ns.exec('ip', ['route', 'add', 'default', 'via', defaultRoute]);
}

/**
 * The admin's own firewall, which upnpd must leave intact: FORWARD drops by default except
 * replies and LAN-originated traffic, and the LAN is masqueraded behind the WAN address.
 */
async function installAdminFirewall(gateway: TestNamespace, options: TestbedOptions): Promise<void> {
  const script = [
    '*filter',
    `:FORWARD ${options.forwardPolicy ?? 'DROP'} [0:0]`,
    '-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
    `-A FORWARD -i ${LAN_INTERFACE} -o ${WAN_INTERFACE} -j ACCEPT`,
    'COMMIT',
    '*nat',
    `-A POSTROUTING -s ${TESTBED_ADDRESSES.lanSubnet} -o ${WAN_INTERFACE} -j MASQUERADE`,
    'COMMIT',
    '',
  ].join('\n');
  await gateway.exec(`${options.adminFlavour ?? 'iptables'}-restore`, [], { input: script });
}

/**
 * The rules and chains of a namespace's nat and filter tables, without comments and counters, so
 * that two snapshots compare equal when the rule set is the same.
 */
export async function firewallSnapshot(ns: TestNamespace, flavour: IptablesFlavour = 'iptables'): Promise<string[]> {
  const out = await ns.exec(`${flavour}-save`, []);
  return out
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => line.replace(/ \[\d+:\d+\]$/, ''));
}

// ---------------------------------------------------------------------------------------------
// Traffic checks
// ---------------------------------------------------------------------------------------------

export interface ReachabilityOptions {
  /** Binds the sending socket to this address (e.g. TESTBED_ADDRESSES.wanHostAlt, a second remote host). */
  readonly sourceAddress?: string;
  /** Binds the sending socket to this port (a remote-port-restricted mapping or pinhole); TCP leaves it in TIME_WAIT, so use each once per destination. */
  readonly sourcePort?: number;
  /** The port the listener binds, when the gateway translates it (default: `port`). */
  readonly listenPort?: number;
}

/** How long a listener may take to start before the check fails (node start-up on a busy machine). */
const LISTENER_START_MS = 10_000;

// The listeners bind the wildcard of both families (IPv4 arrives as ::ffff:a.b.c.d), so one
// check serves mappings and IPv6 pinholes. They print one line when ready and one line with what they received, then exit. They
// exit on their own after their lifetime, in case the test process dies before it can kill them.
const TCP_LISTENER = `
const [port, lifetime] = process.argv.slice(1).map(Number);
setTimeout(() => process.exit(3), lifetime);
require('node:net').createServer((socket) => {
  let data = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk) => { data += chunk; if (data.length > 4096) socket.destroy(); });
  socket.on('end', () => { console.log('RECEIVED ' + JSON.stringify(data)); process.exit(0); });
  socket.on('error', () => {});
}).listen(port, '::', () => console.log('LISTENING'));
`;

const TCP_SENDER = `
const [host, port, payload, localAddress, timeout, localPort] = process.argv.slice(1);
const socket = require('node:net').connect({ host, port: Number(port), localAddress: localAddress || undefined, localPort: Number(localPort) || undefined });
socket.setTimeout(Number(timeout), () => process.exit(2));
socket.on('connect', () => socket.end(payload));
socket.on('close', () => process.exit(0));
socket.on('error', () => process.exit(1));
`;

const UDP_LISTENER = `
const [port, lifetime] = process.argv.slice(1).map(Number);
setTimeout(() => process.exit(3), lifetime);
const socket = require('node:dgram').createSocket('udp6');
socket.on('message', (data) => { console.log('RECEIVED ' + JSON.stringify(data.toString('utf8'))); process.exit(0); });
socket.bind(port, '::', () => console.log('LISTENING'));
`;

// Datagrams may be lost (e.g. while ARP resolves): send one every 100 ms until the time is up.
const UDP_SENDER = `
const [host, port, payload, localAddress, timeout, localPort] = process.argv.slice(1);
const socket = require('node:dgram').createSocket(require('node:net').isIPv6(host) ? 'udp6' : 'udp4');
socket.on('error', () => {});
let left = Math.max(1, Math.ceil(Number(timeout) / 100));
socket.bind(Number(localPort) || 0, localAddress || undefined, () => {
  const send = () => {
    if (left-- <= 0) process.exit(0);
    socket.send(payload, Number(port), host, () => setTimeout(send, 100));
  };
  send();
});
`;

/**
 * Whether a TCP connection from `from` to host:port delivers a payload to a one-shot listener in
 * `listenerNs` (bound to every address, on `port` unless `options.listenPort`) within `timeoutMs`.
 */
export function tcpReachable(
  from: TestNamespace,
  host: string,
  port: number,
  listenerNs: TestNamespace,
  timeoutMs: number,
  options: ReachabilityOptions = {},
): Promise<boolean> {
  return payloadArrives({ listener: TCP_LISTENER, sender: TCP_SENDER }, from, host, port, listenerNs, timeoutMs, options);
}

/** The same as tcpReachable for UDP datagrams. */
export function udpReachable(
  from: TestNamespace,
  host: string,
  port: number,
  listenerNs: TestNamespace,
  timeoutMs: number,
  options: ReachabilityOptions = {},
): Promise<boolean> {
  return payloadArrives({ listener: UDP_LISTENER, sender: UDP_SENDER }, from, host, port, listenerNs, timeoutMs, options);
}

async function payloadArrives(
  scripts: { listener: string; sender: string },
  from: TestNamespace,
  host: string,
  port: number,
  listenerNs: TestNamespace,
  timeoutMs: number,
  options: ReachabilityOptions,
): Promise<boolean> {
  const payload = `upnpd-probe-${randomBytes(6).toString('hex')}`;
  const lifetimeMs = LISTENER_START_MS + timeoutMs + 5_000;
  const listenPort = options.listenPort ?? port;
  const listener = NamespaceProcess.start(listenerNs, [process.execPath, '-e', scripts.listener, String(listenPort), String(lifetimeMs)]);
  try {
    await listener.waitFor(/^LISTENING$/m, LISTENER_START_MS);
    const sender = NamespaceProcess.start(from, [
      process.execPath,
      '-e',
      scripts.sender,
      host,
      String(port),
      payload,
      options.sourceAddress ?? '',
      String(timeoutMs),
      String(options.sourcePort ?? 0),
    ]);
    try {
      // A sender that gives up (TCP reset or timeout) ends the check early.
      const senderFailed = sender.exited().then((code) => (code === 0 ? new Promise<never>(() => {}) : undefined));
      const received = await Promise.race([listener.waitFor(/^RECEIVED (.*)$/m, timeoutMs).catch(() => undefined), senderFailed]);
      return received !== undefined && JSON.parse(received[1]!) === payload;
    } finally {
      await sender.kill();
    }
  } finally {
    await listener.kill();
  }
}

// ---------------------------------------------------------------------------------------------
// Processes inside a namespace
// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// The daemon inside the gateway
// ---------------------------------------------------------------------------------------------

export interface RunningDaemon {
  /** The first description URL the daemon printed (for `upnpc -u`). */
  readonly url: string;
  /** The daemon's own pid (to pause it with SIGSTOP while a test looks at the kernel alone). */
  readonly pid: number;
  /** SIGTERM, then SIGKILL if it has not exited after 10 s. Resolves with the exit code (128+n for signal n). */
  stop(): Promise<number>;
  /** SIGKILL at once (a crash). Resolves with the exit code. */
  kill(): Promise<number>;
  /** Everything the daemon printed so far (stdout and stderr). */
  output(): string;
}

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DAEMON_ENTRY = fileURLToPath(new URL('../../bin/upnpd.js', import.meta.url));
const DAEMON_START_MS = 15_000;
const DAEMON_STOP_GRACE_MS = 10_000;

/**
 * Runs `node bin/upnpd.js ...args` inside the gateway namespace and waits until it prints its
 * description URL. If it does not within 15 s, it is killed and the error carries its output.
 */
export async function startDaemonInGateway(testbed: Testbed, args: readonly string[]): Promise<RunningDaemon> {
  const daemon = NamespaceProcess.start(testbed.gateway, [process.execPath, DAEMON_ENTRY, ...args], { cwd: REPO_ROOT });
  let url: string;
  try {
    // Ready once every front-end answers: the "upnpd running" line, not UPnP's own "listening" line
    // (NAT-PMP is bound after it). Logs may be JSON: the URL ends at whitespace, a quote or ';'.
    url = (await daemon.waitFor(/upnpd running[^\n]*?(http:\/\/[^\s"';]+)/, DAEMON_START_MS))[1]!;
  } catch (err) {
    await daemon.kill();
    throw new Error(`upnpd did not start in the gateway namespace: ${(err as Error).message}`, { cause: err });
  }
  return {
    url,
    pid: daemon.pid,
    stop: () => daemon.stop('SIGTERM', DAEMON_STOP_GRACE_MS),
    kill: () => daemon.kill(),
    output: () => daemon.output(),
  };
}

/**
 * A testbed and the daemon started in its gateway with `args`, shared by the tests of the enclosing
 * describe block: created before them, stopped and removed after them (also on failure); the
 * daemon's last output is printed when a test fails. Read the fields inside tests only.
 */
export function useTestbedDaemon(
  options: TestbedOptions,
  /** The daemon's arguments; may prepare the testbed first (the admin's firewall, a config file). */
  args: (testbed: Testbed) => readonly string[] | Promise<readonly string[]>,
): { readonly testbed: Testbed; readonly daemon: RunningDaemon } {
  let testbed: Testbed | undefined;
  let daemon: RunningDaemon | undefined;
  beforeAll(async () => {
    testbed = await createTestbed(options);
    daemon = await startDaemonInGateway(testbed, await args(testbed));
  });
  afterAll(async () => {
    try {
      await daemon?.stop();
    } finally {
      await testbed?.destroy();
    }
  });
  beforeEach(({ onTestFailed }) => {
    onTestFailed(() => console.error(`upnpd output, last part:\n${daemon?.output().slice(-6000)}`));
  });
  return {
    get testbed(): Testbed {
      if (!testbed) throw new Error('useTestbedDaemon: no testbed (it failed to start, or the tests are over)');
      return testbed;
    },
    get daemon(): RunningDaemon {
      if (!daemon) throw new Error('useTestbedDaemon: no daemon (it failed to start, or the tests are over)');
      return daemon;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// miniupnpc, the real client
// ---------------------------------------------------------------------------------------------

export interface UpnpcRun {
  /** upnpc's exit status (non-zero when the gateway refused the action); -1 when it timed out. */
  readonly exitCode: number;
  /** stdout and stderr: upnpc prints the UPnP error code of a refusal there. */
  readonly output: string;
}

/** Discovery waits 2 s for answers; a whole run takes a few seconds at most. */
const UPNPC_TIMEOUT_MS = 20_000;

/** Runs `upnpc ...args` in a namespace. Resolves also when upnpc fails, so tests can check refusals. */
export async function upnpc(ns: TestNamespace, args: readonly string[]): Promise<UpnpcRun> {
  const r = await ns.runner().run('upnpc', args, { timeoutMs: UPNPC_TIMEOUT_MS });
  return { exitCode: r.exitCode, output: r.stdout + r.stderr };
}

/** One line of `upnpc -l` or `upnpc -L`. */
export interface ListedMapping {
  readonly protocol: 'TCP' | 'UDP';
  readonly externalPort: number;
  readonly internalClient: string;
  readonly internalPort: number;
  readonly description: string;
  /** '' for any remote host. */
  readonly remoteHost: string;
  readonly leaseSeconds: number;
}

// ` 0 TCP  8080->192.168.77.10:80  'libminiupnpc' '203.0.113.3' 3600`
const UPNPC_LISTING_LINE = /^\s*\d+\s+(TCP|UDP)\s+(\d+)->(\d{1,3}(?:\.\d{1,3}){3}):(\d+)\s+'([^']*)'\s+'([^']*)'\s+(\d+)\s*$/gm;

/** The mappings listed by `upnpc -l` (GetGenericPortMappingEntry) or `upnpc -L` (GetListOfPortMappings). */
export function parseUpnpcListing(output: string): ListedMapping[] {
  return [...output.matchAll(UPNPC_LISTING_LINE)].map((m) => ({
    protocol: m[1] as 'TCP' | 'UDP',
    externalPort: Number(m[2]),
    internalClient: m[3]!,
    internalPort: Number(m[4]),
    description: m[5]!,
    remoteHost: m[6]!,
    leaseSeconds: Number(m[7]),
  }));
}

// ---------------------------------------------------------------------------------------------
// An nftables admin firewall
// ---------------------------------------------------------------------------------------------

/** The admin's nftables forward chain (installNftAdminFirewall), for the nftables backend's `forwardJump`. */
export const NFT_ADMIN_FORWARD_CHAIN = { family: 'inet', table: 'filter', chain: 'forward' } as const;

/** The package's public API as built (dist/), for config files written by tests in any directory. */
export const PUBLIC_API = new URL('../../dist/core/index.js', import.meta.url).href;

/** The nftables backend accepting mapped flows in the admin's forward chain, as config-file source text. */
export const NFT_FORWARD_JUMP_PLUGIN = `nftables({ forwardJump: ${JSON.stringify(NFT_ADMIN_FORWARD_CHAIN)} })`;

/**
 * The admin's firewall written in nftables rather than iptables: forwarded traffic is dropped
 * unless it is a reply or leaves the LAN. For a testbed created with `forwardPolicy: 'ACCEPT'`, so
 * that the drop is decided in this chain alone.
 */
export async function installNftAdminFirewall(testbed: Testbed): Promise<void> {
  const { family, table, chain } = NFT_ADMIN_FORWARD_CHAIN;
  const ruleset = `table ${family} ${table} {
	chain ${chain} {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname "${testbed.lanInterface}" oifname "${testbed.wanInterface}" accept
	}
}
`;
  await testbed.gateway.exec('nft', ['-f', '-'], { input: ruleset });
}

/** A TCP mapping's rule to `internalClient`, on the same internal port unless `overrides` say otherwise. */
export function ruleTo(internalClient: string, externalPort: number, overrides: Partial<RuleSpec> = {}): RuleSpec {
  return { remoteHost: '', externalPort, protocol: 'TCP', internalClient, internalPort: externalPort, ...overrides };
}
