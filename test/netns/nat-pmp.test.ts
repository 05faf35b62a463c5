import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import { NamespaceProcess } from './namespace-process.js';
import { describeNetns, type TestNamespace } from './netns.js';
import { NAT_PMP_PORT, exchangeIn } from './pcp-exchange.js';
import {
  TESTBED_ADDRESSES,
  createTestbed,
  parseUpnpcListing,
  startDaemonInGateway,
  tcpReachable,
  udpReachable,
  upnpc,
  type RunningDaemon,
  type ReachabilityOptions,
  type Testbed,
} from './topology.js';
import {
  NAT_PMP_EXTERNAL_ADDRESS_REQUEST,
  PCP,
  announceRequest,
  filterOption,
  mapRequest,
  natPmpMapRequest,
  parseNatPmpResponse,
  parsePcpResponse,
  thirdPartyOption,
  type MapRequestSpec,
} from '../support/pcp-client.js';

// The daemon (`node bin/upnpd.js`, iptables backend) in the testbed's gateway, NAT-PMP on by
// default: natpmpc and our own PCP client in the LAN, real packets from the WAN host.

const PASSES_MS = 5_000;
const BLOCKED_MS = 1_500;
/** How long the LAN listens to the announcements after a start: the first six are due by 7.75 s. */
const ANNOUNCEMENT_WATCH_MS = 9_500;

/** Listens on the LAN for announcements to 224.0.0.1:5350; prints each with its arrival time. */
const ANNOUNCEMENT_LISTENER = `
const [group, local, lifetime] = process.argv.slice(1);
const start = Date.now();
setTimeout(() => process.exit(0), Number(lifetime));
const socket = require('node:dgram').createSocket({ type: 'udp4', reuseAddr: true });
socket.on('message', (m, peer) => console.log('GOT ' + (Date.now() - start) + ' ' + peer.address + ':' + peer.port + ' ' + m.toString('hex')));
socket.bind(5350, () => { socket.addMembership(group, local); console.log('LISTENING'); });
`;

interface Announcement {
  readonly atMs: number;
  readonly from: string;
  readonly packet: Buffer;
}

function announcementsIn(output: string): Announcement[] {
  return [...output.matchAll(/^GOT (\d+) (\S+) ([0-9a-f]+)$/gm)].map((m) => ({ atMs: Number(m[1]), from: m[2]!, packet: Buffer.from(m[3]!, 'hex') }));
}

