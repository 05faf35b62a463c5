import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BackendError, ClientQuotaError, UpnpError, UpnpErrorCode } from '../../core/errors.js';
import { silentLogger } from '../../core/logger.js';
import { ANNOUNCEMENTS, Announcer } from '../../plugins/nat-pmp/announcer.js';
import { answerFor, portUnavailable, refusalOf, type Refusal } from '../../plugins/nat-pmp/answers.js';
import { PCP_MAX_MESSAGE, PcpResult, addressBytes, addressText, parseNatPmp, parsePcp, pcpResponse } from '../../plugins/nat-pmp/codec.js';
import { EPOCH_FILE, Epoch } from '../../plugins/nat-pmp/epoch.js';
import { natPmpOptionsSchema } from '../../plugins/nat-pmp/options.js';
import { ManualClock, RecordingLogger } from '../support/fakes.js';
import { useTempDir } from '../support/temp-dir.js';

describe('packet codec', () => {
  it('parses any datagram without throwing (NAT-PMP and PCP)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1200 }), (bytes) => {
        const packet = Buffer.from(bytes);
        parseNatPmp(packet);
        const parsed = parsePcp(packet);
        if (parsed.kind === 'error') expect(parsed.body.length).toBeLessThanOrEqual(PCP_MAX_MESSAGE);
      }),
      { numRuns: 3000 },
    );
  });

  it('parses any MAP-shaped datagram with random options without throwing, and answers within 1100 octets, a multiple of 4', () => {
    const header = Buffer.alloc(60);
    header[0] = 2;
    header[1] = 1;
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1100 }), (options) => {
        const parsed = parsePcp(Buffer.concat([header, Buffer.from(options)]));
        if (parsed.kind === 'drop') return;
        const response = pcpResponse({
          opcode: 1,
          result: PcpResult.SUCCESS,
          lifetime: 1,
          epoch: 1,
          body: parsed.kind === 'error' ? parsed.body : parsed.request.body,
        });
        expect(response.length % 4).toBe(0);
        expect(response.length).toBeLessThanOrEqual(PCP_MAX_MESSAGE);
      }),
      { numRuns: 3000 },
    );
  });

  it('carries IPv4 addresses IPv4-mapped and IPv6 ones as they are (RFC 6887 §5)', () => {
    expect(addressBytes('192.0.2.1').toString('hex')).toBe('00000000000000000000ffffc0000201');
    expect(addressText(addressBytes('192.0.2.1'))).toBe('192.0.2.1');
    expect(addressText(addressBytes('2001:db8::1'))).toBe('2001:db8::1');
    expect(addressText(Buffer.alloc(16))).toBe('::');
  });

  it('reads a NAT-PMP mapping request field by field (RFC 6886 §3.3)', () => {
    const request = Buffer.from('0002000013881f9000000e10', 'hex');
    expect(parseNatPmp(request)).toEqual({ kind: 'map', protocol: 'TCP', internalPort: 5000, suggestedExternalPort: 8080, lifetime: 3600 });
    expect(parseNatPmp(request.subarray(0, 11))).toEqual({ kind: 'malformed' });
    expect(parseNatPmp(Buffer.from([0, 7]))).toEqual({ kind: 'unsupported-opcode', opcode: 7 });
    expect(parseNatPmp(Buffer.from([0, 128]))).toEqual({ kind: 'response' });
    expect(parseNatPmp(Buffer.from([0, 0x87]))).toEqual({ kind: 'response' });
  });
});

