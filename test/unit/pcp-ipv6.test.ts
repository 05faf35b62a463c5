import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { configSchema, type ResolvedConfig } from '../../core/config/schema.js';
import type { FrontEndContext } from '../../core/front-end.js';
import { ClientLimits, clientLimitSettings } from '../../core/limits/client-limits.js';
import { silentLogger } from '../../core/logger.js';
import { Ipv6Lan } from '../../core/net/ipv6.js';
import type { Plugin } from '../../core/plugins/types.js';
import { addressBytes, addressText, parsePcp } from '../../plugins/nat-pmp/codec.js';
import { MappingRequests } from '../../plugins/nat-pmp/mapping-requests.js';
import { natPmpOptionsSchema } from '../../plugins/nat-pmp/options.js';
import { PcpHandler } from '../../plugins/nat-pmp/pcp-handler.js';
import { Ipv6Map } from '../../plugins/nat-pmp/pcp-pinholes.js';
import { RecordingBackend, makeMappings } from '../support/fakes.js';
import { SettableExternalAddress, refusingPeer, startNatPmp, type NatPmpFixture } from '../support/nat-pmp-fixture.js';
import {
  NAT_PMP_EXTERNAL_ADDRESS_REQUEST,
  PCP,
  PREFER_FAILURE,
  announceRequest,
  exchange,
  filterOption,
  mapRequest,
  mapped,
  parsePcpResponse,
  thirdPartyOption,
  type MapRequestSpec,
} from '../support/pcp-client.js';

const HOST = '2001:db8:1::10';
const OTHER_HOST = '2001:db8:1::20';

/** The PCP handler with IPv6 MAP over a MappingService with an in-memory backend (pinholes unless told). */
function handler(options: { pinholes?: boolean; allowThirdParty?: boolean; plugins?: Plugin[] } = {}) {
  const config: ResolvedConfig = {
    ...configSchema.parse({ dryRun: true, limits: { stateChanges: { burst: 10_000, perSecond: 10_000 } } }),
    source: 'test',
    lanFromCommandLine: false,
    plugins: [],
  };
  const { mappings, clock } = makeMappings({ backend: new RecordingBackend({ pinholes: options.pinholes ?? true }), plugins: options.plugins ?? [] });
  const external = new SettableExternalAddress('203.0.113.1');
  const limits = new ClientLimits(clientLimitSettings(config.limits), silentLogger, clock);
  const context: FrontEndContext = {
    mappings,
    lan: [],
    lanIpv6: new Ipv6Lan([]),
    limits,
    external,
    clock,
    logger: silentLogger,
    config,
    restoredState: 'intact',
  };
  const natPmpOptions = natPmpOptionsSchema.parse({ allowThirdParty: options.allowThirdParty ?? false });
  const requests = new MappingRequests(context, natPmpOptions);
  const pcp = new PcpHandler(
    requests,
    natPmpOptions,
    () => external.externalAddress,
    () => 7,
    new Ipv6Map(requests, mappings),
  );
  const ask = async (from: string, spec: Partial<MapRequestSpec> & { nonce: Buffer }) => {
    const packet = mapRequest({ client: from, protocol: PCP.protocol.tcp, internalPort: 8080, suggestedAddress: '::', lifetime: 600, ...spec });
    const answer = await pcp.handle(packet, from);
    return parsePcpResponse(answer!);
  };
  return { mappings, ask, pcp };
}

describe('PCP codec: IPv6 addresses (RFC 6887 §5)', () => {
  it('reads and writes IPv6 addresses as the independent test client does, IPv4 ones IPv4-mapped', () => {
    for (const address of ['2001:db8::1', 'fe80::1:2:3:4', '::', '2001:db8:0:1:0:0:0:1', 'fd00:abcd::ffff:1']) {
      expect(addressBytes(address).equals(mapped(address))).toBe(true);
      expect(addressText(mapped(address))).toBe(new URL(`http://[${address}]/`).hostname.slice(1, -1));
    }
    expect(addressText(mapped('192.0.2.1'))).toBe('192.0.2.1');
  });

  it('parses the client address field of a request sent from IPv6', () => {
    const parsed = parsePcp(announceRequest('2001:db8:1::10'));
    expect(parsed.kind === 'request' && parsed.request.clientAddress).toBe('2001:db8:1::10');
  });
});

