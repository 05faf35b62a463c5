import { describe, expect, it } from 'vitest';
import { configSchema } from '../../core/config/schema.js';
import { ClientLimits, DEFAULT_CLIENT_LIMITS, clientLimitSettings } from '../../core/limits/client-limits.js';
import { ClientSlots } from '../../core/limits/client-slots.js';
import { FairShare } from '../../core/limits/fair-share.js';
import { ClientRateLimiter } from '../../core/limits/rate-limiter.js';
import { REFUSAL_LOG_LIMITS, Refusals } from '../../core/limits/refusals.js';
import { isReadOnlyAction } from '../../core/upnp/soap/control.js';
import { ManualClock, RecordingLogger } from '../support/fakes.js';

const LIMIT = { burst: 3, perSecond: 2, reason: 'test limit' };

describe('ClientRateLimiter (a token bucket per client)', () => {
  it('allows a burst, then refuses with the time until the next token', () => {
    const limiter = new ClientRateLimiter(LIMIT, new ManualClock());
    expect([1, 2, 3].map(() => limiter.take('10.0.0.2').allowed)).toEqual([true, true, true]);
    expect(limiter.take('10.0.0.2')).toEqual({ allowed: false, retryAfterMs: 500 });
  });

  it('refills at its rate, never above the burst', async () => {
    const clock = new ManualClock();
    const limiter = new ClientRateLimiter(LIMIT, clock);
    for (let i = 0; i < 3; i++) limiter.take('10.0.0.2');
    await clock.advance(500);
    expect(limiter.take('10.0.0.2').allowed).toBe(true);
    expect(limiter.take('10.0.0.2').allowed).toBe(false);
    await clock.advance(60_000);
    expect([1, 2, 3, 4].map(() => limiter.take('10.0.0.2').allowed)).toEqual([true, true, true, false]);
  });

  it('keeps clients apart: one emptying its bucket leaves the others theirs', () => {
    const limiter = new ClientRateLimiter(LIMIT, new ManualClock());
    for (let i = 0; i < 10; i++) limiter.take('10.0.0.2');
    expect(limiter.take('10.0.0.3').allowed).toBe(true);
  });

  it('remembers a bounded number of clients, forgetting idle ones first', async () => {
    const clock = new ManualClock();
    const limiter = new ClientRateLimiter(LIMIT, clock, 2);
    for (let i = 0; i < 3; i++) limiter.take('10.0.0.2');
    await clock.advance(10_000);
    for (let i = 0; i < 3; i++) limiter.take('10.0.0.3');
    limiter.take('10.0.0.4');
    expect(limiter.trackedClients).toBe(2);
    // 10.0.0.3, still empty, was kept: its refusal was not forgotten.
    expect(limiter.take('10.0.0.3').allowed).toBe(false);
  });

  it('keeps the bucket of a host that is still sending when new sources keep arriving (it is not reset)', () => {
    const limiter = new ClientRateLimiter(LIMIT, new ManualClock(), 2);
    for (let i = 0; i < 3; i++) limiter.take('10.0.0.2');
    limiter.take('10.0.0.3');
    // 10.0.0.2 floods on: refused, and still the one sending.
    expect(limiter.take('10.0.0.2').allowed).toBe(false);
    for (let source = 10; source < 100; source++) {
      limiter.take(`10.0.1.${source}`);
      expect(limiter.take('10.0.0.2').allowed).toBe(false);
    }
    expect(limiter.trackedClients).toBe(2);
  });

  it('refuses a limit that could never admit anything', () => {
    expect(() => new ClientRateLimiter({ burst: 0, perSecond: 1, reason: 'x' }, new ManualClock())).toThrow(/burst/);
  });
});

describe('ClientSlots (connections held per client)', () => {
  it('gives each client up to its share, and the slot back on release', () => {
    const slots = new ClientSlots(2);
    expect([slots.acquire('a'), slots.acquire('a'), slots.acquire('a'), slots.acquire('b')]).toEqual([true, true, false, true]);
    slots.release('a');
    expect(slots.heldBy('a')).toBe(1);
    expect(slots.acquire('a')).toBe(true);
  });
});

