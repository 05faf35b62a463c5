import 'reflect-metadata';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { silentLogger } from '../../core/logger.js';
import type { RuleSpec } from '../../core/mapping/types.js';
import { NftablesBackend } from '../../plugins/nftables/backend.js';
import { nftablesOptionsSchema, type NftablesUserOptions } from '../../plugins/nftables/options.js';
import { describeNetns } from './netns.js';
import {
  NFT_ADMIN_FORWARD_CHAIN,
  createTestbed,
  installNftAdminFirewall,
  ruleTo,
  tcpReachable,
  udpReachable,
  type ReachabilityOptions,
  type Testbed,
} from './topology.js';

/** A delivery that should happen gets this long; one that should not, this long. */
const PASSES_MS = 5_000;
const BLOCKED_MS = 1_500;

const ADMIN_JUMP_IPTABLES = { family: 'ip', table: 'filter', chain: 'FORWARD' } as const;

/** Packet-flow checks from the WAN host to the gateway's WAN address, shared by the suites below. */
function wanChecks(testbed: () => Testbed) {
  const check =
    (reachable: typeof tcpReachable, timeoutMs: number) =>
    (port: number, listener = testbed().lan, options: ReachabilityOptions = {}) =>
      reachable(testbed().wan, testbed().addresses.gatewayWan, port, listener, timeoutMs, options);
  const tcpWithin = check(tcpReachable, BLOCKED_MS);
  const udpWithin = check(udpReachable, BLOCKED_MS);
  return {
    tcp: check(tcpReachable, PASSES_MS),
    udp: check(udpReachable, PASSES_MS),
    tcpBlocked: async (...args: Parameters<typeof tcpWithin>) => !(await tcpWithin(...args)),
    udpBlocked: async (...args: Parameters<typeof udpWithin>) => !(await udpWithin(...args)),
  };
}

/** A backend for the testbed's gateway; shut down and forgotten after each test. */
function backends(testbed: () => Testbed) {
  let current: NftablesBackend | undefined;
  afterEach(async () => {
    await current?.shutdown();
    current = undefined;
  });
  return async (options: NftablesUserOptions = {}) => {
    await current?.shutdown();
    current = new NftablesBackend(
      nftablesOptionsSchema.parse({ wanInterface: testbed().wanInterface, ...options }),
      testbed().gateway.runner(),
      silentLogger,
      undefined,
    );
    await current.probe();
    await current.init();
    return current;
  };
}