describe('result codes: one place turns refusals into NAT-PMP and PCP answers', () => {
  const cases: Array<[string, Refusal, { natPmp: number; pcp: number }]> = [
    ['secure mode / permissions (606)', refusalOf(new UpnpError(UpnpErrorCode.NotAuthorized)), { natPmp: 2, pcp: PcpResult.NOT_AUTHORIZED }],
    ['a reserved port (718)', refusalOf(new UpnpError(UpnpErrorCode.ConflictInMappingEntry)), { natPmp: 2, pcp: PcpResult.NOT_AUTHORIZED }],
    ["the gateway's quota or no free port (728)", refusalOf(new UpnpError(UpnpErrorCode.NoPortMapsAvailable)), { natPmp: 4, pcp: PcpResult.NO_RESOURCES }],
    [
      'every port refused as not authorized (728 from 606)',
      refusalOf(new UpnpError(UpnpErrorCode.NoPortMapsAvailable, undefined, { cause: new UpnpError(UpnpErrorCode.NotAuthorized) })),
      { natPmp: 2, pcp: PcpResult.NOT_AUTHORIZED },
    ],
    ["the client's own quota (728)", refusalOf(new ClientQuotaError(UpnpErrorCode.NoPortMapsAvailable)), { natPmp: 4, pcp: PcpResult.USER_EX_QUOTA }],
    [
      "no port could be had because of the client's own quota (728 from 728)",
      refusalOf(new UpnpError(UpnpErrorCode.NoPortMapsAvailable, undefined, { cause: new ClientQuotaError(UpnpErrorCode.NoPortMapsAvailable) })),
      { natPmp: 4, pcp: PcpResult.USER_EX_QUOTA },
    ],
    ["the client's own pinhole quota (701)", refusalOf(new ClientQuotaError(UpnpErrorCode.PinholeSpaceExhausted)), { natPmp: 4, pcp: PcpResult.USER_EX_QUOTA }],
    ["the gateway's pinhole quota (701)", refusalOf(new UpnpError(UpnpErrorCode.PinholeSpaceExhausted)), { natPmp: 4, pcp: PcpResult.NO_RESOURCES }],
    ['the state cannot be written (501)', refusalOf(new UpnpError(UpnpErrorCode.ActionFailed)), { natPmp: 4, pcp: PcpResult.NO_RESOURCES }],
    ['the firewall failed', refusalOf(new BackendError('boom')), { natPmp: 3, pcp: PcpResult.NETWORK_FAILURE }],
    ['no external address', { kind: 'no-external-address' }, { natPmp: 3, pcp: PcpResult.NETWORK_FAILURE }],
    ['the client state-change rate', { kind: 'rate-limited' }, { natPmp: 4, pcp: PcpResult.NO_RESOURCES }],
    ['a bug', refusalOf(new TypeError('x')), { natPmp: 3, pcp: PcpResult.NETWORK_FAILURE }],
  ];
  it.each(cases)('%s', (_name, refusal, expected) => {
    expect(answerFor(refusal)).toEqual(expected);
  });

  it('PREFER_FAILURE: a port taken or refused for itself is CANNOT_PROVIDE_EXTERNAL, a client refused everywhere is not', () => {
    expect(portUnavailable(refusalOf(new UpnpError(UpnpErrorCode.NoPortMapsAvailable)))).toBe(true);
    const reserved = new UpnpError(UpnpErrorCode.NoPortMapsAvailable, undefined, { cause: new UpnpError(UpnpErrorCode.ConflictInMappingEntry) });
    expect(portUnavailable(refusalOf(reserved))).toBe(true);
    const notAuthorized = new UpnpError(UpnpErrorCode.NoPortMapsAvailable, undefined, { cause: new UpnpError(UpnpErrorCode.NotAuthorized) });
    expect(portUnavailable(refusalOf(notAuthorized))).toBe(false);
  });
});

describe('options', () => {
  it('default to RFC 6887 §15 lifetimes, PCP on, THIRD_PARTY refused, port 5351', () => {
    expect(natPmpOptionsSchema.parse({})).toMatchObject({
      pcp: true,
      lifetime: { minSeconds: 120, maxSeconds: 86_400 },
      allowThirdParty: false,
      announce: true,
      requestsPerClient: { burst: 128, perSecond: 64 },
      pending: { perClient: 128, total: 1024 },
      port: 5351,
    });
  });

  it('refuse a minimum above the maximum and unknown keys, naming the key', () => {
    const inverted = natPmpOptionsSchema.safeParse({ lifetime: { minSeconds: 600, maxSeconds: 60 } });
    expect(inverted.success).toBe(false);
    expect(inverted.error?.issues[0]?.path).toEqual(['lifetime']);
    const unknown = natPmpOptionsSchema.safeParse({ lifetimes: {} });
    expect(unknown.error?.issues[0]?.code).toBe('unrecognized_keys');
  });
});

