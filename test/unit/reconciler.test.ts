import { describe, expect, it } from 'vitest';
import { BackendError, toUpnpFault } from '../../core/errors.js';
import { MappingService } from '../../core/mapping/service.js';
import { keyString, ruleOf, type ChangeSet, type IntegrityReport, type MappingRequest, type RuleSpec } from '../../core/mapping/types.js';
import { PluginDriver } from '../../core/plugins/driver.js';
import { DEFAULT_LEASE, ManualClock, RecordingBackend, RecordingLogger, backendPluginFor, settle } from '../support/fakes.js';

const A = { address: '192.168.77.10', via: 'test' };

function req(externalPort: number): MappingRequest {
  return {
    remoteHost: '',
    externalPort,
    protocol: 'TCP',
    internalClient: A.address,
    internalPort: externalPort,
    enabled: true,
    description: '',
    leaseSeconds: 3600,
  };
}

/**
 * A backend with its own check and resync, like the nftables one: after a reload its table is gone,
 * so apply and list fail ("cannot list table") until resync recreates it. `watch` lets the test
 * play the kernel's change events. `log` records the order in which calls start and end.
 */
class ReloadableBackend extends RecordingBackend {
  tableExists = true;
  readonly resyncs: RuleSpec[][] = [];
  readonly log: string[] = [];
  private listener: (() => void) | undefined;
  /** While set, apply waits for it (a slow transaction). */
  gate: Promise<void> | undefined;

  reload(): void {
    this.tableExists = false;
    this.installed.clear();
    this.listener?.();
  }
  override async apply(changes: ChangeSet): Promise<void> {
    this.log.push('apply start');
    await this.gate;
    this.log.push('apply end');
    if (!this.tableExists) throw new BackendError('cannot list table inet upnpd');
    return super.apply(changes);
  }
  override list(): Promise<RuleSpec[]> {
    return this.tableExists ? super.list() : Promise.reject(new BackendError('cannot list table inet upnpd'));
  }
  check(expected: readonly RuleSpec[]): Promise<IntegrityReport> {
    this.log.push('check');
    if (!this.tableExists) return Promise.resolve({ missing: ['table inet upnpd'] });
    const lost = expected.filter((r) => !this.installed.has(keyString(r))).length;
    return Promise.resolve({ missing: lost > 0 ? [`${lost} element(s)`] : [] });
  }
  resync(rules: readonly RuleSpec[]): Promise<void> {
    this.log.push('resync');
    this.resyncs.push([...rules]);
    this.tableExists = true;
    this.installed.clear();
    for (const r of rules) this.installed.set(keyString(r), ruleOf(r));
    return Promise.resolve();
  }
  watch(onChange: () => void): () => void {
    this.listener = onChange;
    return () => (this.listener = undefined);
  }
}

function setUp<B extends RecordingBackend>(backend: B) {
  const clock = new ManualClock();
  const logger = new RecordingLogger();
  const driver = new PluginDriver([backendPluginFor(backend)], logger);
  const mappings = new MappingService(driver, driver.firewall, clock, DEFAULT_LEASE, logger);
  return { backend, clock, logger, mappings, reconciler: mappings.reconciler };
}

