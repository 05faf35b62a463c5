import { NamespaceProcess, tsEntryCommand } from '../test/netns/namespace-process.js';
import { TESTBED_IPV6_ADDRESSES } from '../test/netns/topology.js';
import { MINIUPNPD_NFT } from './daemons/miniupnpd-config.js';
import { upnpd } from './daemons/upnpd.js';
import type { DaemonUnderTest } from './daemons/types.js';
import type { Sample } from './figures.js';
import { BENCH_LEASE_SECONDS } from './load/protocol.js';
import { pinholesInListing, planPinholes, type PinholeLoadResult } from './load/pinholes.js';
import { withDaemon, type MeasureContext, type Measurement } from './measure.js';
import { pinholeCount } from './pinhole-figures.js';
import { cpuSeconds } from './process-stats.js';

/**
 * The IPv6 pinhole row: AddPinhole (WANIPv6FirewallControl:1) over IPv6 from the testbed's IPv6
 * LAN hosts, by pinholes-main.ts in the LAN client's namespace, on a freshly started daemon, every
 * default limit in place. Each pinhole added must be in the kernel at the end: upnpd's as elements
 * of its pinhole set, miniupnpd's as rules of its chain, both in the admin's `inet filter` table.
 * A miniupnpd that cannot add them in this testbed gets no figure, and the reason as its note.
 */

const FIRST_PINHOLE_PORT = 30000;
/** Requests in flight at once, as in the 8-worker cycle row. */
const CONCURRENCY = 8;
/** Beyond the phase's bound, for the load process to start and report. */
const PROCESS_SLACK_MS = 30_000;

export const PINHOLE_GROUPS = { pinholes: measurePinholes } as const;

export type PinholeGroupName = keyof typeof PINHOLE_GROUPS;

async function measurePinholes(daemon: DaemonUnderTest, context: MeasureContext): Promise<Measurement> {
  const { profile, log } = context;
  const { testbed, lanHosts6 } = context.gateway;
  const n = pinholeCount(profile);
  const sample: Sample = {};
  return withDaemon(daemon, context, undefined, sample, async (running) => {
    // The daemon's description over IPv6: its own URL with the gateway's IPv6 LAN address, then upnpd's IGD:2 view.
    const described = new URL(running.descriptionUrl);
    described.hostname = `[${TESTBED_IPV6_ADDRESSES.gatewayLan}]`;
    const descriptionUrls = [described.href, new URL('/rootDesc2.xml', described).href];
    const cpuBefore = cpuSeconds(running.pid);
    const result = await runLoad(context, descriptionUrls, n);
    const cpu = cpuSeconds(running.pid) - cpuBefore;
    const listing = await testbed.gateway.exec('nft', ['list', 'table', MINIUPNPD_NFT.family, MINIUPNPD_NFT.table]);
    const installed = pinholesInListing(listing, planPinholes(result.added, lanHosts6, FIRST_PINHOLE_PORT));
    const failure =
      result.error ?? (installed < result.added ? `${result.added} pinholes added but only ${installed} of them in the kernel (table inet filter)` : undefined);
    if (failure !== undefined) {
      if (daemon === upnpd) throw new Error(`pinholes: ${failure}`);
      log(`no pinhole figures: ${failure}`);
      return { pinholesAdd: failure, pinholeCpu: failure };
    }
    sample.pinholesAdd = result.elapsedMs / 1000;
    sample.pinholeCpu = (cpu * 1e6) / result.added;
    log(
      `add ${n} pinholes at ${result.controlUrl}: ${sample.pinholesAdd.toFixed(2)} s, ${sample.pinholeCpu.toFixed(0)} µs CPU each, ${installed} in the kernel`,
    );
    return {};
  });
}

async function runLoad(context: MeasureContext, descriptionUrls: readonly string[], count: number): Promise<PinholeLoadResult> {
  const { testbed, lanHosts6 } = context.gateway;
  const load = NamespaceProcess.start(
    testbed.lan,
    tsEntryCommand(new URL('./load/pinholes-main.ts', import.meta.url), [
      ...descriptionUrls.flatMap((url) => ['--description', url]),
      ...lanHosts6.flatMap((host) => ['--host', host]),
      ...['--count', String(count), '--first-port', String(FIRST_PINHOLE_PORT), '--lease', String(BENCH_LEASE_SECONDS)],
      ...['--concurrency', String(CONCURRENCY), '--max-ms', String(context.profile.phaseMaxMs)],
    ]),
  );
  try {
    const line = await load.waitFor(/^PINHOLES (.*)$/m, context.profile.phaseMaxMs + PROCESS_SLACK_MS);
    return JSON.parse(line[1]!) as PinholeLoadResult;
  } catch (err) {
    throw new Error(`the pinhole load did not report: ${err instanceof Error ? err.message : String(err)}\n${load.output().slice(-2000)}`, { cause: err });
  } finally {
    await load.stop('SIGTERM', 5_000);
  }
}
