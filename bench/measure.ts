import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseUpnpcListing } from '../test/netns/topology.js';
import { measureConnectLatency } from './dataplane/measure.js';
import type { DaemonUnderTest, Floor, GatewaySetup, PersistedMappings, RunningDaemon } from './daemons/types.js';
import { median, type FigureKey, type Notes, type Sample } from './figures.js';
import type { LoadGenerator } from './load/remote.js';
import { runApacheBench } from './load/apache-bench.js';
import type { ConnectionMode, DiscoverResult, ThroughputResult } from './load/protocol.js';
import { SETTLE_QUIET_MS, cpuSeconds, medianResidentSizes, processGone, settledResidentSizes } from './process-stats.js';
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
/** How long after the last load the idle CPU's measurement begins (inside the settled-RSS wait). */
const IDLE_CPU_SETTLE_MS = 5_000;

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

/** What a phase works with: the daemon running, its WANIPConnection service, and where its figures go. */
interface PhaseContext extends MeasureContext {
  readonly running: RunningDaemon;
  readonly service: DiscoverResult;
  readonly sample: Sample;
}

type Phase = (context: PhaseContext) => Promise<void>;

/**
 * The phases of the `requests` group, in order, as data. A daemon that serves only a constant
 * (Node's floor) runs the GetExternalIPAddress phases alone (DaemonUnderTest.floor).
 */
const REQUEST_PHASES: ReadonlyArray<{ readonly phase: Phase; readonly constantAnswer: boolean }> = [
  { phase: warmUp, constantAnswer: true },
  { phase: (c) => externalAddress(c, 'close'), constantAnswer: true },
  { phase: (c) => externalAddress(c, 'keep-alive'), constantAnswer: true },
  { phase: externalAddressFromC, constantAnswer: true },
  { phase: addDeleteCycles, constantAnswer: false },
];

async function measureRequests(daemon: DaemonUnderTest, context: MeasureContext): Promise<Measurement> {
  const sample: Sample = {};
  return withDaemon(daemon, context, undefined, sample, async (running, startSeconds, service) => {
    sample.startEmpty = startSeconds;
    await sleep(SETTLE_MS);
    const sizes = await medianResidentSizes(running.pid);
    sample.rssIdle = sizes.total / MB;
    context.log(`start-up ${startSeconds.toFixed(3)} s, RSS ${sample.rssIdle.toFixed(1)} MB (${sizes.parts})`);
    for (const { phase, constantAnswer } of REQUEST_PHASES) {
      if (daemon.floor === undefined || (constantAnswer && daemon.floor === 'constant answers')) await phase({ ...context, running, service, sample });
    }
    return {};
  });
}

function throughputLimits(profile: BenchProfile): { warmupMs: number; maxOps: number; maxMs: number } {
  const { throughput } = profile;
  return { warmupMs: throughput.warmupMs, maxOps: throughput.maxOps, maxMs: throughput.measureMs };
}

/** Requests every daemon answers, unmeasured, before the first measured row (bounded by WARM_UP_MAX_MS too). */
const WARM_UP_REQUESTS = 5_000;
const WARM_UP_MAX_MS = 15_000;

/**
 * Unmeasured requests before the first measured phase, for every daemon alike: a Node daemon's
 * first thousands of requests run before V8 has compiled its hot paths, which is start-up cost,
 * not cost per request (the rows starting with "start-up" measure the start).
 */
async function warmUp({ generator, gateway, log }: PhaseContext): Promise<void> {
  const expectedAddress = gateway.testbed.addresses.gatewayWan;
  const result = await generator.run({
    kind: 'getExternalIp',
    connection: 'close',
    concurrency: 8,
    warmupMs: 0,
    maxOps: WARM_UP_REQUESTS,
    maxMs: WARM_UP_MAX_MS,
    expectedAddress,
  });
  log(`warm-up: ${result.ops} requests`);
}