describe('reconciliation', () => {
  it('checks every interval and, after a reload flushed the rules, reinstalls them without a client request: logged and counted', async () => {
    const { backend, clock, logger, mappings, reconciler } = setUp(new ReloadableBackend());
    await mappings.add(req(5000), A);
    await mappings.add(req(5001), A);
    await mappings.settled();
    reconciler.start({ intervalMs: 2_000 });
    await clock.advance(2_000);
    expect(reconciler.stats).toMatchObject({ checks: 1, repairs: 0 });

    backend.tableExists = false; // no event: only the periodic check can notice
    backend.installed.clear();
    await clock.advance(1_999);
    expect(backend.installed.size).toBe(0);
    await clock.advance(1);
    expect([...backend.installed.keys()].sort()).toEqual(['TCP/5000/', 'TCP/5001/']);
    expect(backend.resyncs).toHaveLength(1);
    expect(reconciler.stats).toMatchObject({ checks: 3, repairs: 1, failures: 0, lastMissing: ['table inet upnpd'], lastError: undefined });
    expect(reconciler.stats.lastRepairMs).toBeGreaterThanOrEqual(0);
    const repairLog = logger.lines.find((line) => line.level === 'warn' && line.message.includes('resynced 2 mapping(s)'));
    expect(repairLog?.message).toContain('table inet upnpd');
    await reconciler.stop();
  });

  it('reads only while nothing is missing: no repair, no change set', async () => {
    const { backend, clock, mappings, reconciler } = setUp(new ReloadableBackend());
    await mappings.add(req(5000), A);
    await mappings.settled();
    reconciler.start({ intervalMs: 2_000 });
    await clock.advance(10_000);
    expect(reconciler.stats).toMatchObject({ checks: 5, repairs: 0 });
    expect(backend.resyncs).toEqual([]);
    expect(backend.applied).toHaveLength(1);
    await reconciler.stop();
  });

  it('checks at once on a kernel event where the backend offers them', async () => {
    const { backend, clock, mappings, reconciler } = setUp(new ReloadableBackend());
    await mappings.add(req(5000), A);
    reconciler.start({ intervalMs: 60_000, eventDebounceMs: 100 });
    backend.reload();
    await clock.advance(100);
    expect(backend.installed.has('TCP/5000/')).toBe(true);
    expect(reconciler.stats.repairs).toBe(1);
    await reconciler.stop();
  });

  it('answers no 501 because of drift: a failed apply is followed by check, resync and one retry', async () => {
    const { backend, mappings, reconciler } = setUp(new ReloadableBackend());
    await mappings.add(req(5000), A);
    backend.reload(); // the reconciler is not even running: the failed apply alone must repair
    await expect(mappings.add(req(5001), A)).resolves.toMatchObject({ externalPort: 5001 });
    expect([...backend.installed.keys()].sort()).toEqual(['TCP/5000/', 'TCP/5001/']);
    expect(backend.resyncs).toEqual([[expect.objectContaining({ externalPort: 5000 })]]);
    expect(reconciler.stats.repairs).toBe(1);
  });

  it('repairs through the change queue, never while a batch is being applied', async () => {
    const { backend, mappings, reconciler } = setUp(new ReloadableBackend());
    await mappings.add(req(5000), A);
    backend.log.length = 0;
    let open!: () => void;
    backend.gate = new Promise((resolve) => (open = resolve));
    const adding = mappings.add(req(5001), A);
    await settle();
    expect(backend.log).toEqual(['apply start']);
    backend.installed.delete('TCP/5000/'); // lost while the batch runs
    const checking = reconciler.checkNow('test');
    await settle();
    expect(backend.log).not.toContain('resync');
    open();
    await adding;
    await checking;
    // The first check may run beside the batch (it only reads); the repair waits and checks again.
    expect(backend.log.slice(backend.log.indexOf('apply end'))).toEqual(['apply end', 'check', 'resync']);
    expect([...backend.installed.keys()].sort()).toEqual(['TCP/5000/', 'TCP/5001/']);
  });

  it('puts the periodic check off while changes are being applied, but not for ever', async () => {
    const { backend, clock, mappings, reconciler } = setUp(new ReloadableBackend());
    reconciler.start({ intervalMs: 2_000, maxDeferMs: 5_000 });
    backend.gate = new Promise(() => {}); // a batch that never ends
    void mappings.add(req(5000), A).catch(() => {});
    await settle();
    await clock.advance(4_000);
    expect(reconciler.stats.checks).toBe(0);
    await clock.advance(4_000);
    expect(reconciler.stats.checks).toBe(1);
  });

  it('checks a table whose check is slow less often, at most maxCheckShare of the time; events are still checked at once; quick checks bring the interval back', async () => {
    /** A check that takes `checkMs` of the clock's time, as reading 5000 mappings does. */
    class SlowCheckBackend extends ReloadableBackend {
      checkMs = 0;
      constructor(private readonly clock: ManualClock) {
        super();
      }
      override async check(expected: readonly RuleSpec[]): Promise<IntegrityReport> {
        const report = await super.check(expected);
        // Time passes while the check runs (the clock's own timers are not due within it).
        await this.clock.advance(this.checkMs);
        return report;
      }
    }
    const clock = new ManualClock();
    const backend = new SlowCheckBackend(clock);
    const logger = new RecordingLogger();
    const driver = new PluginDriver([backendPluginFor(backend)], logger);
    const mappings = new MappingService(driver, driver.firewall, clock, DEFAULT_LEASE, logger);
    const reconciler = mappings.reconciler;
    await mappings.add(req(5000), A);
    await mappings.settled();
    reconciler.start({ intervalMs: 2_000, maxCheckShare: 0.02, eventDebounceMs: 100 });

    backend.checkMs = 100;
    await clock.advance(2_000); // the first check: 100 ms, so the next one is 5 s later
    expect(reconciler.stats).toMatchObject({ checks: 1, lastCheckMs: 100, periodMs: 5_000 });
    expect(logger.messages()).toContain(
      'firewall checks take 100 ms: checking every 5000 ms instead of 2000 (at most 2 % of the time; firewall events are still checked at once)',
    );
    await clock.advance(4_000); // 2 s after the first check was scheduled: not yet
    expect(reconciler.stats.checks).toBe(1);
    await clock.advance(1_000);
    expect(reconciler.stats.checks).toBe(2);

    backend.reload(); // a kernel event: checked and repaired at once, not at the next period
    await clock.advance(100);
    expect(backend.installed.has('TCP/5000/')).toBe(true);
    expect(reconciler.stats).toMatchObject({ checks: 4, repairs: 1 });

    backend.checkMs = 0;
    await clock.advance(5_000);
    expect(reconciler.stats.periodMs).toBe(2_000);
    expect(logger.messages()).toContain('firewall checks are quick again: checking every 2000 ms');
    const checks = reconciler.stats.checks;
    await clock.advance(4_000);
    expect(reconciler.stats.checks).toBe(checks + 2);

    // One check slowed down beside a burst of changes (919 ms measured) among quick ones: its cost
    // is the quickest of the last three, so the period stays.
    backend.checkMs = 919;
    await clock.advance(2_000);
    expect(reconciler.stats).toMatchObject({ lastCheckMs: 919, periodMs: 2_000 });
    await reconciler.stop();
  });

  it('gives a backend without check and resync the defaults: list compared with the table, then init and the difference applied', async () => {
    const backend = new RecordingBackend();
    let inits = 0;
    backend.init = () => {
      inits++;
      return Promise.resolve();
    };
    const { clock, mappings, reconciler } = setUp(backend);
    await mappings.add(req(5000), A);
    await mappings.add(req(5001), A);
    await mappings.settled();
    reconciler.start({ intervalMs: 2_000 });
    backend.installed.delete('TCP/5001/');
    await clock.advance(2_000);
    expect([...backend.installed.keys()].sort()).toEqual(['TCP/5000/', 'TCP/5001/']);
    expect(inits).toBe(1);
    expect(backend.applied.at(-1)).toEqual({ remove: [], add: [expect.objectContaining({ externalPort: 5001 })] });
    expect(reconciler.stats).toMatchObject({ repairs: 1, lastMissing: [expect.stringContaining('1 of 2 mapping(s) not installed')] });
    await reconciler.stop();
  });

  it('counts and logs a check that fails, and keeps checking', async () => {
    const backend = new ReloadableBackend();
    const { clock, logger, reconciler } = setUp(backend);
    backend.check = () => Promise.reject(new BackendError('nft is gone'));
    reconciler.start({ intervalMs: 2_000 });
    await clock.advance(4_000);
    expect(reconciler.stats).toMatchObject({ checks: 2, failures: 2, repairs: 0 });
    expect(reconciler.stats.lastError).toContain('nft is gone');
    expect(logger.lines.filter((line) => line.level === 'error')).toHaveLength(2);
    await reconciler.stop();
  });

  it('still answers 501 when the repair does not help (the firewall refuses for another reason)', async () => {
    const { backend, mappings } = setUp(new ReloadableBackend());
    backend.failNext = 2;
    const fault = await mappings.add(req(5000), A).catch((err: unknown) => toUpnpFault(err).upnpCode);
    expect(fault).toBe(501);
    expect(backend.resyncs).toEqual([]);
  });
});