describe('FairShare (a total shared between clients)', () => {
  it('when full, gives a client holding two fewer than the biggest holder the place of its oldest item', () => {
    const share = new FairShare<string>(4);
    for (const item of ['a1', 'a2', 'a3']) expect(share.add('a', item)).toEqual({ admitted: true });
    expect(share.add('b', 'b1')).toEqual({ admitted: true });
    expect(share.add('c', 'c1')).toEqual({ admitted: true, evicted: 'a1' });
    // a holds 2, b and c 1 each: nobody holds two more than b, so b's second is refused.
    expect(share.add('b', 'b2')).toEqual({ admitted: false });
    expect(share.add('d', 'd1')).toEqual({ admitted: true, evicted: 'a2' });
    expect(share.size).toBe(4);
  });

  it('frees the place of an item deleted, and ignores the delete of one evicted', () => {
    const share = new FairShare<string>(2);
    share.add('a', 'a1');
    share.add('a', 'a2');
    expect(share.add('b', 'b1')).toEqual({ admitted: true, evicted: 'a1' });
    share.delete('a', 'a1');
    expect(share.size).toBe(2);
    share.delete('b', 'b1');
    expect(share.add('a', 'a3')).toEqual({ admitted: true });
  });
});

describe('Refusals (counted, logged at a bounded rate)', () => {
  it('counts every refusal and logs the first of a client, then one line per interval saying how many were left out', async () => {
    const clock = new ManualClock();
    const logger = new RecordingLogger();
    const refusals = new Refusals(logger, clock);
    for (let i = 0; i < 100; i++) refusals.refuse('state-change-rate', '10.0.0.2', 'test limit');
    expect(refusals.counted['state-change-rate']).toBe(100);
    expect(logger.lines).toEqual([{ level: 'warn', message: 'refused 10.0.0.2: test limit' }]);
    await clock.advance(REFUSAL_LOG_LIMITS.perClientIntervalMs);
    refusals.refuse('state-change-rate', '10.0.0.2', 'test limit');
    expect(logger.lines).toHaveLength(2);
  });

  it('bounds the lines of a flood from many addresses', () => {
    const logger = new RecordingLogger();
    const refusals = new Refusals(logger, new ManualClock());
    for (let i = 0; i < 500; i++) refusals.refuse('m-search-rate', `10.0.${i >> 8}.${i & 255}`, 'test limit');
    expect(logger.lines).toHaveLength(REFUSAL_LOG_LIMITS.maxLinesPerInterval);
    expect(refusals.counted['m-search-rate']).toBe(500);
  });
});

describe('ClientLimits (shared by every front-end)', () => {
  it('rate-limits state changes per client and counts the refusals', () => {
    const limits = new ClientLimits({ ...DEFAULT_CLIENT_LIMITS, stateChanges: LIMIT }, new RecordingLogger(), new ManualClock());
    const decisions = [1, 2, 3, 4].map(() => limits.admitStateChange('10.0.0.2', 'AddPortMapping').allowed);
    expect(decisions).toEqual([true, true, true, false]);
    expect(limits.stats().refused).toEqual({
      'connections-per-client': 0,
      'pipelined-requests': 0,
      'state-change-rate': 1,
      'm-search-rate': 0,
      'm-search-queue': 0,
      'datagram-rate': 0,
      'datagrams-pending': 0,
    });
  });
});

describe('which actions change state', () => {
  it.each(['GetGenericPortMappingEntry', 'GetSpecificPortMappingEntry', 'GetListOfPortMappings', 'GetExternalIPAddress', 'GetStatusInfo'])(
    '%s only reads: never rate-limited',
    (action) => expect(isReadOnlyAction(action)).toBe(true),
  );
  it.each(['AddPortMapping', 'AddAnyPortMapping', 'DeletePortMapping', 'DeletePortMappingRange', 'SetConnectionType', 'ForceTermination'])(
    '%s changes state: rate-limited',
    (action) => expect(isReadOnlyAction(action)).toBe(false),
  );
});

describe('config key limits', () => {
  it('defaults to the named limits, and keeps their reasons when changed', () => {
    const parsed = configSchema.parse({});
    expect(clientLimitSettings(parsed.limits)).toEqual(DEFAULT_CLIENT_LIMITS);
    const raised = clientLimitSettings(configSchema.parse({ limits: { stateChanges: { perSecond: 100 }, connectionsPerClient: 4 } }).limits);
    expect(raised.stateChanges).toEqual({ ...DEFAULT_CLIENT_LIMITS.stateChanges, perSecond: 100 });
    expect(raised.connectionsPerClient).toBe(4);
  });

  it('refuses a limit of zero', () => {
    expect(() => configSchema.parse({ limits: { mSearch: { burst: 0 } } })).toThrow();
  });
});