describe('epoch (RFC 6886 §3.6, RFC 6887 §8.5)', () => {
  const dir = useTempDir('upnpd-epoch-');
  let wall = 1_700_000_000_000;
  const wallNow = () => wall;
  // Each Epoch is given both clocks; time passing moves both (a restart's new process included).
  let monotonic = 5_000;
  const monotonicNow = () => monotonic;
  const persisted = () => Epoch.persisted(dir.path, silentLogger, wallNow, monotonicNow);
  const pass = (ms: number) => {
    wall += ms;
    monotonic += ms;
  };

  it('says once that it cannot keep the epoch, not at every save, and says when it can again', async () => {
    const logger = new RecordingLogger();
    const blocked = join(dir.path, 'not-a-directory');
    writeFileSync(blocked, '');
    const epoch = await Epoch.persisted(join(blocked, 'state'), logger, wallNow, monotonicNow);
    await epoch.externalAddressIs('203.0.113.1');
    await epoch.externalAddressIs('203.0.113.2');
    await epoch.startAgain();
    const errors = () => logger.lines.filter((line) => line.level === 'error' && line.message.includes('cannot keep the NAT-PMP/PCP epoch'));
    expect(errors()).toHaveLength(1);
    rmSync(blocked);
    await epoch.startAgain();
    expect(logger.lines.at(-1)).toMatchObject({ level: 'info', message: expect.stringContaining('is kept in') as unknown });
    expect(readFileSync(join(blocked, 'state', EPOCH_FILE), 'utf8')).toContain('203.0.113.2');
  });

  it('counts seconds from the start of the state and survives a restart with the same state directory', async () => {
    const first = await persisted();
    await first.externalAddressIs('203.0.113.1');
    pass(90_000);
    expect(first.seconds()).toBe(90);
    const again = await persisted();
    await again.externalAddressIs('203.0.113.1');
    expect(again.seconds()).toBe(90);
  });

  it('starts again when the external address changes (also across a restart), not when it first appears or goes away', async () => {
    const epoch = await persisted();
    expect(await epoch.externalAddressIs('203.0.113.1')).toBe(false);
    pass(50_000);
    expect(await epoch.externalAddressIs(undefined)).toBe(false);
    expect(epoch.seconds()).toBe(50);
    expect(await epoch.externalAddressIs('203.0.113.9')).toBe(true);
    expect(epoch.seconds()).toBe(0);
    pass(10_000);
    const restarted = await persisted();
    expect(await restarted.externalAddressIs('203.0.113.10')).toBe(true);
    expect(restarted.seconds()).toBe(0);
  });

  it('starts again when the state is lost, unreadable, or begins in the future (the wall clock went back)', async () => {
    const epoch = await persisted();
    pass(30_000);
    expect(epoch.seconds()).toBe(30);
    writeFileSync(join(dir.path, EPOCH_FILE), 'not json');
    expect((await persisted()).seconds()).toBe(0);
    const stored = JSON.parse(readFileSync(join(dir.path, EPOCH_FILE), 'utf8')) as { startedAt: number };
    writeFileSync(join(dir.path, EPOCH_FILE), JSON.stringify({ ...stored, version: 1, startedAt: wall + 3_600_000, externalAddress: null }));
    expect((await persisted()).seconds()).toBe(0);
  });

  it('counts on the monotonic clock while running: a step of the wall clock, back or forward, moves it neither way', async () => {
    const epoch = await persisted();
    await epoch.externalAddressIs('203.0.113.1');
    pass(40_000);
    expect(epoch.seconds()).toBe(40);
    wall -= 3_600_000;
    pass(1_000);
    expect(epoch.seconds()).toBe(41);
    wall += 86_400_000;
    pass(1_000);
    expect(epoch.seconds()).toBe(42);
    // A new epoch (another external address) counts on the monotonic clock too.
    await epoch.externalAddressIs('203.0.113.2');
    wall -= 60_000;
    pass(5_000);
    expect(epoch.seconds()).toBe(5);
  });

  it('without a state directory counts from the process start on the monotonic clock', async () => {
    const clock = new ManualClock();
    const epoch = Epoch.inMemory(() => clock.now(), silentLogger);
    await clock.advance(12_345);
    expect(epoch.seconds()).toBe(12);
  });
});

describe('announcements (RFC 6886 §3.2.1)', () => {
  it('sends 10 times, the first at once, then after 250 ms, doubling each time', async () => {
    const clock = new ManualClock();
    const sent: number[] = [];
    const announcer = new Announcer(clock, () => sent.push(clock.now()));
    const start = clock.now();
    announcer.start();
    await clock.advance(600_000);
    expect(sent.map((t) => t - start)).toEqual([0, 250, 750, 1750, 3750, 7750, 15750, 31750, 63750, 127750]);
    expect(sent).toHaveLength(ANNOUNCEMENTS.count);
  });

  it('a new start (the external address changed again) cancels the sequence running and begins anew', async () => {
    const clock = new ManualClock();
    let sent = 0;
    const announcer = new Announcer(clock, () => sent++);
    announcer.start();
    await clock.advance(800);
    expect(sent).toBe(3);
    announcer.start();
    await clock.advance(600_000);
    expect(sent).toBe(3 + 10);
    announcer.stop();
  });
});
