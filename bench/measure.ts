import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { measureConnectLatency } from './dataplane/measure.js';
import type { DaemonUnderTest, GatewaySetup, PersistedMappings, RunningDaemon } from './daemons/types.js';
import { median, type Notes, type Sample } from './figures.js';
import type { LoadGenerator } from './load/remote.js';
import type { ThroughputResult } from './load/protocol.js';
import { cpuSeconds, processGone, residentBytes, settledResidentBytes } from './process-stats.js';
import type { BenchProfile } from './profile.js';

/** The benchmark's mappings: TCP, external = internal port, to the LAN client. */
export const FIRST_MAPPED_PORT = 20000;
/** Ports the add/delete cycles use, one per client (outside the mapped range). */
const CYCLE_PORTS_START = 40000;
/** Lets a daemon finish what it started (GC, timers) before its memory is read. */
const SETTLE_MS = 1_000;
/** Entries per GetListOfPortMappings call: upnpd's cap, and what miniupnpd returns when asked for 0. */
const LIST_PAGE_SIZE = 1000;
const MB = 1024 * 1024;

export interface MeasureContext {
  readonly gateway: GatewaySetup;
  readonly profile: BenchProfile;
  readonly generator: LoadGenerator;
  readonly log: (line: string) => void;
}

/** What one group of phases found: figures, and why some are missing. */
export interface Measurement {
  readonly sample: Sample;
  /** A daemon's own failures seen while measuring (e.g. it crashed), by the figure they cost. */
  readonly notes: Notes;
  /** Failures of the harness or of a daemon outside any one figure; their figures are missing. */
  readonly errors: readonly string[];
}

/**
 * The groups of phases, each on a freshly started daemon (so that none depends on another's
 * leftovers). `table` is the long one with miniupnpd: its adds get slower with every mapping.
 */
export const GROUPS = {
  /** Start-up and memory when empty, GetExternalIPAddress rates, add/delete cycle rates. */
  requests: measureRequests,
  /** Add the mappings; memory, data plane and listing with all of them in place. */
  table: measureTable,
  /** Start with that many mappings persisted (only when every daemon compared can persist). */
  persistedStart: measurePersistedStart,
} as const;

export type GroupName = keyof typeof GROUPS;

async function measureRequests(daemon: DaemonUnderTest, context: MeasureContext): Promise<Measurement> {
  const { generator, profile, log } = context;
  const sample: Sample = {};
  return withDaemon(daemon, context, undefined, sample, async (running, startSeconds) => {
    sample.startEmpty = startSeconds;
    await sleep(SETTLE_MS);
    sample.rssIdle = residentBytes(running.pid) / MB;
    log(`start-up ${startSeconds.toFixed(3)} s, RSS ${sample.rssIdle.toFixed(1)} MB`);

    const { throughput } = profile;
    const limits = { warmupMs: throughput.warmupMs, maxOps: throughput.maxOps, maxMs: throughput.measureMs };
    const expectedAddress = context.gateway.testbed.addresses.gatewayWan;
    for (const concurrency of [1, 8] as const) {
      const { result, cpuPerOp } = await withCpu(running.pid, () => generator.run({ kind: 'getExternalIp', concurrency, ...limits, expectedAddress }));
      sample[concurrency === 1 ? 'extIp1' : 'extIp8'] = rate(result);
      if (concurrency === 8) sample.extIpCpu = cpuPerOp;
      log(`GetExternalIPAddress, ${concurrency} client(s): ${rate(result).toFixed(0)} req/s, ${cpuPerOp.toFixed(0)} µs CPU each`);
    }
    for (const concurrency of [1, 8] as const) {
      const { result, cpuPerOp } = await withCpu(running.pid, () =>
        generator.run({ kind: 'addDeleteCycles', concurrency, ...limits, firstPort: CYCLE_PORTS_START }),
      );
      sample[concurrency === 1 ? 'cycles1' : 'cycles8'] = rate(result);
      if (concurrency === 8) sample.cyclesCpu = cpuPerOp;
      log(`AddPortMapping+DeletePortMapping, ${concurrency} client(s): ${rate(result).toFixed(0)} cycles/s, ${cpuPerOp.toFixed(0)} µs CPU each`);
    }
    return {};
  });
}

