import { setTimeout as sleep } from 'node:timers/promises';
import type { DaemonUnderTest } from './daemons/types.js';
import type { Sample } from './figures.js';
import { cpuSeconds } from './process-stats.js';
import { withCpu, withDaemon, type MeasureContext, type Measurement } from './measure.js';

/**
 * The NAT-PMP rows: both daemons serve NAT-PMP on the gateway's LAN address (upnpd by default,
 * miniupnpd with `enable_natpmp=yes`), loaded by the generator's NAT-PMP client (load/natpmp.ts).
 * Each group runs on a freshly started daemon, as the UPnP groups do.
 */

/** Ports the map+delete cycles use, one per client (away from the UPnP cycles' 40000+). */
const CYCLE_PORTS_START = 45000;
const FIRST_MAPPED_PORT = 20000;
/** How long a daemon that serves its description may take to answer NAT-PMP too. */
const READY_TIMEOUT_MS = 10_000;
const READY_RETRY_MS = 100;
/** A map+delete cycle is two requests. */
const REQUESTS_PER_CYCLE = 2;

export const NAT_PMP_GROUPS = {
  /**
   * Map+delete cycles from 1 client and from 8 clients (8 LAN addresses, one each). One address
   * sends far more than upnpd's per-client limits on state changes (`limits.stateChanges`, 32 a
   * second) and on NAT-PMP requests read (`natPmp({ requestsPerClient })`, 64 a second), so this
   * group raises those two (and only those), or it would measure the limits.
   */
  natPmpRequests: measureNatPmpRequests,
  /** Map the table's worth of mappings from the 100 LAN hosts in turn, the per-client rate limit at its default. */
  natPmpTable: measureNatPmpTable,
} as const;

export type NatPmpGroupName = keyof typeof NAT_PMP_GROUPS;

async function measureNatPmpRequests(daemon: DaemonUnderTest, context: MeasureContext): Promise<Measurement> {
  const { generator, profile, log } = context;
  const gateway = context.gateway.testbed.addresses.gatewayLan;
  const sample: Sample = {};
  const raised = { ...context, gateway: { ...context.gateway, raiseClientRateLimits: true } };
  return withDaemon(daemon, raised, undefined, sample, async (running) => {
    await untilNatPmpAnswers(context);
    const { warmupMs, measureMs, maxOps } = profile.throughput;
    for (const concurrency of [1, 8] as const) {
      const { result, cpuPerOp } = await withCpu(running.pid, () =>
        generator.run({ kind: 'natPmpCycles', gateway, concurrency, hostsPerWorker: 1, warmupMs, maxOps, maxMs: measureMs, firstPort: CYCLE_PORTS_START }),
      );
      const cycles = result.ops / (result.elapsedMs / 1000);
      const cpuPerRequest = cpuPerOp / REQUESTS_PER_CYCLE;
      sample[concurrency === 1 ? 'natPmpCycles1' : 'natPmpCycles8'] = cycles;
      sample[concurrency === 1 ? 'natPmpCpu1' : 'natPmpCpu8'] = cpuPerRequest;
      log(`NAT-PMP map+delete, ${concurrency} client(s): ${cycles.toFixed(0)} cycles/s, ${cpuPerRequest.toFixed(0)} µs CPU per request`);
    }
    return {};
  });
}

async function measureNatPmpTable(daemon: DaemonUnderTest, context: MeasureContext): Promise<Measurement> {
  const { generator, profile, log } = context;
  const n = profile.mappings;
  const sample: Sample = {};
  return withDaemon(daemon, context, undefined, sample, async (running) => {
    await untilNatPmpAnswers(context);
    const cpuBefore = cpuSeconds(running.pid);
    const mapped = await generator.run({
      kind: 'natPmpMapMany',
      gateway: context.gateway.testbed.addresses.gatewayLan,
      firstPort: FIRST_MAPPED_PORT,
      count: n,
      checkpoints: [profile.firstCheckpoint, n],
      maxMs: profile.phaseMaxMs,
    });
    sample.natPmpMapCpu = ((cpuSeconds(running.pid) - cpuBefore) * 1e6) / Math.max(1, mapped.added);
    const firstMs = mapped.checkpointMs[profile.firstCheckpoint];
    if (firstMs !== undefined) sample.natPmpMapFirst = firstMs / 1000;
    if (mapped.added < n) throw new Error(`only ${mapped.added} of ${n} NAT-PMP mappings made within ${profile.phaseMaxMs / 1000} s`);
    sample.natPmpMapAll = mapped.checkpointMs[n]! / 1000;
    log(
      `NAT-PMP map ${profile.firstCheckpoint}: ${sample.natPmpMapFirst?.toFixed(2)} s, map ${n}: ${sample.natPmpMapAll.toFixed(2)} s, ` +
        `${sample.natPmpMapCpu.toFixed(0)} µs CPU each`,
    );
    return {};
  });
}

/** The daemon serves its description before (or after) its NAT-PMP socket is up: one map+delete cycle must succeed first. */
async function untilNatPmpAnswers(context: MeasureContext): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  const probe = {
    kind: 'natPmpCycles',
    gateway: context.gateway.testbed.addresses.gatewayLan,
    concurrency: 1,
    hostsPerWorker: 1,
    warmupMs: 0,
    maxOps: 1,
    maxMs: READY_TIMEOUT_MS,
    firstPort: CYCLE_PORTS_START,
  } as const;
  for (;;) {
    try {
      const { ops } = await context.generator.run(probe);
      if (ops === 1) return;
    } catch (err) {
      if (Date.now() >= deadline) throw new Error(`no NAT-PMP answer within ${READY_TIMEOUT_MS / 1000} s: ${(err as Error).message}`, { cause: err });
    }
    await sleep(READY_RETRY_MS);
  }
}
