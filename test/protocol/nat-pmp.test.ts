import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { UpnpError, UpnpErrorCode } from '../../core/errors.js';
import type { RestoredState } from '../../core/mapping/state-file.js';
import type { MappingRequest, Requester } from '../../core/mapping/types.js';
import type { Plugin } from '../../core/plugins/types.js';
import { RefusalRegistry, RefusalReporter } from '../../core/plugins/refusals.js';
import { silentLogger } from '../../core/logger.js';
import { systemClock } from '../../core/clock.js';
import { RecordingLogger } from '../support/fakes.js';
import { TEST_EXTERNAL_IP, refusingPeer, startNatPmp, type NatPmpFixture, type NatPmpFixtureOptions } from '../support/nat-pmp-fixture.js';
import { Epoch } from '../../plugins/nat-pmp/epoch.js';
import {
  NAT_PMP_EXTERNAL_ADDRESS_REQUEST,
  PCP,
  PREFER_FAILURE,
  announceRequest,
  filterOption,
  mapRequest,
  natPmpMapRequest,
  parseNatPmpResponse,
  parsePcpResponse,
  thirdPartyOption,
  type MapRequestSpec,
} from '../support/pcp-client.js';
// After the fixture, which loads the core: the quota plugin's module is also loaded by the core's index.
import { QuotaPolicy } from '../../plugins/quota/policy.js';

const CLIENT = '127.0.0.1';
const OTHER_CLIENT = '127.0.0.2';
const UPNP: Requester = { address: CLIENT, via: 'upnp-igd:2' };

let fixture: NatPmpFixture | undefined;
afterEach(async () => {
  await fixture?.close();
  fixture = undefined;
});

async function start(options: NatPmpFixtureOptions = {}): Promise<NatPmpFixture> {
  fixture = await startNatPmp(options);
  return fixture;
}

async function natPmp(f: NatPmpFixture, packet: Buffer, from = CLIENT) {
  const answer = await f.send(packet, from);
  expect(answer, 'an answer').toBeDefined();
  return parseNatPmpResponse(answer!);
}

async function pcp(f: NatPmpFixture, packet: Buffer, from = CLIENT) {
  const answer = await f.send(packet, from);
  expect(answer, 'an answer').toBeDefined();
  return parsePcpResponse(answer!);
}

function upnpRequest(overrides: Partial<MappingRequest> = {}): MappingRequest {
  return {
    remoteHost: '',
    externalPort: 6000,
    protocol: 'TCP',
    internalClient: CLIENT,
    internalPort: 6000,
    enabled: true,
    description: 'upnp',
    leaseSeconds: 3600,
    ...overrides,
  };
}

function refusing(code: UpnpErrorCode): Plugin {
  return {
    name: `refuse-${code}`,
    hooks: {
      beforeMap: () => {
        throw new UpnpError(code, 'refused by the test');
      },
    },
  };
}