async function measureTable(daemon: DaemonUnderTest, context: MeasureContext): Promise<Measurement> {
  const { generator, profile, log } = context;
  const n = profile.mappings;
  const firstPort = FIRST_MAPPED_PORT;
  const lastPort = FIRST_MAPPED_PORT + n - 1;
  const sample: Sample = {};
  return withDaemon(daemon, context, undefined, sample, async (running) => {
    const added = await generator.run({ kind: 'addMappings', firstPort, count: n, checkpoints: [profile.firstCheckpoint, n], maxMs: profile.phaseMaxMs });
    const firstMs = added.checkpointMs[profile.firstCheckpoint];
    if (firstMs !== undefined) sample.addFirst = firstMs / 1000;
    if (added.added < n) throw new Error(`only ${added.added} of ${n} mappings added within ${profile.phaseMaxMs / 1000} s`);
    sample.addAll = added.checkpointMs[n]! / 1000;
    if (sample.addFirst !== undefined) sample.addLinearity = sample.addAll / sample.addFirst;
    log(`add ${profile.firstCheckpoint}: ${sample.addFirst?.toFixed(2)} s, add ${n}: ${sample.addAll.toFixed(2)} s`);

    const latency = await measureConnectLatency(context.gateway.testbed, { ports: [firstPort, lastPort], ...profile.connect });
    sample.connectFirst = median(latency.get(firstPort)!);
    sample.connectLast = median(latency.get(lastPort)!);
    sample.connectRatio = sample.connectLast / sample.connectFirst;
    log(`TCP connect via port ${firstPort}: ${sample.connectFirst.toFixed(0)} µs, via port ${lastPort}: ${sample.connectLast.toFixed(0)} µs`);

    const cpuBefore = cpuSeconds(running.pid);
    const byIndex = await generator.run({ kind: 'listByIndex', maxEntries: n + 1, maxMs: profile.phaseMaxMs });
    if (byIndex.entries !== n) throw new Error(`GetGenericPortMappingEntry listed ${byIndex.entries} mappings, expected ${n}`);
    sample.listByIndex = byIndex.elapsedMs / 1000;
    // The n entries and the fault that ends the listing.
    sample.listCpu = ((cpuSeconds(running.pid) - cpuBefore) * 1e6) / (n + 1);
    sample.listGeneratorCpu = (byIndex.cpuMs * 1000) / (n + 1);
    log(
      `list ${n} with GetGenericPortMappingEntry: ${sample.listByIndex.toFixed(2)} s, ${sample.listCpu.toFixed(0)} µs daemon CPU each, ` +
        `${sample.listGeneratorCpu.toFixed(0)} µs generator CPU each`,
    );

    // After the work on the table and before the phase miniupnpd may not survive; measured after a
    // quiet period, so that it counts what the daemon holds rather than the garbage of the last burst.
    sample.rssMapped = (await settledResidentBytes(running.pid)) / MB;
    log(`RSS with ${n} mappings (settled): ${sample.rssMapped.toFixed(1)} MB`);

    // Last: miniupnpd 2.3.1 may crash here (see bench/README.md).
    try {
      const inPages = await generator.run({ kind: 'listInPages', pageSize: LIST_PAGE_SIZE, maxEntries: n + 1, maxMs: profile.phaseMaxMs });
      if (inPages.entries !== n) throw new Error(`GetListOfPortMappings listed ${inPages.entries} distinct mappings, expected ${n}`);
      sample.listInPages = inPages.elapsedMs / 1000;
      log(`list ${n} with GetListOfPortMappings: ${sample.listInPages.toFixed(2)} s (${inPages.calls} calls)`);
    } catch (err) {
      if (!processGone(running.pid)) throw err;
      const note = `${daemon.name} crashed (its process is gone) answering GetListOfPortMappings with ${n} mappings: ${messageOf(err)}`;
      log(note);
      return { listInPages: note };
    }
    return {};
  });
}

async function measurePersistedStart(daemon: DaemonUnderTest, context: MeasureContext): Promise<Measurement> {
  const { profile } = context;
  const persisted: PersistedMappings = { count: profile.mappings, firstPort: FIRST_MAPPED_PORT, client: context.gateway.testbed.addresses.lanClient };
  const sample: Sample = {};
  return withDaemon(daemon, context, persisted, sample, (_running, startSeconds) => {
    sample.startPersisted = startSeconds;
    context.log(`start-up with ${profile.mappings} persisted mappings: ${startSeconds.toFixed(3)} s`);
    return Promise.resolve({});
  });
}

/**
 * Starts the daemon, waits until a client can use it (timed from before the start), runs `body`
 * and stops the daemon. A failure becomes an error of the measurement: the figures measured
 * before it are kept.
 */
export async function withDaemon(
  daemon: DaemonUnderTest,
  context: MeasureContext,
  persisted: PersistedMappings | undefined,
  sample: Sample,
  body: (running: RunningDaemon, startSeconds: number) => Promise<Notes>,
): Promise<Measurement> {
  const errors: string[] = [];
  let notes: Notes = {};
  const start = performance.now();
  let running: RunningDaemon | undefined;
  let serving = false;
  try {
    running = await daemon.start(context.gateway, persisted);
    await context.generator.run({
      kind: 'discover',
      descriptionUrl: running.descriptionUrl,
      timeoutMs: context.profile.startTimeoutMs,
      awaitMappingPort: persisted ? persisted.firstPort + persisted.count - 1 : undefined,
    });
    serving = true;
    notes = await body(running, (performance.now() - start) / 1000);
  } catch (err) {
    if (persisted && running && !serving) {
      // Still reinstalling when the time was up: that is the figure's result (a lower bound), not a harness failure.
      notes = {
        startPersisted: `${daemon.name} was not serving with ${persisted.count} persisted mappings within ${context.profile.startTimeoutMs / 1000} s (${messageOf(err)})`,
      };
      context.log(notes.startPersisted!);
    } else {
      errors.push(`${daemon.name}: ${messageOf(err)}${running ? `\n${running.diagnostics()}` : ''}`);
    }
  }
  try {
    const remark = await running?.stop();
    if (remark) context.log(remark);
  } catch (err) {
    errors.push(`${daemon.name}: ${messageOf(err)}`);
  }
  return { sample, notes, errors };
}

/**
 * Runs a throughput phase and charges the daemon's CPU time (children included) to its
 * operations, warm-up included: a rate can be capped by the generator, CPU per operation cannot.
 */
export async function withCpu(pid: number, phase: () => Promise<ThroughputResult>): Promise<{ result: ThroughputResult; cpuPerOp: number }> {
  const before = cpuSeconds(pid);
  const result = await phase();
  return { result, cpuPerOp: ((cpuSeconds(pid) - before) * 1e6) / (result.ops + result.warmupOps) };
}

function rate(result: ThroughputResult): number {
  return result.ops / (result.elapsedMs / 1000);
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