describe('PCP MAP for an IPv6 internal host: a pinhole', () => {
  it('opens a pinhole to the sender: the assigned external address and port are the internal ones, the lifetime clamped', async () => {
    const { mappings, ask } = handler();
    const nonce = randomBytes(12);
    const answer = await ask(HOST, { nonce, lifetime: 30, suggestedPort: 0 });
    expect(answer.result).toBe(PCP.result.SUCCESS);
    expect(answer.lifetime).toBe(120);
    expect(answer.map).toMatchObject({ externalAddress: HOST, externalPort: 8080, internalPort: 8080 });
    expect(answer.map?.nonce.equals(nonce)).toBe(true);
    expect([...mappings.pinholes.values()]).toMatchObject([{ internalClient: HOST, internalPort: 8080, protocol: 'TCP', remoteHost: '', remotePort: 0 }]);
  });

  it('renews with the same nonce (same UniqueID); another nonce may neither renew nor delete', async () => {
    const { mappings, ask } = handler();
    const nonce = randomBytes(12);
    expect((await ask(HOST, { nonce })).result).toBe(PCP.result.SUCCESS);
    const [opened] = [...mappings.pinholes.values()];
    expect((await ask(HOST, { nonce, lifetime: 900 })).lifetime).toBe(900);
    expect([...mappings.pinholes.values()].map((p) => p.id)).toEqual([opened!.id]);
    expect((await ask(HOST, { nonce: randomBytes(12) })).result).toBe(PCP.result.NOT_AUTHORIZED);
    expect((await ask(HOST, { nonce: randomBytes(12), lifetime: 0 })).result).toBe(PCP.result.NOT_AUTHORIZED);
    expect(mappings.pinholes.size).toBe(1);
    const deleted = await ask(HOST, { nonce, lifetime: 0 });
    expect(deleted.result).toBe(PCP.result.SUCCESS);
    expect(deleted.lifetime).toBe(0);
    expect(mappings.pinholes.size).toBe(0);
  });

  it('a pinhole UPnP opened (no nonce) may be taken over by its own host; after that, its nonce holds it', async () => {
    const { mappings, ask } = handler();
    await mappings.openPinhole(
      { remoteHost: '', remotePort: 0, internalClient: HOST, internalPort: 8080, protocol: 'TCP', leaseSeconds: 600 },
      { address: HOST, via: 'upnp' },
    );
    const nonce = randomBytes(12);
    expect((await ask(HOST, { nonce })).result).toBe(PCP.result.SUCCESS);
    expect(mappings.pinholes.size).toBe(1);
    expect((await ask(HOST, { nonce: randomBytes(12), lifetime: 0 })).result).toBe(PCP.result.NOT_AUTHORIZED);
  });

  it('the nonce still holds the pinhole after a restart: it is restored with the pinhole (as from the state file)', async () => {
    const before = handler();
    const nonce = randomBytes(12);
    expect((await before.ask(HOST, { nonce })).result).toBe(PCP.result.SUCCESS);
    const [opened] = [...before.mappings.pinholes.values()];
    expect(opened!.ownerNonce).toBe(nonce.toString('hex'));
    const after = handler();
    const { expiresAt: _expiresAt, ...kept } = opened!;
    expect(await after.mappings.restorePinholes([{ ...kept, remainingMs: 300_000 }])).toBe(1);
    expect((await after.ask(HOST, { nonce: randomBytes(12), lifetime: 0 })).result).toBe(PCP.result.NOT_AUTHORIZED);
    expect((await after.ask(HOST, { nonce: randomBytes(12) })).result).toBe(PCP.result.NOT_AUTHORIZED);
    expect((await after.ask(HOST, { nonce, lifetime: 900 })).lifetime).toBe(900);
    expect([...after.mappings.pinholes.values()].map((p) => [p.id, p.ownerNonce])).toEqual([[opened!.id, nonce.toString('hex')]]);
  });

  it('a UPnP renewal (no nonce) of a pinhole PCP opened keeps its owner nonce', async () => {
    const { mappings, ask } = handler();
    const nonce = randomBytes(12);
    expect((await ask(HOST, { nonce })).result).toBe(PCP.result.SUCCESS);
    await mappings.openPinhole(
      { remoteHost: '', remotePort: 0, internalClient: HOST, internalPort: 8080, protocol: 'TCP', leaseSeconds: 600 },
      { address: HOST, via: 'upnp' },
    );
    expect([...mappings.pinholes.values()].map((p) => p.ownerNonce)).toEqual([nonce.toString('hex')]);
    expect((await ask(HOST, { nonce: randomBytes(12), lifetime: 0 })).result).toBe(PCP.result.NOT_AUTHORIZED);
  });

  it('the client address field must be the sender (ADDRESS_MISMATCH), and MAP does not cross families', async () => {
    const { mappings, pcp } = handler({ allowThirdParty: true });
    const lying = mapRequest({ client: OTHER_HOST, nonce: randomBytes(12), protocol: PCP.protocol.tcp, internalPort: 80, lifetime: 600 });
    expect(parsePcpResponse((await pcp.handle(lying, HOST))!).result).toBe(PCP.result.ADDRESS_MISMATCH);
    const crossing = mapRequest({
      client: '192.0.2.10',
      nonce: randomBytes(12),
      protocol: PCP.protocol.tcp,
      internalPort: 80,
      lifetime: 600,
      options: [thirdPartyOption(HOST)],
    });
    expect(parsePcpResponse((await pcp.handle(crossing, '192.0.2.10'))!).result).toBe(PCP.result.ADDRESS_MISMATCH);
    expect(mappings.pinholes.size).toBe(0);
  });

  it("a second host cannot open a pinhole to the first one's address (THIRD_PARTY allowed: the core refuses it)", async () => {
    const { mappings, ask } = handler({ allowThirdParty: true });
    const answer = await ask(OTHER_HOST, { nonce: randomBytes(12), options: [thirdPartyOption(HOST)] });
    expect(answer.result).toBe(PCP.result.NOT_AUTHORIZED);
    expect(mappings.pinholes.size).toBe(0);
  });

  it("FILTER: one IPv6 peer (prefix 128) and its port become the pinhole's remote side; what a pinhole cannot hold is refused", async () => {
    const { mappings, ask } = handler();
    const peer = '2001:db8:ffff::5';
    expect((await ask(HOST, { nonce: randomBytes(12), options: [filterOption(peer, 128, 443)] })).result).toBe(PCP.result.SUCCESS);
    expect([...mappings.pinholes.values()]).toMatchObject([{ remoteHost: peer, remotePort: 443 }]);
    expect((await ask(HOST, { nonce: randomBytes(12), internalPort: 81, options: [filterOption(peer, 64)] })).result).toBe(PCP.result.UNSUPP_OPTION);
    expect((await ask(HOST, { nonce: randomBytes(12), internalPort: 81, options: [filterOption('198.51.100.1')] })).result).toBe(PCP.result.MALFORMED_OPTION);
    expect((await ask(HOST, { nonce: randomBytes(12), internalPort: 81, options: [filterOption(peer), filterOption('2001:db8:ffff::6')] })).result).toBe(
      PCP.result.EXCESSIVE_REMOTE_PEERS,
    );
    expect(mappings.pinholes.size).toBe(1);
  });

  it('§13.3 a FILTER with prefix length 0 is "no filter": the pinhole is open to any peer and any port, whatever port it names', async () => {
    const { mappings, ask } = handler();
    const nonce = randomBytes(12);
    expect((await ask(HOST, { nonce, options: [filterOption('2001:db8:ffff::5', 128, 443)] })).result).toBe(PCP.result.SUCCESS);
    expect((await ask(HOST, { nonce, options: [filterOption('::', 0, 443)] })).result).toBe(PCP.result.SUCCESS);
    expect([...mappings.pinholes.values()]).toMatchObject([{ remoteHost: '', remotePort: 0, internalPort: 8080 }]);
  });

  it('a new FILTER that is refused leaves the pinhole as it was (its peer, nonce and lease)', async () => {
    const { mappings, ask } = handler({ plugins: [refusingPeer('2001:db8:ffff::9')] });
    const nonce = randomBytes(12);
    expect((await ask(HOST, { nonce, options: [filterOption('2001:db8:ffff::5', 128, 443)] })).result).toBe(PCP.result.SUCCESS);
    const held = () => [...mappings.pinholes.values()].map((p) => `[${p.remoteHost}]:${p.remotePort} ${p.internalPort} ${p.ownerNonce} ${p.leaseSeconds}`);
    const before = held();
    expect(before).toEqual([`[2001:db8:ffff::5]:443 8080 ${nonce.toString('hex')} 600`]);
    expect((await ask(HOST, { nonce, options: [filterOption('2001:db8:ffff::9', 128, 443)] })).result).toBe(PCP.result.NOT_AUTHORIZED);
    expect(held()).toEqual(before);
  });

  it('PREFER_FAILURE: another external port or address than the internal ones is CANNOT_PROVIDE_EXTERNAL; without it the internal ones are answered', async () => {
    const { mappings, ask } = handler();
    expect((await ask(HOST, { nonce: randomBytes(12), suggestedPort: 9000, options: [PREFER_FAILURE] })).result).toBe(PCP.result.CANNOT_PROVIDE_EXTERNAL);
    expect((await ask(HOST, { nonce: randomBytes(12), suggestedAddress: OTHER_HOST, options: [PREFER_FAILURE] })).result).toBe(
      PCP.result.CANNOT_PROVIDE_EXTERNAL,
    );
    expect(mappings.pinholes.size).toBe(0);
    const granted = await ask(HOST, { nonce: randomBytes(12), suggestedPort: 9000, suggestedAddress: OTHER_HOST });
    expect(granted.result).toBe(PCP.result.SUCCESS);
    expect(granted.map).toMatchObject({ externalAddress: HOST, externalPort: 8080 });
    expect(
      (await ask(HOST, { nonce: randomBytes(12), internalPort: 8081, suggestedPort: 8081, suggestedAddress: HOST, options: [PREFER_FAILURE] })).result,
    ).toBe(PCP.result.SUCCESS);
  });

  it('all protocols (0) is UNSUPP_PROTOCOL; a backend without pinholes is NOT_AUTHORIZED (long error lifetime)', async () => {
    expect((await handler().ask(HOST, { nonce: randomBytes(12), protocol: 0 })).result).toBe(PCP.result.UNSUPP_PROTOCOL);
    const refused = await handler({ pinholes: false }).ask(HOST, { nonce: randomBytes(12) });
    expect(refused.result).toBe(PCP.result.NOT_AUTHORIZED);
    expect(refused.lifetime).toBe(1800);
  });
});

describe('the front-end over IPv6', () => {
  let fixture: NatPmpFixture | undefined;
  afterEach(async () => {
    await fixture?.close();
    fixture = undefined;
  });

  it('answers PCP on ::1 and drops NAT-PMP there (IPv4-only)', async () => {
    fixture = await startNatPmp({ lanIpv6: new Ipv6Lan([{ interface: 'lo', address: '::1', prefixLength: 128, scopeId: 1, linkLocal: false }]) });
    const url = fixture.frontEnd.describe().find((d) => d.includes('[::1]'));
    expect(url).toBeDefined();
    const port = Number(new URL(url!).port);
    const announce = await exchange(announceRequest('::1'), { host: '::1', port });
    expect(parsePcpResponse(announce!)).toMatchObject({ version: 2, opcode: PCP.opcode.announce, isResponse: true, result: PCP.result.SUCCESS });
    expect(await exchange(NAT_PMP_EXTERNAL_ADDRESS_REQUEST, { host: '::1', port }, 300)).toBeUndefined();
    expect(fixture.frontEnd.status()).toMatchObject({ answered: 1, dropped: 1 });
  });
});