describe('NAT-PMP version 0 (RFC 6886)', () => {
  it('§3.2 answers the external address: opcode 128, result 0, the address, 12 octets', async () => {
    const f = await start();
    expect(await natPmp(f, NAT_PMP_EXTERNAL_ADDRESS_REQUEST)).toMatchObject({ version: 0, opcode: 128, result: 0, externalAddress: '203.0.113.1', length: 12 });
  });

  it('§3.5 result 3 (network failure) while the gateway has no external address, for the address and for a mapping', async () => {
    const f = await start();
    f.external.set(undefined);
    expect(await natPmp(f, NAT_PMP_EXTERNAL_ADDRESS_REQUEST)).toMatchObject({ opcode: 128, result: 3 });
    expect(await natPmp(f, natPmpMapRequest('tcp', 5000, 5000, 3600))).toMatchObject({ opcode: 130, result: 3, lifetime: 0 });
    expect(f.mappings.size).toBe(0);
  });

  it('§3.3 maps TCP and UDP: opcode + 128, the suggested port when free, one table entry each that says where it came from', async () => {
    const f = await start();
    expect(await natPmp(f, natPmpMapRequest('tcp', 5000, 5000, 3600))).toMatchObject({
      opcode: 130,
      result: 0,
      internalPort: 5000,
      externalPort: 5000,
      lifetime: 3600,
    });
    expect(await natPmp(f, natPmpMapRequest('udp', 5001, 15001, 3600))).toMatchObject({ opcode: 129, result: 0, internalPort: 5001, externalPort: 15001 });
    expect(f.mappings.get({ remoteHost: '', externalPort: 5000, protocol: 'TCP' })).toMatchObject({
      internalClient: CLIENT,
      internalPort: 5000,
      description: 'NAT-PMP 127.0.0.1:5000',
      createdBy: { address: CLIENT, via: 'nat-pmp' },
    });
    expect(f.mappings.get({ remoteHost: '', externalPort: 15001, protocol: 'UDP' })).toMatchObject({ internalPort: 5001 });
    expect(f.backend.installed.size).toBe(2);
  });

  it('§3.3 a renewal returns the same external port and keeps one mapping', async () => {
    const f = await start();
    await natPmp(f, natPmpMapRequest('tcp', 5000, 5000, 3600));
    expect(await natPmp(f, natPmpMapRequest('tcp', 5000, 7777, 7200))).toMatchObject({ result: 0, externalPort: 5000, lifetime: 7200 });
    expect(f.mappings.size).toBe(1);
  });

  it('offers another port when the suggested one is held by another client, and leaves that mapping alone', async () => {
    const f = await start();
    await f.mappings.add(upnpRequest({ internalClient: OTHER_CLIENT, externalPort: 5000 }), { address: OTHER_CLIENT, via: 'upnp-igd:2' });
    const answer = await natPmp(f, natPmpMapRequest('tcp', 5000, 5000, 3600));
    expect(answer.result).toBe(0);
    expect(answer.externalPort).not.toBe(5000);
    expect(f.mappings.get({ remoteHost: '', externalPort: 5000, protocol: 'TCP' })?.internalClient).toBe(OTHER_CLIENT);
  });

  it("never takes over another of the same client's mappings: a second internal port gets another external port", async () => {
    const f = await start();
    await natPmp(f, natPmpMapRequest('tcp', 5000, 5000, 3600));
    const second = await natPmp(f, natPmpMapRequest('tcp', 5002, 5000, 3600));
    expect(second.externalPort).not.toBe(5000);
    expect(f.mappings.size).toBe(2);
  });

  it('RFC 6887 §15 clamps lifetimes to 120 s - 24 h by default, and to the configured range', async () => {
    const f = await start();
    expect(await natPmp(f, natPmpMapRequest('tcp', 5000, 5000, 10))).toMatchObject({ result: 0, lifetime: 120 });
    expect(await natPmp(f, natPmpMapRequest('udp', 5000, 5000, 10_000_000))).toMatchObject({ result: 0, lifetime: 86_400 });
    expect(f.mappings.remainingSeconds(f.mappings.get({ remoteHost: '', externalPort: 5000, protocol: 'UDP' })!)).toBe(86_400);
    await f.close();
    const g = await start({ options: { lifetime: { minSeconds: 300, maxSeconds: 600 } } });
    expect(await natPmp(g, natPmpMapRequest('tcp', 5000, 5000, 10))).toMatchObject({ lifetime: 300 });
    expect(await natPmp(g, natPmpMapRequest('tcp', 5000, 5000, 3600))).toMatchObject({ lifetime: 600 });
  });

  it('§3.4 lifetime 0 deletes: result 0, external port 0, lifetime 0; deleting what does not exist succeeds too', async () => {
    const f = await start();
    await natPmp(f, natPmpMapRequest('tcp', 5000, 5000, 3600));
    expect(await natPmp(f, natPmpMapRequest('tcp', 5000, 0, 0))).toMatchObject({ opcode: 130, result: 0, internalPort: 5000, externalPort: 0, lifetime: 0 });
    expect(f.mappings.size).toBe(0);
    expect(f.backend.installed.size).toBe(0);
    expect(await natPmp(f, natPmpMapRequest('tcp', 5000, 0, 0))).toMatchObject({ result: 0 });
  });

  it("§3.4 internal port 0 with lifetime 0 deletes all of the client's NAT-PMP mappings of that protocol, nothing else", async () => {
    const f = await start();
    await natPmp(f, natPmpMapRequest('tcp', 5000, 5000, 3600));
    await natPmp(f, natPmpMapRequest('tcp', 5001, 5001, 3600));
    await natPmp(f, natPmpMapRequest('udp', 5000, 5000, 3600));
    await f.mappings.add(upnpRequest(), UPNP);
    await natPmp(f, natPmpMapRequest('tcp', 5000, 5000, 3600), OTHER_CLIENT);
    expect(await natPmp(f, natPmpMapRequest('tcp', 0, 0, 0))).toMatchObject({ result: 0 });
    const left = [...f.mappings.values()].map((m) => `${m.protocol} ${m.internalClient}:${m.internalPort} ${m.createdBy.via}`);
    expect(left.sort()).toEqual(['TCP 127.0.0.1:6000 upnp-igd:2', 'TCP 127.0.0.2:5000 nat-pmp', 'UDP 127.0.0.1:5000 nat-pmp']);
  });

  it('§3.5 an unsupported opcode gets result 5 in an 8-octet answer with opcode + 128', async () => {
    const f = await start();
    const answer = await natPmp(f, Buffer.from([0, 3, 0, 0]));
    expect(answer).toMatchObject({ version: 0, opcode: 131, result: 5, length: 8 });
  });

  it('§3.5 an opcode of 128 or more is a response: never answered (two servers would answer each other forever)', async () => {
    const f = await start();
    // What a NAT-PMP server answers (an external address, a mapping, result 5) sent back to it.
    const responses = [
      Buffer.from([0, 128, 0, 0, 0, 0, 0, 9, 203, 0, 113, 1]),
      Buffer.from([0, 130, 0, 0, 0, 0, 0, 9, 0x13, 0x88, 0x13, 0x88, 0, 0, 0x0e, 0x10]),
      Buffer.from([0, 131, 0, 5, 0, 0, 0, 9]),
      Buffer.from([0, 255]),
    ];
    for (const packet of responses) expect(await f.send(packet, CLIENT, 300), `opcode ${packet[1]}`).toBeUndefined();
    expect(f.mappings.size).toBe(0);
    expect(await natPmp(f, NAT_PMP_EXTERNAL_ADDRESS_REQUEST)).toMatchObject({ opcode: 128, result: 0 });
  });

  it('§3.5 without PCP, another version gets the Unsupported Version answer: version 0, OP 0, result 1, the epoch', async () => {
    const f = await start({ options: { pcp: false } });
    const epoch = (await natPmp(f, NAT_PMP_EXTERNAL_ADDRESS_REQUEST)).epoch;
    expect(await natPmp(f, announceRequest(CLIENT))).toEqual({ version: 0, opcode: 0, result: 1, epoch, length: 8 });
    expect(
      await natPmp(f, mapRequest({ client: CLIENT, nonce: randomBytes(12), protocol: PCP.protocol.tcp, internalPort: 5000, lifetime: 3600 })),
    ).toMatchObject({ version: 0, opcode: 0, result: 1 });
    // A PCP response (R bit set: a PCP server's answer to that answer) is not answered again.
    const pcpAnswer = Buffer.alloc(24);
    pcpAnswer.set([2, 0x80, 0, 1]);
    expect(await f.send(pcpAnswer, CLIENT, 300)).toBeUndefined();
  });

  it('maps the refusals of policies and the lifecycle to result codes 2, 3 and 4', async () => {
    const denied = await start({ plugins: [refusing(UpnpErrorCode.NotAuthorized)] });
    expect(await natPmp(denied, natPmpMapRequest('tcp', 5000, 5000, 3600))).toMatchObject({ result: 2, externalPort: 0, lifetime: 0 });
    await denied.close();
    const quota = await start({ plugins: [refusing(UpnpErrorCode.NoPortMapsAvailable)] });
    expect(await natPmp(quota, natPmpMapRequest('tcp', 5000, 5000, 3600))).toMatchObject({ result: 4 });
    await quota.close();
    const broken = await start();
    broken.backend.failWhen = () => true;
    expect(await natPmp(broken, natPmpMapRequest('tcp', 5000, 5000, 3600))).toMatchObject({ result: 3 });
    expect(broken.mappings.size).toBe(0);
  });

  it("secure mode applies: a client maps only to itself (the mapping's client is the sender)", async () => {
    const f = await start();
    await natPmp(f, natPmpMapRequest('tcp', 5000, 5000, 3600), OTHER_CLIENT);
    expect(f.mappings.get({ remoteHost: '', externalPort: 5000, protocol: 'TCP' })?.internalClient).toBe(OTHER_CLIENT);
  });

  it('shares the per-client state-change limit with UPnP: past the burst, result 4 (out of resources)', async () => {
    const f = await start({ config: { limits: { stateChanges: { burst: 2, perSecond: 0.001 } } } });
    f.limits.admitStateChange(CLIENT, 'AddPortMapping');
    expect(await natPmp(f, natPmpMapRequest('tcp', 5000, 5000, 3600))).toMatchObject({ result: 0 });
    expect(await natPmp(f, natPmpMapRequest('tcp', 5001, 5001, 3600))).toMatchObject({ result: 4 });
    expect(f.mappings.size).toBe(1);
  });

  it('drops what is too short to be a request, and answers the next request', async () => {
    const f = await start();
    expect(await f.send(Buffer.from([0]))).toBeUndefined();
    expect(await f.send(Buffer.from([0, 2, 0, 0, 0x13]))).toBeUndefined();
    expect(await natPmp(f, NAT_PMP_EXTERNAL_ADDRESS_REQUEST)).toMatchObject({ result: 0 });
  });

  it('answers LAN sources only', async () => {
    const f = await start({ lan: { interface: 'lo', address: '127.0.0.1', prefixLength: 32 } });
    expect(await f.send(NAT_PMP_EXTERNAL_ADDRESS_REQUEST, OTHER_CLIENT)).toBeUndefined();
    expect(await f.send(natPmpMapRequest('tcp', 5000, 5000, 3600), OTHER_CLIENT)).toBeUndefined();
    expect(f.mappings.size).toBe(0);
    expect(await natPmp(f, NAT_PMP_EXTERNAL_ADDRESS_REQUEST)).toMatchObject({ result: 0 });
  });

  it('in dry-run answers on loopback only, even when --lan names other interfaces', async () => {
    const f = await start({
      config: { dryRun: true },
      lan: { interface: 'br-lan', address: '192.0.2.1', prefixLength: 24 },
      lanFromCommandLine: true,
    });
    expect(f.frontEnd.describe()).toEqual([`udp://127.0.0.1:${f.port}`]);
    expect(await natPmp(f, NAT_PMP_EXTERNAL_ADDRESS_REQUEST)).toMatchObject({ result: 0 });
  });

  it('§3.6 the epoch counts seconds since the state began', async () => {
    const f = await start();
    const before = (await natPmp(f, NAT_PMP_EXTERNAL_ADDRESS_REQUEST)).epoch;
    await f.clock.advance(5_000);
    expect((await natPmp(f, NAT_PMP_EXTERNAL_ADDRESS_REQUEST)).epoch).toBe(before + 5);
  });

  it('§3.6 (RFC 6887 §8.5) the epoch kept in the state directory goes on when the mappings came back, and starts again when they were lost', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'upnpd-epoch-lost-'));
    try {
      let wall = 1_700_000_000_000;
      const kept = await Epoch.persisted(dir, silentLogger, () => wall);
      await kept.externalAddressIs(TEST_EXTERNAL_IP);
      // A restart 1000 s later.
      wall += 1_000_000;
      const epochSeen = async (restoredState: RestoredState) => {
        const f = await startNatPmp({ restoredState, epoch: await Epoch.persisted(dir, silentLogger, () => wall) });
        try {
          return (await natPmp(f, NAT_PMP_EXTERNAL_ADDRESS_REQUEST)).epoch;
        } finally {
          await f.close();
        }
      };
      expect(await epochSeen('intact')).toBeGreaterThanOrEqual(1000);
      expect(await epochSeen('lost')).toBeLessThan(5);
      // The new epoch is the one kept from then on.
      wall += 30_000;
      expect(await epochSeen('intact')).toBe(30);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('one table for UPnP, NAT-PMP and PCP', () => {
  it('the same client asking through UPnP and NAT-PMP gets the one mapping, and a NAT-PMP renewal never shortens it', async () => {
    const f = await start();
    await f.mappings.add(upnpRequest({ leaseSeconds: 7200 }), UPNP);
    const answer = await natPmp(f, natPmpMapRequest('tcp', 6000, 6000, 120));
    expect(answer).toMatchObject({ result: 0, externalPort: 6000 });
    expect(answer.lifetime).toBeGreaterThanOrEqual(7199);
    expect(f.mappings.size).toBe(1);
    expect(f.mappings.remainingSeconds(f.mappings.get({ remoteHost: '', externalPort: 6000, protocol: 'TCP' })!)).toBeGreaterThanOrEqual(7199);
  });

  it('a UPnP renewal of a NAT-PMP mapping never shortens it either; a UPnP lease renewed through UPnP keeps its own rules', async () => {
    const f = await start();
    await natPmp(f, natPmpMapRequest('tcp', 6000, 6000, 7200));
    const renewed = await f.mappings.add(upnpRequest({ leaseSeconds: 3 }), UPNP);
    expect(f.mappings.remainingSeconds(renewed)).toBeGreaterThanOrEqual(7199);
    // The length kept is the longer one too: it bounds the lease restored after a restart.
    expect(renewed.leaseSeconds).toBe(7200);
    const again = await f.mappings.add(upnpRequest({ leaseSeconds: 3 }), UPNP);
    expect(f.mappings.remainingSeconds(again)).toBe(3);
  });

  it('deleting through either protocol deletes the one mapping', async () => {
    const f = await start();
    await f.mappings.add(upnpRequest(), UPNP);
    await natPmp(f, natPmpMapRequest('tcp', 6000, 6000, 3600));
    expect(await natPmp(f, natPmpMapRequest('tcp', 6000, 0, 0))).toMatchObject({ result: 0 });
    expect(f.mappings.size).toBe(0);
  });

  it('a port held through NAT-PMP is never given to another client through UPnP (718), nor through PCP', async () => {
    const f = await start();
    await natPmp(f, natPmpMapRequest('tcp', 5000, 5000, 3600));
    await expect(
      f.mappings.add(upnpRequest({ internalClient: OTHER_CLIENT, externalPort: 5000 }), { address: OTHER_CLIENT, via: 'upnp-igd:2' }),
    ).rejects.toMatchObject({ upnpCode: 718 });
    const viaPcp = await pcp(f, mapRequest({ ...MAP, client: OTHER_CLIENT, internalPort: 5000, suggestedPort: 5000 }), OTHER_CLIENT);
    expect(viaPcp.result).toBe(0);
    expect(viaPcp.map?.externalPort).not.toBe(5000);
  });
});

const NONCE = Buffer.from('00112233445566778899aabb', 'hex');
const MAP: MapRequestSpec = { client: CLIENT, nonce: NONCE, protocol: PCP.protocol.tcp, internalPort: 7000, suggestedPort: 7000, lifetime: 3600 };

describe('PCP version 2 (RFC 6887)', () => {
  it('§14.1 answers ANNOUNCE: version 2, the response bit, SUCCESS, 24 octets', async () => {
    const f = await start();
    expect(await pcp(f, announceRequest(CLIENT))).toMatchObject({ version: 2, opcode: 0, isResponse: true, result: 0, length: 24 });
  });

  it('§11 MAP: SUCCESS, the nonce echoed, the external address and port, one table entry owned by the nonce', async () => {
    const f = await start();
    const answer = await pcp(f, mapRequest(MAP));
    expect(answer).toMatchObject({
      result: 0,
      opcode: 1,
      lifetime: 3600,
      map: { protocol: 6, internalPort: 7000, externalPort: 7000, externalAddress: '203.0.113.1' },
    });
    expect(answer.map!.nonce.equals(NONCE)).toBe(true);
    expect(f.mappings.get({ remoteHost: '', externalPort: 7000, protocol: 'TCP' })).toMatchObject({
      description: 'PCP 127.0.0.1:7000',
      createdBy: { via: 'pcp' },
      ownerNonce: NONCE.toString('hex'),
    });
  });

  it('§11.2 a renewal with the same nonce succeeds; a renewal or delete with another nonce is NOT_AUTHORIZED and changes nothing', async () => {
    const f = await start();
    await pcp(f, mapRequest(MAP));
    expect(await pcp(f, mapRequest({ ...MAP, lifetime: 7200 }))).toMatchObject({ result: 0, lifetime: 7200 });
    const thief = randomBytes(12);
    expect(await pcp(f, mapRequest({ ...MAP, nonce: thief }))).toMatchObject({ result: PCP.result.NOT_AUTHORIZED, lifetime: 1800 });
    expect(await pcp(f, mapRequest({ ...MAP, nonce: thief, lifetime: 0 }))).toMatchObject({ result: PCP.result.NOT_AUTHORIZED });
    expect(await pcp(f, mapRequest({ ...MAP, nonce: thief, internalPort: 0, lifetime: 0 }))).toMatchObject({ result: 0 });
    expect(f.mappings.get({ remoteHost: '', externalPort: 7000, protocol: 'TCP' })?.ownerNonce).toBe(NONCE.toString('hex'));
    expect(await pcp(f, mapRequest({ ...MAP, lifetime: 0 }))).toMatchObject({ result: 0, lifetime: 0 });
    expect(f.mappings.size).toBe(0);
  });

  it('clamps lifetimes as NAT-PMP does', async () => {
    const f = await start();
    expect(await pcp(f, mapRequest({ ...MAP, lifetime: 1 }))).toMatchObject({ result: 0, lifetime: 120 });
    expect(await pcp(f, mapRequest({ ...MAP, lifetime: 0xffffffff }))).toMatchObject({ result: 0, lifetime: 86_400 });
  });

  it('§13.1 THIRD_PARTY is NOT_AUTHORIZED unless allowed; allowed (and secure mode off) it maps for the other host', async () => {
    const f = await start();
    expect(await pcp(f, mapRequest({ ...MAP, options: [thirdPartyOption(OTHER_CLIENT)] }))).toMatchObject({ result: PCP.result.NOT_AUTHORIZED });
    expect(f.mappings.size).toBe(0);
    await f.close();
    const g = await start({ options: { allowThirdParty: true }, secureMode: false });
    expect(await pcp(g, mapRequest({ ...MAP, options: [thirdPartyOption(OTHER_CLIENT)] }))).toMatchObject({ result: 0 });
    expect(g.mappings.get({ remoteHost: '', externalPort: 7000, protocol: 'TCP' })?.internalClient).toBe(OTHER_CLIENT);
    // Never to a host outside the LAN, nor its broadcast address (lan-target holds without secure mode).
    for (const outside of ['8.8.8.8', '127.255.255.255']) {
      const answer = await pcp(g, mapRequest({ ...MAP, internalPort: 7001, suggestedPort: 7001, options: [thirdPartyOption(outside)] }));
      expect(answer, outside).toMatchObject({ result: PCP.result.NOT_AUTHORIZED });
    }
    expect(g.mappings.size).toBe(1);
  });

  it("§13.1 a THIRD_PARTY naming the sender's own address is MALFORMED_REQUEST, whether THIRD_PARTY is allowed or not", async () => {
    for (const allowThirdParty of [false, true]) {
      const f = await start({ options: { allowThirdParty } });
      const answer = await pcp(f, mapRequest({ ...MAP, options: [thirdPartyOption(CLIENT)] }));
      expect(answer, `allowThirdParty ${allowThirdParty}`).toMatchObject({ result: PCP.result.MALFORMED_REQUEST });
      expect(f.mappings.size).toBe(0);
      await f.close();
    }
  });

  it('THIRD_PARTY allowed still meets secure mode: NOT_AUTHORIZED', async () => {
    const f = await start({ options: { allowThirdParty: true } });
    expect(await pcp(f, mapRequest({ ...MAP, options: [thirdPartyOption(OTHER_CLIENT)] }))).toMatchObject({ result: PCP.result.NOT_AUTHORIZED });
  });

  it('§7.4 a client past its own quota gets USER_EX_QUOTA (a short-lived error), a full gateway NO_RESOURCES; NAT-PMP says 4 for both', async () => {
    const quota = new QuotaPolicy({ perClient: 1, total: 2 }, new RefusalReporter('quota', new RefusalRegistry(), silentLogger, systemClock));
    const f = await start({ plugins: [quota] });
    expect(await pcp(f, mapRequest(MAP))).toMatchObject({ result: PCP.result.SUCCESS });
    const second = { ...MAP, internalPort: 7001, suggestedPort: 7001 };
    expect(await pcp(f, mapRequest(second))).toMatchObject({ result: PCP.result.USER_EX_QUOTA, lifetime: 30 });
    // The port is not what is refused, so PREFER_FAILURE does not turn it into CANNOT_PROVIDE_EXTERNAL.
    expect(await pcp(f, mapRequest({ ...second, options: [PREFER_FAILURE] }))).toMatchObject({ result: PCP.result.USER_EX_QUOTA });
    expect(await natPmp(f, natPmpMapRequest('tcp', 7002, 7002, 3600))).toMatchObject({ result: 4 });
    // A renewal of what the client holds is not a new mapping.
    expect(await pcp(f, mapRequest({ ...MAP, lifetime: 7200 }))).toMatchObject({ result: PCP.result.SUCCESS, lifetime: 7200 });
    expect(await pcp(f, mapRequest({ ...MAP, client: OTHER_CLIENT, internalPort: 7003, suggestedPort: 7003 }), OTHER_CLIENT)).toMatchObject({
      result: PCP.result.SUCCESS,
    });
    const third = '127.0.0.3';
    expect(await pcp(f, mapRequest({ ...MAP, client: third, internalPort: 7004, suggestedPort: 7004 }), third)).toMatchObject({
      result: PCP.result.NO_RESOURCES,
      lifetime: 30,
    });
    expect(await natPmp(f, natPmpMapRequest('tcp', 7005, 7005, 3600), third)).toMatchObject({ result: 4 });
    expect(f.mappings.size).toBe(2);
  });

  it('§13.2 PREFER_FAILURE: the suggested port or CANNOT_PROVIDE_EXTERNAL; without it, another port', async () => {
    const f = await start();
    await f.mappings.add(upnpRequest({ internalClient: OTHER_CLIENT, externalPort: 7000 }), { address: OTHER_CLIENT, via: 'upnp-igd:2' });
    expect(await pcp(f, mapRequest({ ...MAP, options: [PREFER_FAILURE] }))).toMatchObject({ result: PCP.result.CANNOT_PROVIDE_EXTERNAL });
    expect(await pcp(f, mapRequest({ ...MAP, suggestedAddress: '198.51.100.1', suggestedPort: 7001, options: [PREFER_FAILURE] }))).toMatchObject({
      result: PCP.result.CANNOT_PROVIDE_EXTERNAL,
    });
    expect(await pcp(f, mapRequest({ ...MAP, suggestedPort: 7001, options: [PREFER_FAILURE] }))).toMatchObject({ result: 0, map: { externalPort: 7001 } });
    const other = await pcp(f, mapRequest({ ...MAP, internalPort: 7002, suggestedPort: 7000 }));
    expect(other.result).toBe(0);
    expect(other.map?.externalPort).not.toBe(7000);
  });

  it('§13.3 FILTER restricts the mapping to the remote peer (the remote host of the table); a new FILTER moves it', async () => {
    const f = await start();
    expect(await pcp(f, mapRequest({ ...MAP, options: [filterOption('198.51.100.7')] }))).toMatchObject({ result: 0 });
    expect([...f.mappings.values()].map((m) => m.remoteHost)).toEqual(['198.51.100.7']);
    expect(await pcp(f, mapRequest({ ...MAP, options: [filterOption('198.51.100.8')] }))).toMatchObject({ result: 0 });
    expect([...f.mappings.values()].map((m) => m.remoteHost)).toEqual(['198.51.100.8']);
    expect(await pcp(f, mapRequest({ ...MAP, options: [filterOption('0.0.0.0', 0)] }))).toMatchObject({ result: 0 });
    expect([...f.mappings.values()].map((m) => m.remoteHost)).toEqual(['']);
  });

  it('a new FILTER that is refused (a policy, PREFER_FAILURE with the port taken) leaves the mapping as it was', async () => {
    const f = await start({ plugins: [refusingPeer('198.51.100.9')] });
    expect(await pcp(f, mapRequest({ ...MAP, options: [filterOption('198.51.100.7')] }))).toMatchObject({ result: 0, map: { externalPort: 7000 } });
    const held = () => [...f.mappings.values()].map((m) => `${m.remoteHost} ${m.externalPort} ${m.internalClient}:${m.internalPort} ${m.ownerNonce}`);
    const before = held();
    expect(before).toEqual([`198.51.100.7 7000 ${CLIENT}:7000 ${NONCE.toString('hex')}`]);
    expect(await pcp(f, mapRequest({ ...MAP, options: [filterOption('198.51.100.9')] }))).toMatchObject({ result: PCP.result.NOT_AUTHORIZED });
    expect(held()).toEqual(before);
    await f.mappings.add(upnpRequest({ externalPort: 7100, internalClient: OTHER_CLIENT, internalPort: 7100 }), { address: OTHER_CLIENT, via: 'upnp-igd:2' });
    const preferred = mapRequest({ ...MAP, suggestedPort: 7100, options: [filterOption('198.51.100.8'), PREFER_FAILURE] });
    expect(await pcp(f, preferred)).toMatchObject({ result: PCP.result.CANNOT_PROVIDE_EXTERNAL });
    expect(held().filter((m) => m.endsWith(NONCE.toString('hex')))).toEqual(before);
    // Its lease is the one it had.
    const mapping = [...f.mappings.values()].find((m) => m.internalPort === 7000)!;
    expect(f.mappings.remainingSeconds(mapping)).toBeGreaterThan(3500);
  });

  it('FILTER the table cannot hold: several peers EXCESSIVE_REMOTE_PEERS, a prefix or a remote port UNSUPP_OPTION', async () => {
    const f = await start();
    const answer = (options: MapRequestSpec['options']) => pcp(f, mapRequest({ ...MAP, options }));
    expect(await answer([filterOption('198.51.100.7'), filterOption('198.51.100.8')])).toMatchObject({ result: PCP.result.EXCESSIVE_REMOTE_PEERS });
    expect(await answer([filterOption('198.51.100.0', 120)])).toMatchObject({ result: PCP.result.UNSUPP_OPTION });
    expect(await answer([filterOption('198.51.100.7', 128, 443)])).toMatchObject({ result: PCP.result.UNSUPP_OPTION });
    expect(await answer([filterOption('198.51.100.7', 64)])).toMatchObject({ result: PCP.result.MALFORMED_OPTION });
    expect(f.mappings.size).toBe(0);
  });

  it('§8.3 the client address field must be the sender: ADDRESS_MISMATCH (also for an IPv6 internal address, not served yet)', async () => {
    const f = await start();
    expect(await pcp(f, mapRequest({ ...MAP, client: OTHER_CLIENT }))).toMatchObject({ result: PCP.result.ADDRESS_MISMATCH });
    expect(await pcp(f, announceRequest(OTHER_CLIENT))).toMatchObject({ result: PCP.result.ADDRESS_MISMATCH });
    const v6 = mapRequest(MAP);
    Buffer.from('20010db8000000000000000000000001', 'hex').copy(v6, 8);
    expect(await pcp(f, v6)).toMatchObject({ result: PCP.result.ADDRESS_MISMATCH });
    expect(f.mappings.size).toBe(0);
  });

  it('§9 another version gets UNSUPP_VERSION answered as version 2; version 0 on the same port is NAT-PMP', async () => {
    const f = await start();
    for (const version of [1, 3, 255]) {
      expect(await pcp(f, announceRequest(CLIENT, version))).toMatchObject({ version: 2, result: PCP.result.UNSUPP_VERSION });
    }
    expect(await natPmp(f, NAT_PMP_EXTERNAL_ADDRESS_REQUEST)).toMatchObject({ version: 0, opcode: 128 });
  });

  it('§8.3 unknown opcodes and PEER are UNSUPP_OPCODE', async () => {
    const f = await start();
    expect(await pcp(f, mapRequest({ ...MAP, opcode: PCP.opcode.peer }))).toMatchObject({ result: PCP.result.UNSUPP_OPCODE, opcode: 2 });
    expect(await pcp(f, mapRequest({ ...MAP, opcode: 42 }))).toMatchObject({ result: PCP.result.UNSUPP_OPCODE, opcode: 42 });
  });

  it('§7.3 an unknown mandatory option is UNSUPP_OPTION; an unknown optional one is ignored; a FILTER on ANNOUNCE is not for that opcode', async () => {
    const f = await start();
    expect(await pcp(f, mapRequest({ ...MAP, options: [{ code: 99, data: Buffer.alloc(4) }] }))).toMatchObject({ result: PCP.result.UNSUPP_OPTION });
    expect(await pcp(f, mapRequest({ ...MAP, options: [{ code: 200, data: Buffer.alloc(3) }] }))).toMatchObject({ result: 0 });
    const announceWithFilter = Buffer.concat([announceRequest(CLIENT), mapRequest({ ...MAP, options: [filterOption('198.51.100.7')] }).subarray(60)]);
    expect(await pcp(f, announceWithFilter)).toMatchObject({ result: PCP.result.UNSUPP_OPTION });
  });

  it('§7-§8 malformed requests get MALFORMED_REQUEST or MALFORMED_OPTION; responses and scraps are dropped', async () => {
    const f = await start();
    const map = mapRequest(MAP);
    // Both are long lifetime errors (RFC 6887 §7.4: 30 minutes recommended): the same request will not do better soon.
    expect(await pcp(f, Buffer.concat([map, Buffer.alloc(2)]))).toMatchObject({ result: PCP.result.MALFORMED_REQUEST, lifetime: 1800 });
    expect(await pcp(f, map.subarray(0, 48))).toMatchObject({ result: PCP.result.MALFORMED_REQUEST });
    expect(await pcp(f, announceRequest(CLIENT).subarray(0, 20))).toMatchObject({ result: PCP.result.MALFORMED_REQUEST });
    expect(await pcp(f, Buffer.concat([map, Buffer.alloc(1104 - map.length)]))).toMatchObject({ result: PCP.result.MALFORMED_REQUEST });
    const overrun = mapRequest({ ...MAP, options: [filterOption('198.51.100.7')] });
    overrun.writeUInt16BE(40, 62);
    expect(await pcp(f, overrun)).toMatchObject({ result: PCP.result.MALFORMED_OPTION, lifetime: 1800 });
    expect(await pcp(f, mapRequest({ ...MAP, options: [PREFER_FAILURE, PREFER_FAILURE] }))).toMatchObject({ result: PCP.result.MALFORMED_OPTION });
    expect(await pcp(f, mapRequest({ ...MAP, protocol: 0 }))).toMatchObject({ result: PCP.result.UNSUPP_PROTOCOL });
    expect(await pcp(f, mapRequest({ ...MAP, protocol: 132 }))).toMatchObject({ result: PCP.result.UNSUPP_PROTOCOL });
    expect(await pcp(f, mapRequest({ ...MAP, internalPort: 0 }))).toMatchObject({ result: PCP.result.MALFORMED_REQUEST });
    const response = announceRequest(CLIENT);
    response[1] = 0x80;
    expect(await f.send(response)).toBeUndefined();
    expect(await f.send(Buffer.from([2]))).toBeUndefined();
    expect(f.mappings.size).toBe(0);
  });

  it('survives random datagrams of every length and still answers', async () => {
    const f = await start();
    for (let i = 0; i < 300; i++) {
      const packet = randomBytes(i % 70);
      if (i % 3 === 0 && packet.length > 0) packet[0] = i % 2 === 0 ? 0 : 2;
      await f.send(packet, CLIENT, 20).catch(() => undefined);
    }
    expect(await pcp(f, announceRequest(CLIENT))).toMatchObject({ result: 0 });
    expect(await natPmp(f, NAT_PMP_EXTERNAL_ADDRESS_REQUEST)).toMatchObject({ result: 0 });
  });
});

describe('where NAT-PMP/PCP listens', () => {
  it('says it listens on no address when its port is taken everywhere, rather than "listening on " and nothing', async () => {
    const taken = createSocket('udp4');
    await new Promise<void>((resolve) => taken.bind(0, '127.0.0.1', resolve));
    try {
      const logger = new RecordingLogger();
      await start({ logger, options: { port: taken.address().port } });
      expect(logger.lines.filter((l) => l.message.includes('listening on'))).toEqual([
        { level: 'warn', message: 'NAT-PMP and PCP listening on no address: no NAT-PMP or PCP request is answered' },
      ]);
      expect(logger.lines.some((l) => l.level === 'error' && l.message.startsWith(`NAT-PMP/PCP cannot listen on 127.0.0.1 port ${taken.address().port}`))).toBe(
        true,
      );
    } finally {
      taken.close();
    }
  });
});
