import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { PCP, announceRequest, filterOption, mapRequest, parsePcpResponse, thirdPartyOption, type MapRequestSpec } from '../support/pcp-client.js';
import { describeNetns, type TestNamespace } from './netns.js';
import { exchangeIn } from './pcp-exchange.js';
import {
  HOST_INTERFACE,
  NFT_FORWARD_JUMP_PLUGIN,
  PUBLIC_API,
  TESTBED_IPV6_ADDRESSES,
  installNftAdminFirewall,
  tcpReachable,
  udpReachable,
  upnpc,
  useTestbedDaemon,
  type ReachabilityOptions,
} from './topology.js';

// PCP MAP for IPv6 end to end: the daemon in the gateway (nftables backend, the admin's inet
// forward chain drops, pinholes through forwardJump), our PCP client in the LAN clients speaking
// PCP over IPv6 to the gateway's LAN IPv6 address, real TCP and UDP from the WAN host to the LAN
// client's global IPv6 address. upnpc (over IPv4) shows the pinhole as WANIPv6FirewallControl sees it.

const PASSES_MS = 5_000;
const BLOCKED_MS = 1_500;
const SETTLE_MS = 10_000;

describeNetns('PCP MAP for IPv6: pinholes through the NAT-PMP/PCP front-end (nftables)', ['ip', 'nft', 'upnpc', 'iptables-restore'], () => {
  const v6 = TESTBED_IPV6_ADDRESSES;
  let scratchDir: string | undefined;
  const bed = useTestbedDaemon({ forwardPolicy: 'ACCEPT', ipv6: true }, async (testbed) => {
    await installNftAdminFirewall(testbed);
    scratchDir = await mkdtemp(join(tmpdir(), 'upnpd-pcp6-'));
    const configFile = join(scratchDir, 'upnpd.config.mjs');
    const config = [
      `import { defineConfig, nftables } from ${JSON.stringify(PUBLIC_API)};`,
      `export default defineConfig({ plugins: [${NFT_FORWARD_JUMP_PLUGIN}] });`,
    ];
    await writeFile(configFile, `${config.join('\n')}\n`);
    return ['--lan', testbed.lanInterface, '--wan', testbed.wanInterface, '--config', configFile];
  });
  beforeAll(async () => {
    const listening = new RegExp(`PCP listening on .*udp://\\[${v6.gatewayLan}\\]:5351`);
    const deadline = Date.now() + SETTLE_MS;
    while (!listening.test(bed.daemon.output()) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 200));
  });
  afterAll(async () => {
    if (scratchDir) await rm(scratchDir, { recursive: true, force: true });
  });

  /** One MAP over IPv6 from `ns` (its address `client`) to the gateway's LAN IPv6 address; fails the test without an answer. */
  const pcp = async (spec: Partial<MapRequestSpec> & { nonce: Buffer }, ns: TestNamespace = bed.testbed.lan, client: string = v6.lanClient) => {
    const packet = mapRequest({ client, protocol: PCP.protocol.tcp, internalPort: 8080, suggestedAddress: '::', lifetime: 600, ...spec });
    const answer = await exchangeIn(ns, v6.gatewayLan, packet, client);
    expect(answer, 'a PCP answer').toBeDefined();
    return parsePcpResponse(answer!);
  };
  const toLan = {
    tcp: (port: number) => tcpReachable(bed.testbed.wan, v6.lanClient, port, bed.testbed.lan, PASSES_MS),
    udp: (port: number, from: ReachabilityOptions = {}) => udpReachable(bed.testbed.wan, v6.lanClient, port, bed.testbed.lan, PASSES_MS, from),
    tcpBlocked: async (port: number) => !(await tcpReachable(bed.testbed.wan, v6.lanClient, port, bed.testbed.lan, BLOCKED_MS)),
    udpBlocked: async (port: number, from: ReachabilityOptions = {}) =>
      !(await udpReachable(bed.testbed.wan, v6.lanClient, port, bed.testbed.lan, BLOCKED_MS, from)),
  };

  it('listens for PCP on the LAN IPv6 addresses, global and link-local; ANNOUNCE over IPv6 is answered on both', async () => {
    expect(bed.daemon.output()).toMatch(new RegExp(`udp://\\[${v6.gatewayLan}\\]:5351`));
    expect(bed.daemon.output()).toMatch(new RegExp(`udp://\\[${v6.gatewayLanLinkLocal}\\]:5351#${bed.testbed.lanInterface}`));
    const global = await exchangeIn(bed.testbed.lan, v6.gatewayLan, announceRequest(v6.lanClient), v6.lanClient);
    expect(parsePcpResponse(global!)).toMatchObject({ opcode: PCP.opcode.announce, isResponse: true, result: PCP.result.SUCCESS });
    const linkLocal = await exchangeIn(
      bed.testbed.lan,
      `${v6.gatewayLanLinkLocal}%${HOST_INTERFACE}`,
      announceRequest(v6.lanClientLinkLocal),
      `${v6.lanClientLinkLocal}%${HOST_INTERFACE}`,
    );
    expect(parsePcpResponse(linkLocal!)).toMatchObject({ opcode: PCP.opcode.announce, result: PCP.result.SUCCESS });
  });

  it('MAP opens a pinhole: TCP and UDP from the WAN host reach the LAN client, not before, not after the delete; another nonce is refused', async () => {
    expect(await toLan.tcpBlocked(8080)).toBe(true);
    expect(await toLan.udpBlocked(5060)).toBe(true);
    const nonce = randomBytes(12);
    const tcp = await pcp({ nonce });
    expect(tcp.result).toBe(PCP.result.SUCCESS);
    expect(tcp.map).toMatchObject({ externalAddress: v6.lanClient, externalPort: 8080, internalPort: 8080 });
    expect(tcp.lifetime).toBe(600);
    const udp = await pcp({ nonce, protocol: PCP.protocol.udp, internalPort: 5060 });
    expect(udp.result).toBe(PCP.result.SUCCESS);
    expect(await toLan.tcp(8080)).toBe(true);
    expect(await toLan.udp(5060)).toBe(true);
    // Only the pinholed ports.
    expect(await toLan.tcpBlocked(8081)).toBe(true);

    // WANIPv6FirewallControl sees the pinhole PCP opened (UniqueID 1, the first): its packets, its owner.
    const packets = await upnpc(bed.testbed.lan, ['-u', bed.daemon.url, '-K', '1']);
    expect(Number(/PinholePackets = (\d+)/.exec(packets.output)?.[1] ?? 0), packets.output).toBeGreaterThan(0);
    const listing = await bed.testbed.gateway.exec('nft', ['list', 'table', 'inet', 'filter']);
    expect(listing).toContain(`${v6.lanClient} . tcp . 8080`);

    // Another nonce may neither renew nor delete it.
    expect((await pcp({ nonce: randomBytes(12) })).result).toBe(PCP.result.NOT_AUTHORIZED);
    expect((await pcp({ nonce: randomBytes(12), lifetime: 0 })).result).toBe(PCP.result.NOT_AUTHORIZED);
    expect(await toLan.tcp(8080)).toBe(true);

    const deleted = await pcp({ nonce, lifetime: 0 });
    expect(deleted).toMatchObject({ result: PCP.result.SUCCESS, lifetime: 0 });
    expect((await pcp({ nonce, protocol: PCP.protocol.udp, internalPort: 5060, lifetime: 0 })).result).toBe(PCP.result.SUCCESS);
    expect(await toLan.tcpBlocked(8080)).toBe(true);
    expect(await toLan.udpBlocked(5060)).toBe(true);
  });

  it('MAP with a FILTER admits only that remote peer (host and port); a new FILTER replaces the old one; the delete closes it', async () => {
    const nonce = randomBytes(12);
    const peer = { sourceAddress: v6.wanHost, sourcePort: 4300 };
    const filtered = await pcp({ nonce, protocol: PCP.protocol.udp, internalPort: 5070, options: [filterOption(v6.wanHost, 128, 4300)] });
    expect(filtered.result).toBe(PCP.result.SUCCESS);
    expect(await toLan.udp(5070, peer)).toBe(true);
    expect(await toLan.udpBlocked(5070, { ...peer, sourcePort: 4301 })).toBe(true);
    expect(await toLan.udpBlocked(5070, { ...peer, sourceAddress: v6.wanHostAlt })).toBe(true);

    // The same MAP with another FILTER (the other remote host, any port): the old peer is shut out.
    const moved = await pcp({ nonce, protocol: PCP.protocol.udp, internalPort: 5070, options: [filterOption(v6.wanHostAlt, 128, 0)] });
    expect(moved.result).toBe(PCP.result.SUCCESS);
    expect(await toLan.udp(5070, { sourceAddress: v6.wanHostAlt, sourcePort: 4302 })).toBe(true);
    expect(await toLan.udpBlocked(5070, peer)).toBe(true);
    const listing = await bed.testbed.gateway.exec('nft', ['list', 'table', 'inet', 'filter']);
    expect(listing.match(new RegExp(`${v6.lanClient} \\. udp \\. 5070`, 'g'))).toHaveLength(1);

    expect((await pcp({ nonce, protocol: PCP.protocol.udp, internalPort: 5070, lifetime: 0 })).result).toBe(PCP.result.SUCCESS);
    expect(await toLan.udpBlocked(5070, { sourceAddress: v6.wanHostAlt, sourcePort: 4303 })).toBe(true);
  });

  it("a second LAN client cannot map to the first client's address (its own address is the internal one; THIRD_PARTY is refused)", async () => {
    // Its own address it may map.
    expect((await pcp({ nonce: randomBytes(12), internalPort: 9090 }, bed.testbed.lan2, v6.lanClient2)).result).toBe(PCP.result.SUCCESS);
    // The first client's address in the client address field: not the sender.
    const packet = mapRequest({ client: v6.lanClient, nonce: randomBytes(12), protocol: PCP.protocol.tcp, internalPort: 9091, lifetime: 600 });
    const lying = await exchangeIn(bed.testbed.lan2, v6.gatewayLan, packet, v6.lanClient2);
    expect(parsePcpResponse(lying!).result).toBe(PCP.result.ADDRESS_MISMATCH);
    const third = await pcp({ nonce: randomBytes(12), internalPort: 9092, options: [thirdPartyOption(v6.lanClient)] }, bed.testbed.lan2, v6.lanClient2);
    expect(third.result).toBe(PCP.result.NOT_AUTHORIZED);
    const listing = await bed.testbed.gateway.exec('nft', ['list', 'table', 'inet', 'filter']);
    expect(listing).not.toMatch(new RegExp(`${v6.lanClient} \\. tcp \\. 909[12]`));
    expect(listing).toContain(`${v6.lanClient2} . tcp . 9090`);
  });

  it('nothing answers PCP over IPv6 from the WAN side (at the LAN address through the gateway, or at the WAN address)', async () => {
    expect(await exchangeIn(bed.testbed.wan, v6.gatewayLan, announceRequest(v6.wanHost), v6.wanHost)).toBeUndefined();
    const map = mapRequest({ client: v6.wanHost, nonce: randomBytes(12), protocol: PCP.protocol.tcp, internalPort: 22, lifetime: 600 });
    expect(await exchangeIn(bed.testbed.wan, v6.gatewayLan, map, v6.wanHost)).toBeUndefined();
    expect(await exchangeIn(bed.testbed.wan, v6.gatewayWan, announceRequest(v6.wanHost), v6.wanHost)).toBeUndefined();
  });
});