/** GetExternalIPAddress from 1 and from 8 clients (LAN hosts), with the daemon's CPU time per request. */
async function externalAddress({ generator, profile, log, running, sample, gateway }: PhaseContext, connection: ConnectionMode): Promise<void> {
  const expectedAddress = gateway.testbed.addresses.gatewayWan;
  const keys = {
    close: {
      1: { rate: 'extIp1', cpu: 'extIpCpu1', generatorBusy: 'extIpGeneratorBusy1' },
      8: { rate: 'extIp8', cpu: 'extIpCpu', generatorBusy: 'extIpGeneratorBusy8' },
    },
    'keep-alive': {
      1: { rate: 'extIpKeepAlive1', cpu: undefined, generatorBusy: undefined },
      8: { rate: 'extIpKeepAlive8', cpu: 'extIpKeepAliveCpu', generatorBusy: undefined },
    },
  } as const satisfies Record<ConnectionMode, Record<1 | 8, { rate: FigureKey; cpu: FigureKey | undefined; generatorBusy: FigureKey | undefined }>>;
  for (const concurrency of [1, 8] as const) {
    const { result, cpuPerOp } = await withCpu(running.pid, () =>
      generator.run({ kind: 'getExternalIp', connection, concurrency, ...throughputLimits(profile), expectedAddress }),
    );
    const { rate: rateKey, cpu: cpuKey, generatorBusy: busyKey } = keys[connection][concurrency];
    const generatorBusy = (100 * result.cpuMs) / result.elapsedMs;
    sample[rateKey] = rate(result);
    if (cpuKey) sample[cpuKey] = cpuPerOp;
    if (busyKey) sample[busyKey] = generatorBusy;
    log(
      `GetExternalIPAddress, ${concurrency} client(s), ${connection}: ${rate(result).toFixed(0)} req/s, ${cpuPerOp.toFixed(0)} µs CPU each, ` +
        `the generator busy ${generatorBusy.toFixed(0)} % of a core`,
    );
  }
}

const AB_MAX_REQUESTS = 50_000;

/**
 * GetExternalIPAddress from 1 and from 8 clients (LAN hosts) sent by ApacheBench, a C client
 * (bench/load/apache-bench.ts): the generator's rows above are limited by the generator itself on
 * this 2-core machine (its busy share says so), these by the daemon.
 */
async function externalAddressFromC({ gateway, profile, log, running, service, sample }: PhaseContext): Promise<void> {
  const { throughput } = profile;
  const keys = { 1: { rate: 'extIpC1', cpu: 'extIpCCpu1' }, 8: { rate: 'extIpC8', cpu: 'extIpCCpu8' } } as const satisfies Record<
    1 | 8,
    { rate: FigureKey; cpu: FigureKey }
  >;
  for (const clients of [1, 8] as const) {
    const { result, cpuPerOp } = await withCpuPer(
      running.pid,
      () =>
        runApacheBench(gateway.testbed.lan.runner(), {
          controlUrl: new URL(service.controlUrl),
          serviceType: service.serviceType,
          sources: gateway.lanHosts.slice(0, clients),
          // ab keeps a record per request it may send: 50,000 (its own bound with -t) is 10,000 a second for 5 s.
          requestsPerSource: Math.min(AB_MAX_REQUESTS, Math.ceil(throughput.maxOps / clients)),
          maxSeconds: Math.ceil(throughput.measureMs / 1000),
          workDir: gateway.workDir,
        }),
      (answered) => answered.requests,
    );
    const rateOfC = result.requests / result.seconds;
    sample[keys[clients].rate] = rateOfC;
    sample[keys[clients].cpu] = cpuPerOp;
    log(`GetExternalIPAddress from ApacheBench, ${clients} client(s): ${rateOfC.toFixed(0)} req/s, ${cpuPerOp.toFixed(0)} µs CPU each`);
  }
}