describeNetns('nftables backend in the testbed, next to an nftables admin firewall', ['nft', 'iptables-nft'], () => {
  let testbed: Testbed;
  const a = () => testbed.addresses;
  const fromWan = wanChecks(() => testbed);
  const startBackend = backends(() => testbed);
  const mapping = (externalPort: number, overrides: Partial<RuleSpec> = {}) => ruleTo(a().lanClient, externalPort, overrides);

  beforeAll(async () => {
    // The iptables-nft FORWARD chain of the testbed accepts: here the admin's drop is in nftables.
    testbed = await createTestbed({ forwardPolicy: 'ACCEPT' });
    await installNftAdminFirewall(testbed);
  });
  afterAll(async () => {
    await testbed?.destroy();
  });

  it('forwards TCP and UDP from the WAN to the LAN client (with port translation), and stops after removal', async () => {
    const backend = await startBackend({ forwardJump: NFT_ADMIN_FORWARD_CHAIN });
    const tcp = mapping(8080, { internalPort: 80 });
    const udp = mapping(5353, { protocol: 'UDP' });
    expect(await fromWan.tcpBlocked(8080, testbed.lan, { listenPort: 80 })).toBe(true);

    await backend.apply({ remove: [], add: [tcp, udp] });
    expect(await fromWan.tcp(8080, testbed.lan, { listenPort: 80 })).toBe(true);
    expect(await fromWan.udp(5353)).toBe(true);

    await backend.apply({ remove: [tcp, udp], add: [] });
    expect(await fromWan.tcpBlocked(8080, testbed.lan, { listenPort: 80 })).toBe(true);
    expect(await fromWan.udpBlocked(5353)).toBe(true);
  });

  it('admits only the remote host a mapping is restricted to', async () => {
    const backend = await startBackend({ forwardJump: NFT_ADMIN_FORWARD_CHAIN });
    await backend.apply({ remove: [], add: [mapping(8443, { remoteHost: a().wanHost })] });
    expect(await fromWan.tcp(8443, testbed.lan, { sourceAddress: a().wanHost })).toBe(true);
    expect(await fromWan.tcpBlocked(8443, testbed.lan, { sourceAddress: a().wanHostAlt })).toBe(true);
  });

  it('sends a restricted remote host to its own target, everyone else to the wildcard mapping of the same port', async () => {
    const backend = await startBackend({ forwardJump: NFT_ADMIN_FORWARD_CHAIN });
    await backend.apply({
      remove: [],
      add: [mapping(9000), mapping(9000, { remoteHost: a().wanHostAlt, internalClient: a().lanClient2 })],
    });
    expect(await fromWan.tcp(9000, testbed.lan2, { sourceAddress: a().wanHostAlt })).toBe(true);
    expect(await fromWan.tcp(9000, testbed.lan, { sourceAddress: a().wanHost })).toBe(true);
  });

  it('replaces a mapping in one transaction, leaving one element that points to the new client', async () => {
    const backend = await startBackend({ forwardJump: NFT_ADMIN_FORWARD_CHAIN });
    const before = mapping(7100);
    const after = mapping(7100, { internalClient: a().lanClient2 });
    await backend.apply({ remove: [], add: [before] });
    expect(await fromWan.tcp(7100, testbed.lan)).toBe(true);

    await backend.apply({ remove: [before], add: [after] });
    expect(await backend.list()).toEqual([after]);
    const accept = await testbed.gateway.exec('nft', ['list', 'set', 'inet', 'filter', 'upnpd-accept']);
    expect(accept).toContain(`${a().lanClient2} . tcp . 7100`);
    expect(accept).not.toContain(`${a().lanClient} . tcp . 7100`);
    expect(await fromWan.tcp(7100, testbed.lan2)).toBe(true);
    expect(await fromWan.tcpBlocked(7100, testbed.lan)).toBe(true);
  });

  it('keeps forwarding to a target that another mapping still uses after one of them is removed', async () => {
    const backend = await startBackend({ forwardJump: NFT_ADMIN_FORWARD_CHAIN });
    const first = mapping(7200, { internalPort: 7000 });
    const second = mapping(7201, { internalPort: 7000 });
    await backend.apply({ remove: [], add: [first, second] });
    await backend.apply({ remove: [first], add: [] });
    expect(await fromWan.tcp(7201, testbed.lan, { listenPort: 7000 })).toBe(true);
  });

  it('check names what each reload removed, and resync puts every mapping, the jump and the accept set back', async () => {
    const backend = await startBackend({ forwardJump: NFT_ADMIN_FORWARD_CHAIN });
    const rules = [mapping(8080, { internalPort: 80 }), mapping(5353, { protocol: 'UDP' }), mapping(7000, { remoteHost: a().wanHost })];
    await backend.apply({ remove: [], add: rules });
    expect(await backend.check(rules)).toEqual({ missing: [] });

    await testbed.gateway.exec('nft', ['delete', 'element', 'inet', 'upnpd', 'dnat-any', '{ udp . 5353 }']);
    expect((await backend.check(rules)).missing).toEqual(['1 of 3 mapping(s) in the maps of table inet upnpd']);

    // The admin reloads their table alone (as fw4 does): upnpd's jump, chain and set there are gone.
    await testbed.gateway.exec('nft', ['delete', 'table', 'inet', 'filter']);
    await installNftAdminFirewall(testbed);
    expect((await backend.check(rules)).missing).toEqual([
      '1 of 3 mapping(s) in the maps of table inet upnpd',
      'the jump from chain forward of table inet filter to upnpd-forward',
      'chain upnpd-forward of table inet filter',
      'set upnpd-accept of table inet filter',
      // The IPv6 pinhole sets live beside the accept set in an inet table.
      'set upnpd-pinholes of table inet filter',
      'set upnpd-pinholes-host of table inet filter',
      'set upnpd-pinholes-port of table inet filter',
      'set upnpd-pinholes-host-port of table inet filter',
    ]);
    await backend.resync(rules);
    expect(await backend.check(rules)).toEqual({ missing: [] });
    expect(await fromWan.udp(5353)).toBe(true);

    // `flush ruleset`, then the admin's baseline: upnpd's own table is gone too.
    await testbed.gateway.exec('nft', ['flush', 'ruleset']);
    await installNftAdminFirewall(testbed);
    expect((await backend.check(rules)).missing).toEqual(expect.arrayContaining(['table inet upnpd', 'set upnpd-accept of table inet filter']));
    expect(await fromWan.tcpBlocked(8080, testbed.lan, { listenPort: 80 })).toBe(true);
    await backend.resync(rules);
    expect(await backend.check(rules)).toEqual({ missing: [] });
    expect(await backend.list()).toEqual(expect.arrayContaining(rules));
    expect(await fromWan.tcp(8080, testbed.lan, { listenPort: 80 })).toBe(true);
    // The long-lived nft -i still applies change sets after the ruleset was flushed under it.
    await backend.apply({ remove: [rules[0]!], add: [mapping(8081)] });
    expect(await fromWan.tcp(8081)).toBe(true);
  });

  it('without forwardJump the admin’s drop policy stops mapped flows, and an accept in a table of its own does not help', async () => {
    const backend = await startBackend();
    await backend.apply({ remove: [], add: [mapping(7300)] });
    expect(await fromWan.tcpBlocked(7300)).toBe(true);

    // nftables runs every base chain at a hook; an accept ends only its own chain.
    const nft = (...args: string[]) => testbed.gateway.exec('nft', args);
    await nft('add', 'table', 'inet', 'upnpdt-own');
    try {
      await nft('add', 'chain', 'inet', 'upnpdt-own', 'forward', '{ type filter hook forward priority -10; policy accept; }');
      await nft('add', 'rule', 'inet', 'upnpdt-own', 'forward', 'ct', 'status', 'dnat', 'accept');
      expect(await fromWan.tcpBlocked(7300)).toBe(true);
    } finally {
      await nft('delete', 'table', 'inet', 'upnpdt-own');
    }

    // The translation itself works: the admin's own accept for DNATed flows lets it through.
    const added = await nft('--echo', '--handle', 'insert', 'rule', 'inet', 'filter', 'forward', 'ct', 'status', 'dnat', 'accept');
    try {
      expect(await fromWan.tcp(7300)).toBe(true);
    } finally {
      await nft('delete', 'rule', 'inet', 'filter', 'forward', 'handle', /# handle (\d+)/.exec(added)![1]!);
    }
  });
});

describeNetns('nftables backend in the testbed, next to an iptables-nft admin firewall (FORWARD policy DROP)', ['nft', 'iptables-nft'], () => {
  let testbed: Testbed;
  const fromWan = wanChecks(() => testbed);
  const startBackend = backends(() => testbed);
  const mapping = (externalPort: number): RuleSpec => ({
    remoteHost: '',
    externalPort,
    protocol: 'TCP',
    internalClient: testbed.addresses.lanClient,
    internalPort: externalPort,
  });

  beforeAll(async () => {
    testbed = await createTestbed({ adminFlavour: 'iptables' });
  });
  afterAll(async () => {
    await testbed?.destroy();
  });

  it('translates, but the iptables FORWARD policy drops mapped flows unless the admin accepts DNATed flows', async () => {
    const backend = await startBackend();
    await backend.apply({ remove: [], add: [mapping(7400)] });
    expect(await fromWan.tcpBlocked(7400)).toBe(true);

    const acceptDnat = ['FORWARD', '-m', 'conntrack', '--ctstate', 'DNAT', '-j', 'ACCEPT'];
    await testbed.gateway.exec('iptables-nft', ['-I', ...acceptDnat]);
    try {
      expect(await fromWan.tcp(7400)).toBe(true);
    } finally {
      await testbed.gateway.exec('iptables-nft', ['-D', ...acceptDnat]);
    }
  });

  it('with forwardJump into the FORWARD chain of iptables-nft, mapped flows pass', async () => {
    const backend = await startBackend({ forwardJump: ADMIN_JUMP_IPTABLES });
    await backend.apply({ remove: [], add: [mapping(7500)] });
    expect(await fromWan.tcp(7500)).toBe(true);
  });
});
