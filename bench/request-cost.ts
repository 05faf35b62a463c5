// `sudo npx tsx bench/request-cost.ts [--requests N] [--repeats N] [--concurrency N] [--cycles | --walk N] [--idle-seconds N] [--rss-after-seconds N] [--daemon NAME …]`: the daemon's CPU
// time per GetExternalIPAddress (with --cycles: per AddPortMapping+DeletePortMapping cycle, going round the LAN hosts) on a new connection per request (`Connection: Close`, as miniupnpc
// sends it), for upnpd, miniupnpd and Node's floor on the bench's testbed. A fixed number of
// requests, so that the figure is the daemon's CPU time (from /proc), not a rate the shared machine
// makes noisy. With BENCH_UPNPD_NODE_FLAGS (e.g. --cpu-prof) upnpd runs with those flags too.
import { parseArgs } from 'node:util';
import { TESTBED_ADDRESSES } from '../test/netns/topology.js';
import { MINIUPNPD_PATH, miniupnpd, probeMiniupnpd, unpackedMiniupnpdIptables } from './daemons/miniupnpd.js';
import { nodeFloor } from './daemons/node-floor.js';
import type { DaemonUnderTest } from './daemons/types.js';
import { upnpd, upnpdBaseline, upnpdIptables } from './daemons/upnpd.js';
import { median } from './figures.js';
import { LoadGenerator } from './load/remote.js';
import { readFileSync } from 'node:fs';
import { cpuSeconds, processTree, residentBytes } from './process-stats.js';
import { createBenchTestbed, gatewaySetup, removeOnSignal } from './testbed.js';

const HTTP_PORT = 49152;
const LIFETIME_MS = 15 * 60_000;

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '5000' },
    repeats: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '1' },
    cycles: { type: 'boolean', default: false },
    'idle-seconds': { type: 'string', default: '0' },
    walk: { type: 'string' },
    'rss-after-seconds': { type: 'string' },
    daemon: { type: 'string', multiple: true },
  },
});
const requests = Number(values.requests);
const repeats = Number(values.repeats);
const concurrency = Number(values.concurrency);
const probe = await probeMiniupnpd();
const all: DaemonUnderTest[] = [
  ...(values.cycles ? [] : [nodeFloor(TESTBED_ADDRESSES.gatewayWan, 0)]),
  upnpd,
  // Another build (its bin/ and dist/) for an A/B run interleaved with this one.
  ...(process.env.BENCH_UPNPD_BASELINE ? [upnpdBaseline(process.env.BENCH_UPNPD_BASELINE)] : []),
  ...(probe.available ? [miniupnpd({ name: 'miniupnpd', version: probe.version, path: MINIUPNPD_PATH, backend: 'nftables' })] : []),
];
const iptablesBuild = values.daemon?.some((name) => name.includes('iptables')) ? await unpackedMiniupnpdIptables() : undefined;
if (iptablesBuild?.available) {
  all.push(upnpdIptables, miniupnpd({ name: 'miniupnpd (iptables)', version: iptablesBuild.version, path: iptablesBuild.path!, backend: 'iptables' }));
}
const daemons = values.daemon ? all.filter((d) => values.daemon!.includes(d.name)) : all;

const bench = await createBenchTestbed(LIFETIME_MS);
removeOnSignal(bench);
const perRequest = new Map<string, number[]>(daemons.map((d) => [d.name, []]));
try {
  const generator = await LoadGenerator.start(bench.testbed.lan, bench.testbed.addresses.lanClient, bench.lanHosts, LIFETIME_MS);
  const gateway = gatewaySetup(bench, HTTP_PORT);
  for (let repeat = 0; repeat < repeats; repeat += 1) {
    for (const daemon of daemons) {
      const running = await daemon.start(gateway);
      try {
        await generator.run({ kind: 'discover', descriptionUrl: running.descriptionUrl, timeoutMs: 30_000 });
        const limits = { connection: 'close', concurrency, warmupMs: 0, maxOps: requests, maxMs: 120_000 } as const;
        const run = () =>
          values.cycles
            ? generator.run({ kind: 'addDeleteCycles', ...limits, firstPort: 40000 })
            : generator.run({ kind: 'getExternalIp', ...limits, expectedAddress: TESTBED_ADDRESSES.gatewayWan });
        const idleSeconds = Number(values['idle-seconds']);
        if (idleSeconds > 0) {
          const idleBefore = cpuSeconds(running.pid);
          await new Promise((resolve) => setTimeout(resolve, idleSeconds * 1000));
          process.stderr.write(`${daemon.name}: ${(((cpuSeconds(running.pid) - idleBefore) * 1000) / idleSeconds).toFixed(1)} ms CPU a second, idle\n`);
        }
        let ops: number;
        let elapsedMs: number;
        let micros: number;
        if (values.walk) {
          const count = Number(values.walk);
          await generator.run({ kind: 'addMappings', connection: 'close', firstPort: 20000, count, checkpoints: [count], maxMs: 300_000 });
          await generator.run({ kind: 'listByIndex', connection: 'close', maxEntries: count + 1, maxMs: 120_000 }); // warm-up
          const before = cpuSeconds(running.pid);
          const walked = await generator.run({ kind: 'listByIndex', connection: 'close', maxEntries: count + 1, maxMs: 120_000 });
          ({ calls: ops, elapsedMs } = walked);
          micros = ((cpuSeconds(running.pid) - before) * 1e6) / ops;
        } else {
          await run(); // warm-up: the JIT, the first connections
          const before = cpuSeconds(running.pid);
          const result = await run();
          ({ ops, elapsedMs } = result);
          micros = ((cpuSeconds(running.pid) - before) * 1e6) / ops;
        }
        perRequest.get(daemon.name)!.push(micros);
        if (values['rss-after-seconds']) {
          await new Promise((resolve) => setTimeout(resolve, Number(values['rss-after-seconds']) * 1000));
          for (const pid of processTree(running.pid)) {
            const command = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').slice(0, 60);
            process.stderr.write(`  ${pid} ${(residentBytes(pid) / 1024 / 1024).toFixed(1)} MB ${command}\n`);
          }
        }
        process.stderr.write(`${daemon.name}: ${micros.toFixed(1)} µs CPU per request, ${(ops / (elapsedMs / 1000)).toFixed(0)} req/s\n`);
      } finally {
        await running.stop();
      }
    }
  }
  await generator.stop();
} finally {
  await bench.destroy();
}
for (const [name, samples] of perRequest) {
  process.stdout.write(`${name}: median ${median(samples).toFixed(1)} µs CPU per request (${samples.map((s) => s.toFixed(1)).join(', ')})\n`);
}