/** AddPortMapping+DeletePortMapping from 1 and 8 workers going round the LAN hosts, a new connection per request. */
async function addDeleteCycles({ generator, profile, log, running, sample }: PhaseContext): Promise<void> {
  for (const concurrency of [1, 8] as const) {
    const { result, cpuPerOp } = await withCpu(running.pid, () =>
      generator.run({ kind: 'addDeleteCycles', connection: 'close', concurrency, ...throughputLimits(profile), firstPort: CYCLE_PORTS_START }),
    );
    sample[concurrency === 1 ? 'cycles1' : 'cycles8'] = rate(result);
    if (concurrency === 8) sample.cyclesCpu = cpuPerOp;
    log(`AddPortMapping+DeletePortMapping, ${concurrency} worker(s): ${rate(result).toFixed(0)} cycles/s, ${cpuPerOp.toFixed(0)} µs CPU each`);
  }
}

/**
 * The phases of the `table` group, in order, as data, each with the floors that serve it; the
 * last may crash miniupnpd 2.3.1 (see bench/README.md). The x_tables floor adds, and connections
 * go through its rules; Node's floor answers the walks as if it held the mappings.
 */
const TABLE_PHASES: ReadonlyArray<{ readonly phase: Phase; readonly floors: readonly Floor[] }> = [
  { phase: addTable, floors: ['adds'] },
  { phase: connectLatency, floors: ['adds'] },
  { phase: walkTable, floors: ['constant answers'] },
  { phase: walkTableWithUpnpc, floors: ['constant answers'] },
  { phase: walkTableKeepAlive, floors: ['constant answers'] },
  { phase: settledMemory, floors: [] },
  { phase: listInPages, floors: [] },
];

async function measureTable(daemon: DaemonUnderTest, context: MeasureContext): Promise<Measurement> {
  const sample: Sample = {};
  return withDaemon(daemon, context, undefined, sample, async (running, _startSeconds, service) => {
    // The adds warm a daemon's HTTP path up before the walks; Node's floor, which does not add, is
    // warmed up as in the requests group, lest its walks measure V8 compiling its code.
    if (daemon.floor === 'constant answers') await warmUp({ ...context, running, service, sample });
    for (const { phase, floors } of TABLE_PHASES) {
      if (daemon.floor !== undefined && !floors.includes(daemon.floor)) continue;
      const note = await phase({ ...context, running, service, sample }).then(
        () => undefined,
        (err: unknown) => {
          if (phase !== listInPages || !processGone(running.pid)) throw err;
          return `${daemon.name} crashed (its process is gone) answering GetListOfPortMappings with ${context.profile.mappings} mappings: ${messageOf(err)}`;
        },
      );
      if (note) {
        context.log(note);
        return { listInPages: note };
      }
    }
    return {};
  });
}

async function addTable({ generator, profile, log, sample }: PhaseContext): Promise<void> {
  const n = profile.mappings;
  const added = await generator.run({
    kind: 'addMappings',
    connection: 'close',
    firstPort: FIRST_MAPPED_PORT,
    count: n,
    checkpoints: [profile.firstCheckpoint, n],
    maxMs: profile.phaseMaxMs,
  });
  const firstMs = added.checkpointMs[profile.firstCheckpoint];
  if (firstMs !== undefined) sample.addFirst = firstMs / 1000;
  if (added.added < n) throw new Error(`only ${added.added} of ${n} mappings added within ${profile.phaseMaxMs / 1000} s`);
  sample.addAll = added.checkpointMs[n]! / 1000;
  if (sample.addFirst !== undefined) sample.addLinearity = sample.addAll / sample.addFirst;
  log(`add ${profile.firstCheckpoint}: ${sample.addFirst?.toFixed(2)} s, add ${n}: ${sample.addAll.toFixed(2)} s`);
}