describeNetns(
  'NAT-PMP and PCP in the testbed (natpmpc, our PCP client, upnpc)',
  ['ip', 'iptables', 'iptables-save', 'iptables-restore', 'natpmpc', 'upnpc'],
  () => {
    const a = TESTBED_ADDRESSES;
    let testbed: Testbed;
    let stateDir: string;
    let daemon: RunningDaemon | undefined;
    const daemonArgs = () => ['--lan', testbed.lanInterface, '--wan', testbed.wanInterface, '--backend', 'iptables', '--state-dir', stateDir];

    const natpmpc = async (ns: TestNamespace, ...args: string[]) => {
      const r = await ns.runner().run('natpmpc', ['-g', a.gatewayLan, ...args], { timeoutMs: 20_000 });
      return { exitCode: r.exitCode, output: r.stdout + r.stderr };
    };
    const pcp = async (spec: Partial<MapRequestSpec> & { nonce: Buffer }, ns: TestNamespace = testbed.lan, client: string = a.lanClient) => {
      const answer = await exchangeIn(
        ns,
        a.gatewayLan,
        mapRequest({ client, protocol: PCP.protocol.tcp, internalPort: 9000, suggestedPort: 9000, lifetime: 600, ...spec }),
      );
      expect(answer, 'a PCP answer').toBeDefined();
      return parsePcpResponse(answer!);
    };
    const fromWan = {
      tcp: (port: number, options: ReachabilityOptions = {}) => tcpReachable(testbed.wan, a.gatewayWan, port, testbed.lan, PASSES_MS, options),
      udp: (port: number) => udpReachable(testbed.wan, a.gatewayWan, port, testbed.lan, PASSES_MS),
      tcpBlocked: async (port: number, options: ReachabilityOptions = {}) =>
        !(await tcpReachable(testbed.wan, a.gatewayWan, port, testbed.lan, BLOCKED_MS, options)),
      udpBlocked: async (port: number) => !(await udpReachable(testbed.wan, a.gatewayWan, port, testbed.lan, BLOCKED_MS)),
    };

    beforeAll(async () => {
      stateDir = await mkdtemp(join(tmpdir(), 'upnpd-natpmp-'));
      testbed = await createTestbed();
      daemon = await startDaemonInGateway(testbed, daemonArgs());
    });
    afterAll(async () => {
      try {
        await daemon?.stop();
      } finally {
        await testbed?.destroy();
        if (stateDir) await rm(stateDir, { recursive: true, force: true });
      }
    });
    beforeEach(({ onTestFailed }) => {
      onTestFailed(() => console.error(`upnpd output, last part:\n${daemon?.output().slice(-6000)}`));
    });

    it('natpmpc gets the external address', async () => {
      const run = await natpmpc(testbed.lan);
      expect(run.exitCode, run.output).toBe(0);
      expect(run.output).toMatch(/Public IP address : 203\.0\.113\.1/);
    });

    it('natpmpc maps TCP and UDP: real traffic from the WAN host reaches the LAN client, and stops after the delete', async () => {
      expect((await natpmpc(testbed.lan, '-a', '8000', '8000', 'tcp', '600')).output).toMatch(/Mapped public port 8000 protocol TCP to local port 8000/);
      expect((await natpmpc(testbed.lan, '-a', '8001', '8001', 'udp', '600')).output).toMatch(/Mapped public port 8001 protocol UDP to local port 8001/);
      expect(await fromWan.tcp(8000)).toBe(true);
      expect(await fromWan.udp(8001)).toBe(true);
      const listed = parseUpnpcListing((await upnpc(testbed.lan, ['-u', daemon!.url, '-l'])).output).filter((m) => m.externalPort === 8000);
      expect(listed).toMatchObject([{ protocol: 'TCP', internalClient: a.lanClient, description: `NAT-PMP ${a.lanClient}:8000` }]);
      expect((await natpmpc(testbed.lan, '-a', '8000', '8000', 'tcp', '0')).exitCode).toBe(0);
      expect((await natpmpc(testbed.lan, '-a', '8001', '8001', 'udp', '0')).exitCode).toBe(0);
      expect(await fromWan.tcpBlocked(8000)).toBe(true);
      expect(await fromWan.udpBlocked(8001)).toBe(true);
    });

    it('nothing answers on the WAN side: NAT-PMP and PCP from the WAN host get no answer, at the external address or at the LAN one', async () => {
      expect(await exchangeIn(testbed.wan, a.gatewayWan, NAT_PMP_EXTERNAL_ADDRESS_REQUEST)).toBeUndefined();
      expect(await exchangeIn(testbed.wan, a.gatewayWan, announceRequest(a.wanHost))).toBeUndefined();
      // Routed through the gateway's WAN interface to its LAN address: the LAN socket receives it, and drops it.
      await testbed.wan.exec('ip', ['route', 'replace', `${a.lanSubnet}`, 'via', a.gatewayWan]);
      try {
        expect(await exchangeIn(testbed.wan, a.gatewayLan, NAT_PMP_EXTERNAL_ADDRESS_REQUEST)).toBeUndefined();
        expect(await exchangeIn(testbed.wan, a.gatewayLan, announceRequest(a.wanHost))).toBeUndefined();
        expect(await exchangeIn(testbed.wan, a.gatewayLan, natPmpMapRequest('tcp', 22, 2222, 3600))).toBeUndefined();
      } finally {
        await testbed.wan.exec('ip', ['route', 'del', `${a.lanSubnet}`]);
      }
      // The LAN does answer (the same requests), so the silence above is not a dead daemon.
      expect(await exchangeIn(testbed.lan, a.gatewayLan, NAT_PMP_EXTERNAL_ADDRESS_REQUEST)).toBeDefined();
    });

    it('PCP: the nonce owns the mapping, THIRD_PARTY is refused, other versions get UNSUPP_VERSION, lifetimes are clamped', async () => {
      const nonce = randomBytes(12);
      expect(await pcp({ nonce, lifetime: 1 })).toMatchObject({
        result: PCP.result.SUCCESS,
        lifetime: 120,
        map: { externalPort: 9000, externalAddress: a.gatewayWan },
      });
      expect(await pcp({ nonce, lifetime: 10_000_000 })).toMatchObject({ result: PCP.result.SUCCESS, lifetime: 86_400 });
      expect(await pcp({ nonce: randomBytes(12) })).toMatchObject({ result: PCP.result.NOT_AUTHORIZED });
      expect(await pcp({ nonce: randomBytes(12), lifetime: 0 })).toMatchObject({ result: PCP.result.NOT_AUTHORIZED });
      expect(await fromWan.tcp(9000)).toBe(true);
      expect(await pcp({ nonce, internalPort: 9001, suggestedPort: 9001, options: [thirdPartyOption(a.lanClient2)] })).toMatchObject({
        result: PCP.result.NOT_AUTHORIZED,
      });
      expect(parsePcpResponse((await exchangeIn(testbed.lan, a.gatewayLan, announceRequest(a.lanClient, 1)))!)).toMatchObject({
        version: 2,
        result: PCP.result.UNSUPP_VERSION,
      });
      expect(await pcp({ nonce, lifetime: 0 })).toMatchObject({ result: PCP.result.SUCCESS });
      expect(await fromWan.tcpBlocked(9000)).toBe(true);
    });

    it('PCP FILTER: the mapping lets the named remote peer in, and refuses a second WAN host', async () => {
      const nonce = randomBytes(12);
      expect(await pcp({ nonce, internalPort: 9100, suggestedPort: 9100, options: [filterOption(a.wanHost)] })).toMatchObject({ result: PCP.result.SUCCESS });
      expect(await fromWan.tcp(9100, { sourceAddress: a.wanHost })).toBe(true);
      expect(await fromWan.tcpBlocked(9100, { sourceAddress: a.wanHostAlt })).toBe(true);
      expect(await pcp({ nonce, internalPort: 9100, suggestedPort: 9100, lifetime: 0 })).toMatchObject({ result: PCP.result.SUCCESS });
    });

    it('one table across protocols: another client cannot take a port held via NAT-PMP or via UPnP; the same client through both gets one mapping', async () => {
      const fromLan = (...args: string[]) => upnpc(testbed.lan, ['-u', daemon!.url, ...args]);
      const fromLan2 = (...args: string[]) => upnpc(testbed.lan2, ['-u', daemon!.url, ...args]);
      expect((await natpmpc(testbed.lan, '-a', '8100', '8100', 'tcp', '600')).output).toMatch(/Mapped public port 8100/);
      const taken = await fromLan2('-a', a.lanClient2, '8100', '8100', 'TCP', '600');
      expect(taken.exitCode, taken.output).not.toBe(0);
      expect(taken.output).toMatch(/\b718\b/);

      expect((await fromLan2('-a', a.lanClient2, '8200', '8200', 'TCP', '600')).exitCode).toBe(0);
      const offered = (await natpmpc(testbed.lan, '-a', '8200', '8200', 'tcp', '600')).output;
      const port = Number(/Mapped public port (\d+) protocol TCP/.exec(offered)?.[1]);
      expect(port, offered).toBeGreaterThan(0);
      expect(port).not.toBe(8200);

      expect((await fromLan('-a', a.lanClient, '8300', '8300', 'TCP', '3600')).exitCode).toBe(0);
      expect((await natpmpc(testbed.lan, '-a', '8300', '8300', 'tcp', '120')).output).toMatch(
        /Mapped public port 8300 protocol TCP to local port 8300 liftime 3[56]\d\d/,
      );
      const rows = parseUpnpcListing((await fromLan('-l')).output).filter((m) => m.internalClient === a.lanClient && m.internalPort === 8300);
      expect(rows).toHaveLength(1);
      expect(await fromWan.tcp(8300)).toBe(true);
      expect((await natpmpc(testbed.lan, '-a', '8300', '8300', 'tcp', '0')).exitCode).toBe(0);
      expect(await fromWan.tcpBlocked(8300)).toBe(true);
      for (const p of ['8100', String(port)]) await natpmpc(testbed.lan, '-a', p, p, 'tcp', '0');
      await fromLan2('-d', '8200', 'TCP');
    });

    it('a restart with the same state dir keeps the epoch counting and the PCP nonce owning its mapping; the start is announced on the LAN', async () => {
      const nonce = randomBytes(12);
      expect(await pcp({ nonce, internalPort: 9200, suggestedPort: 9200, lifetime: 3600 })).toMatchObject({ result: PCP.result.SUCCESS });
      const before = parseNatPmpResponse((await exchangeIn(testbed.lan, a.gatewayLan, NAT_PMP_EXTERNAL_ADDRESS_REQUEST))!).epoch;
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      expect(await daemon!.stop()).toBe(0);
      daemon = undefined;

      const listener = NamespaceProcess.start(testbed.lan, [
        process.execPath,
        '-e',
        ANNOUNCEMENT_LISTENER,
        '224.0.0.1',
        a.lanClient,
        String(ANNOUNCEMENT_WATCH_MS + 30_000),
      ]);
      try {
        await listener.waitFor(/^LISTENING$/m, 10_000);
        daemon = await startDaemonInGateway(testbed, daemonArgs());
        const after = parseNatPmpResponse((await exchangeIn(testbed.lan, a.gatewayLan, NAT_PMP_EXTERNAL_ADDRESS_REQUEST))!).epoch;
        expect(after).toBeGreaterThanOrEqual(before + 2);
        expect(await pcp({ nonce: randomBytes(12), internalPort: 9200, suggestedPort: 9200 })).toMatchObject({ result: PCP.result.NOT_AUTHORIZED });
        expect(await pcp({ nonce, internalPort: 9200, suggestedPort: 9200, lifetime: 0 })).toMatchObject({ result: PCP.result.SUCCESS });

        await new Promise((resolve) => setTimeout(resolve, ANNOUNCEMENT_WATCH_MS));
        const heard = announcementsIn(listener.output());
        const natPmp = heard.filter((h) => h.packet[0] === 0);
        const pcpAnnounces = heard.filter((h) => h.packet[0] === 2);
        // RFC 6886 §3.2.1: from the gateway's LAN address and port 5351, the external address, at 0, 250, 750, 1750, 3750, 7750 ms...
        expect(natPmp.length, listener.output()).toBeGreaterThanOrEqual(5);
        expect(natPmp.length).toBeLessThanOrEqual(10);
        for (const h of natPmp) {
          expect(h.from).toBe(`${a.gatewayLan}:${NAT_PMP_PORT}`);
          expect(parseNatPmpResponse(h.packet)).toMatchObject({ opcode: 128, result: 0, externalAddress: a.gatewayWan });
        }
        const gaps = natPmp.slice(1).map((h, i) => h.atMs - natPmp[i]!.atMs);
        // Each gap about twice the one before (250, 500, 1000, 2000 ms), with room for a loaded machine.
        expect(gaps[0]!).toBeGreaterThanOrEqual(150);
        expect(gaps[0]!).toBeLessThan(1_000);
        for (let i = 1; i < gaps.length; i++) {
          expect(gaps[i]! / gaps[i - 1]!).toBeGreaterThan(1.3);
          expect(gaps[i]! / gaps[i - 1]!).toBeLessThan(3.5);
        }
        // RFC 6887 §14.1.3: PCP's unsolicited ANNOUNCE goes with each of them.
        expect(pcpAnnounces.length).toBe(natPmp.length);
        expect(parsePcpResponse(pcpAnnounces[0]!.packet)).toMatchObject({ version: 2, opcode: 0, isResponse: true, result: 0 });
      } finally {
        await listener.kill();
      }
    });

    it('an external-address change starts a new epoch and is announced on the LAN with the new address', async () => {
      const newAddress = '198.51.100.9';
      // Long enough that the epoch before the change is clearly above the new one.
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      const before = parseNatPmpResponse((await exchangeIn(testbed.lan, a.gatewayLan, NAT_PMP_EXTERNAL_ADDRESS_REQUEST))!).epoch;
      expect(before).toBeGreaterThanOrEqual(2);
      const listener = NamespaceProcess.start(testbed.lan, [process.execPath, '-e', ANNOUNCEMENT_LISTENER, '224.0.0.1', a.lanClient, '30000']);
      const wanAddress = (verb: 'add' | 'del', address: string) => testbed.gateway.exec('ip', ['addr', verb, `${address}/24`, 'dev', testbed.wanInterface]);
      try {
        await listener.waitFor(/^LISTENING$/m, 10_000);
        await wanAddress('add', newAddress);
        await wanAddress('del', a.gatewayWan);
        await expect
          .poll(() => announcementsIn(listener.output()).filter((h) => h.packet[0] === 0).length, { timeout: 15_000, interval: 250 })
          .toBeGreaterThanOrEqual(2);
        const announced = announcementsIn(listener.output())
          .filter((h) => h.packet[0] === 0)
          .map((h) => parseNatPmpResponse(h.packet));
        expect(announced[0]).toMatchObject({ result: 0, externalAddress: newAddress });
        expect(announced[0]!.epoch).toBeLessThan(before);
        expect(parseNatPmpResponse((await exchangeIn(testbed.lan, a.gatewayLan, NAT_PMP_EXTERNAL_ADDRESS_REQUEST))!)).toMatchObject({
          externalAddress: newAddress,
        });
      } finally {
        await listener.kill();
        await wanAddress('add', a.gatewayWan).catch(() => undefined);
        await wanAddress('del', newAddress).catch(() => undefined);
      }
    });
  },
);
