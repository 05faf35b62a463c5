import type { Protocol } from '../../../core/mapping/types.js';
import { NamespaceProcess } from '../namespace-process.js';
import type { TestNamespace } from '../netns.js';
import type { Testbed } from '../topology.js';

/**
 * Whether packets from the WAN host reach the LAN client through a mapping, counted where they
 * arrive: an nftables counter in the LAN client's own namespace (prerouting, before any socket),
 * for packets from the WAN host to the mapping's internal port. A real client holds that port
 * itself (Transmission, libtorrent), so a listener of the harness could not bind it; the counter
 * needs no socket and sees TCP SYNs and UDP datagrams alike.
 *
 * Each probe is a new process with a new source port, so that a conntrack entry left by an earlier
 * probe cannot carry packets through after the mapping is gone.
 */
export interface MappedPort {
  readonly protocol: Protocol;
  readonly externalPort: number;
  readonly internalPort: number;
}

const PROBE_INTERVAL_MS = 100;
/** Time for the counter to see the last probe's packets after the sender stops. */
const SETTLE_MS = 200;

/**
 * Sends probes from the WAN host to the gateway's external address and port for `durationMs` (a
 * TCP connection attempt or a UDP datagram every 100 ms, each with a new source port for TCP and
 * one new socket for UDP) and returns how many of them arrived in the LAN client's namespace on
 * the internal port.
 */
export async function arrivalsThrough(testbed: Testbed, mapping: MappedPort, durationMs: number): Promise<number> {
  const counter = await PacketCounter.install(testbed.lan, [
    'ip',
    'saddr',
    testbed.addresses.wanHost,
    mapping.protocol.toLowerCase(),
    'dport',
    String(mapping.internalPort),
  ]);
  const before = await counter.read();
  const sender = NamespaceProcess.start(testbed.wan, [
    process.execPath,
    '-e',
    mapping.protocol === 'TCP' ? TCP_PROBES : UDP_PROBES,
    testbed.addresses.gatewayWan,
    String(mapping.externalPort),
    String(durationMs),
    String(PROBE_INTERVAL_MS),
  ]);
  const code = await sender.exited();
  if (code !== 0) throw new Error(`the WAN host's probe sender failed (exit ${code}):\n${sender.output()}`);
  await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
  return (await counter.read()) - before;
}

// Connection attempts that give up after one interval: a SYN is what the counter sees, whether or
// not anything listens behind the mapping.
const TCP_PROBES = `
const [host, port, duration, interval] = process.argv.slice(1).map((v, i) => (i === 0 ? v : Number(v)));
const net = require('node:net');
const end = Date.now() + duration;
const attempt = () => {
  if (Date.now() >= end) return setTimeout(() => process.exit(0), interval);
  const socket = net.connect({ host, port });
  socket.on('error', () => {});
  socket.on('connect', () => socket.destroy());
  setTimeout(() => { socket.destroy(); attempt(); }, interval);
};
attempt();
`;

const UDP_PROBES = `
const [host, port, duration, interval] = process.argv.slice(1).map((v, i) => (i === 0 ? v : Number(v)));
const socket = require('node:dgram').createSocket('udp4');
socket.on('error', () => {});
const end = Date.now() + duration;
const send = () => {
  if (Date.now() >= end) return process.exit(0);
  socket.send('upnpd-arrival-probe', port, host, () => setTimeout(send, interval));
};
socket.bind(0, send);
`;

/**
 * An nftables packet counter in a namespace (prerouting, before any socket or NAT), in a table of
 * the harness's own that nothing else touches; one rule per distinct match, reused when asked again.
 */
export class PacketCounter {
  private static readonly TABLE = 'upnpdt_counters';

  private constructor(
    private readonly ns: TestNamespace,
    private readonly comment: string,
  ) {}

  /** `match`: nft match words, e.g. ['ip', 'saddr', ADDRESS, 'udp', 'dport', '5351']. */
  static async install(ns: TestNamespace, match: readonly string[]): Promise<PacketCounter> {
    const comment = match.join('_').replace(/[^A-Za-z0-9_.-]/g, '-');
    const tables = await ns.exec('nft', ['list', 'tables']);
    if (!tables.split('\n').some((line) => line.trim() === `table ip ${PacketCounter.TABLE}`)) {
      await ns.exec('nft', ['-f', '-'], {
        input: `table ip ${PacketCounter.TABLE} {\n  chain seen {\n    type filter hook prerouting priority -300; policy accept;\n  }\n}\n`,
      });
    }
    const counter = new PacketCounter(ns, comment);
    if ((await counter.line()) === undefined) {
      await ns.exec('nft', ['add', 'rule', 'ip', PacketCounter.TABLE, 'seen', ...match, 'counter', 'comment', `"${comment}"`]);
    }
    return counter;
  }

  /** Packets counted since the rule was added. */
  async read(): Promise<number> {
    const line = await this.line();
    const packets = line && /counter packets (\d+)/.exec(line);
    if (!packets) throw new Error(`no counter ${this.comment} in ${this.ns.name}`);
    return Number(packets[1]);
  }

  private async line(): Promise<string | undefined> {
    const listing = await this.ns.exec('nft', ['list', 'chain', 'ip', PacketCounter.TABLE, 'seen']);
    return listing.split('\n').find((l) => l.includes(`comment "${this.comment}"`));
  }
}