async function connectLatency({ gateway, profile, log, sample }: PhaseContext): Promise<void> {
  const firstPort = FIRST_MAPPED_PORT;
  const lastPort = FIRST_MAPPED_PORT + profile.mappings - 1;
  const latency = await measureConnectLatency(gateway.testbed, { ports: [firstPort, lastPort], ...profile.connect });
  sample.connectFirst = median(latency.get(firstPort)!);
  sample.connectLast = median(latency.get(lastPort)!);
  sample.connectRatio = sample.connectLast / sample.connectFirst;
  log(`TCP connect via port ${firstPort}: ${sample.connectFirst.toFixed(0)} µs, via port ${lastPort}: ${sample.connectLast.toFixed(0)} µs`);
}

/** The walk a control point makes (`upnpc -l`): GetGenericPortMappingEntry 0, 1, … until 713. */
async function walk(
  { generator, profile, running }: PhaseContext,
  connection: ConnectionMode,
): Promise<{ seconds: number; daemonCpu: number; generatorCpu: number }> {
  const n = profile.mappings;
  const cpuBefore = cpuSeconds(running.pid);
  const byIndex = await generator.run({ kind: 'listByIndex', connection, maxEntries: n + 1, maxMs: profile.phaseMaxMs });
  if (byIndex.entries !== n) throw new Error(`GetGenericPortMappingEntry listed ${byIndex.entries} mappings, expected ${n}`);
  // The n entries and the fault that ends the listing.
  return {
    seconds: byIndex.elapsedMs / 1000,
    daemonCpu: ((cpuSeconds(running.pid) - cpuBefore) * 1e6) / (n + 1),
    generatorCpu: (byIndex.cpuMs * 1000) / (n + 1),
  };
}

async function walkTable(context: PhaseContext): Promise<void> {
  const { seconds, daemonCpu, generatorCpu } = await walk(context, 'close');
  Object.assign(context.sample, { listByIndex: seconds, listCpu: daemonCpu, listGeneratorCpu: generatorCpu });
  context.log(
    `walk of ${context.profile.mappings} with GetGenericPortMappingEntry: ${seconds.toFixed(2)} s, ${daemonCpu.toFixed(0)} µs daemon CPU each, ` +
      `${generatorCpu.toFixed(0)} µs generator CPU each`,
  );
}

/** upnpc may take this long to list the table before the phase gives up (miniupnpd lists 5000 in about 3 s). */
const UPNPC_WALK_TIMEOUT_MS = 120_000;

/**
 * The same walk made by the real client, miniupnpc's `upnpc -l`, from the LAN client: a C client
 * whose own cost per request is far below the Node load generator's, so that the time is mostly the
 * daemon's. upnpc first fetches the description and asks a few questions (status, connection
 * type, external address); those few requests are in the time too.
 */
async function walkTableWithUpnpc({ gateway, profile, running, sample, log }: PhaseContext): Promise<void> {
  const n = profile.mappings;
  const cpuBefore = cpuSeconds(running.pid);
  const started = performance.now();
  const listing = await gateway.testbed.lan.runner().run('upnpc', ['-u', running.descriptionUrl, '-l'], { timeoutMs: UPNPC_WALK_TIMEOUT_MS });
  const seconds = (performance.now() - started) / 1000;
  const listed = parseUpnpcListing(listing.stdout).length;
  if (listing.exitCode !== 0 || listed !== n) {
    throw new Error(`upnpc -l listed ${listed} mappings, expected ${n} (exit code ${listing.exitCode}): ${listing.stderr.slice(0, 300)}`);
  }
  sample.listUpnpc = seconds;
  sample.listUpnpcCpu = ((cpuSeconds(running.pid) - cpuBefore) * 1e6) / (n + 1);
  log(`walk of ${n} with upnpc -l: ${seconds.toFixed(2)} s, ${sample.listUpnpcCpu.toFixed(0)} µs daemon CPU each`);
}

async function walkTableKeepAlive(context: PhaseContext): Promise<void> {
  const { seconds } = await walk(context, 'keep-alive');
  context.sample.listByIndexKeepAlive = seconds;
  context.log(`walk of ${context.profile.mappings}, keep-alive: ${seconds.toFixed(2)} s`);
}

/**
 * After the work on the table and before the phase miniupnpd may not survive; measured after a
 * quiet period, so that it counts what the daemon holds rather than the garbage of the last burst.
 */
async function settledMemory({ running, profile, log, sample }: PhaseContext): Promise<void> {
  // The idle CPU is measured inside the same quiet wait, once the burst's own aftermath (the heap
  // trimmer's collection, the last nft session) has had IDLE_CPU_SETTLE_MS.
  await new Promise((resolve) => setTimeout(resolve, IDLE_CPU_SETTLE_MS));
  const [cpuBefore, wallBefore] = [cpuSeconds(running.pid), performance.now()];
  const sizes = await settledResidentSizes(running.pid, SETTLE_QUIET_MS - IDLE_CPU_SETTLE_MS);
  sample.rssMapped = sizes.total / MB;
  sample.rssMappedMain = sizes.main / MB;
  sample.idleCpuMapped = ((cpuSeconds(running.pid) - cpuBefore) * 1e6) / (performance.now() - wallBefore);
  log(`RSS with ${profile.mappings} mappings (settled): ${sample.rssMapped.toFixed(1)} MB (${sizes.parts}); idle CPU ${sample.idleCpuMapped.toFixed(1)} ms/s`);
}

async function listInPages({ generator, profile, log, sample }: PhaseContext): Promise<void> {
  const n = profile.mappings;
  const inPages = await generator.run({ kind: 'listInPages', connection: 'close', pageSize: LIST_PAGE_SIZE, maxEntries: n + 1, maxMs: profile.phaseMaxMs });
  if (inPages.entries !== n) throw new Error(`GetListOfPortMappings listed ${inPages.entries} distinct mappings, expected ${n}`);
  sample.listInPages = inPages.elapsedMs / 1000;
  log(`list ${n} with GetListOfPortMappings: ${sample.listInPages.toFixed(2)} s (${inPages.calls} calls)`);
}

async function measurePersistedStart(daemon: DaemonUnderTest, context: MeasureContext): Promise<Measurement> {
  const { profile } = context;
  const persisted: PersistedMappings = { count: profile.mappings, firstPort: FIRST_MAPPED_PORT, clients: context.gateway.lanHosts };
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
  body: (running: RunningDaemon, startSeconds: number, service: DiscoverResult) => Promise<Notes>,
): Promise<Measurement> {
  const errors: string[] = [];
  let notes: Notes = {};
  const start = performance.now();
  let running: RunningDaemon | undefined;
  let serving = false;
  try {
    running = await daemon.start(context.gateway, persisted);
    const service = await context.generator.run({
      kind: 'discover',
      descriptionUrl: running.descriptionUrl,
      timeoutMs: context.profile.startTimeoutMs,
      awaitMappingPort: persisted ? persisted.firstPort + persisted.count - 1 : undefined,
    });
    serving = true;
    notes = await body(running, (performance.now() - start) / 1000, service);
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
export function withCpu(pid: number, phase: () => Promise<ThroughputResult>): Promise<{ result: ThroughputResult; cpuPerOp: number }> {
  return withCpuPer(pid, phase, (result) => result.ops + result.warmupOps);
}

/** Runs a phase and charges the daemon's CPU time (children included) to the operations `count` finds in its result. */
async function withCpuPer<R>(pid: number, phase: () => Promise<R>, count: (result: R) => number): Promise<{ result: R; cpuPerOp: number }> {
  const before = cpuSeconds(pid);
  const result = await phase();
  return { result, cpuPerOp: ((cpuSeconds(pid) - before) * 1e6) / count(result) };
}

function rate(result: ThroughputResult): number {
  return result.ops / (result.elapsedMs / 1000);
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
