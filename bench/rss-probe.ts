// `npx tsx bench/rss-probe.ts [--repeats N] [--mappings N] [--requests N] [--walks N | --as-bench] [--backend nftables|iptables|iptables-nft] --variant 'NAME|COMMAND|ENTRY' …`:
// upnpd's memory and CPU per request on the bench's testbed, for launcher or build variants run
// interleaved (A, B, A, B, …) so that the shared machine's noise falls on all of them alike.
// COMMAND replaces the shebang (`env MALLOC_ARENA_MAX=1 node --max-semi-space-size=1`; empty: the
// shebang of ENTRY's bin/upnpd.js), ENTRY a bin/upnpd.js (empty: this tree's). Per variant and
// repeat: RSS idle (median of 5 samples a second apart, 5 s after start, medianResidentSizes), the daemon's CPU per
// GetExternalIPAddress on a new connection (after a warm-up), RSS after those requests, and RSS
// with N mappings added from the bench's 100 LAN hosts and walked, settled (median of 5 samples
// after 15 s quiet), and the CPU it then uses in 30 s without requests; each figure with the processes it adds up.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { TESTBED_ADDRESSES } from '../test/netns/topology.js';
import { upnpd, upnpdIptables, upnpdIptablesNft } from './daemons/upnpd.js';
import { measureConnectLatency } from './dataplane/measure.js';
import { median } from './figures.js';
import { LoadGenerator } from './load/remote.js';
import { cpuSeconds, medianResidentSizes, parseVmRss, processTree } from './process-stats.js';
import { createBenchTestbed, gatewaySetup, removeOnSignal } from './testbed.js';

const HTTP_PORT = 49152;
const LIFETIME_MS = 40 * 60_000;
const MB = 1024 * 1024;
/** How long the idle CPU with the mappings is measured. */
const IDLE_CPU_MS = 30_000;

const { values } = parseArgs({
  options: {
    repeats: { type: 'string', default: '2' },
    mappings: { type: 'string', default: '5000' },
    requests: { type: 'string', default: '3000' },
    /** Walks of the mappings before the settled sample (the full bench makes three: new connections, upnpc -l, keep-alive). */
    walks: { type: 'string', default: '1' },
    /**
     * After the adds, what the full bench's table group does before its settled sample instead of
     * the walks: connect latency through the first and last mapping, the walk on new connections,
     * `upnpc -l`, the walk on one kept connection.
     */
    'as-bench': { type: 'boolean', default: false },
    variant: { type: 'string', multiple: true, default: ['current||'] },
    /** The firewall backend, as the full bench runs it: nftables, iptables (x_tables) or iptables-nft. */
    backend: { type: 'string', default: 'nftables' },
    /** Sends the daemon SIGUSR2 after each sample (for a preload that dumps its heap figures then). */
    signal: { type: 'boolean', default: false },
  },
});
const variants = values.variant.map((v) => {
  const [name = '', command = '', entry = ''] = v.split('|');
  return { name, command, entry };
});
const BACKENDS = { nftables: upnpd, iptables: upnpdIptables, 'iptables-nft': upnpdIptablesNft } as const;
if (!Object.hasOwn(BACKENDS, values.backend)) throw new Error(`--backend: one of ${Object.keys(BACKENDS).join(', ')}, not ${values.backend}`);
const daemon = BACKENDS[values.backend as keyof typeof BACKENDS];
const repeats = Number(values.repeats);
const mappings = Number(values.mappings);
const requests = Number(values.requests);
const walks = Number(values.walks);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The tree's RSS and each process's share in the median sample (medianResidentSizes). */
async function sampleRss(pid: number): Promise<{ mb: number; parts: string }> {
  const { total, parts } = await medianResidentSizes(pid);
  if (values.signal) process.kill(pid, 'SIGUSR2');
  return { mb: total / MB, parts };
}

/** How often over 10 s (a sample each 100 ms) the daemon runs a child beyond its long-lived ones, and their RSS then. */
async function shortLivedChildren(pid: number): Promise<string> {
  const longLived = /^(nft (--echo )?monitor|xtables-monitor --event|ip -o monitor|nft -i|ip6?tables(-legacy|-nft)?-restore )/;
  let seen = 0;
  let total = 0;
  const samples = 100;
  for (let i = 0; i < samples; i += 1) {
    const extra = processTree(pid)
      .slice(1)
      .filter((p) => {
        try {
          return !longLived.test(readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').join(' '));
        } catch {
          return false;
        }
      })
      .reduce((sum, p) => sum + ownResidentBytes(p), 0);
    if (extra > 0) {
      seen += 1;
      total += extra;
    }
    await sleep(100);
  }
  return `in ${seen} of ${samples} samples, ${seen ? (total / seen / MB).toFixed(1) : 0} MB on average then`;
}

function ownResidentBytes(pid: number): number {
  try {
    return parseVmRss(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return 0;
  }
}

interface Row {
  idle: number;
  cpu: number;
  afterRequests: number;
  mapped: number;
  /** CPU ms per second with the mappings and no requests (the periodic firewall check, timers). */
  idleCpu: number;
}
const rows = new Map<string, Row[]>(variants.map((v) => [v.name, []]));

const bench = await createBenchTestbed(LIFETIME_MS);
removeOnSignal(bench);
try {
  const generator = await LoadGenerator.start(bench.testbed.lan, bench.testbed.addresses.lanClient, bench.lanHosts, LIFETIME_MS);
  const gateway = gatewaySetup(bench, HTTP_PORT);
  for (let repeat = 0; repeat < repeats; repeat += 1) {
    for (const variant of variants) {
      if (variant.command) process.env.BENCH_UPNPD_COMMAND = variant.command;
      else delete process.env.BENCH_UPNPD_COMMAND;
      if (variant.entry) process.env.BENCH_UPNPD_ENTRY = variant.entry;
      else delete process.env.BENCH_UPNPD_ENTRY;
      const running = await daemon.start(gateway);
      const log = (text: string) => process.stderr.write(`[${variant.name} #${repeat + 1}] ${text}\n`);
      try {
        // Which build and launcher ran, as the kernel saw it started.
        log(`runs ${readFileSync(`/proc/${running.pid}/cmdline`, 'utf8').split('\0').join(' ').trim()}`);
        await generator.run({ kind: 'discover', descriptionUrl: running.descriptionUrl, timeoutMs: 30_000 });
        await sleep(5000);
        const idle = await sampleRss(running.pid);
        log(`idle ${idle.mb.toFixed(1)} MB (${idle.parts})`);
        const limits = { connection: 'close', concurrency: 1, warmupMs: 0, maxOps: requests, maxMs: 120_000 } as const;
        const run = () => generator.run({ kind: 'getExternalIp', ...limits, expectedAddress: TESTBED_ADDRESSES.gatewayWan });
        // --requests 0: the mappings come to a daemon that has served nothing yet, as in the full bench's table group.
        let cpu = NaN;
        if (requests > 0) {
          await run();
          const before = cpuSeconds(running.pid);
          const result = await run();
          cpu = ((cpuSeconds(running.pid) - before) * 1e6) / result.ops;
        }
        await sleep(15_000);
        const afterRequests = await sampleRss(running.pid);
        log(`GetExternalIPAddress ${cpu.toFixed(1)} µs CPU each; then ${afterRequests.mb.toFixed(1)} MB (${afterRequests.parts})`);
        await generator.run({ kind: 'addMappings', connection: 'close', firstPort: 20000, count: mappings, checkpoints: [mappings], maxMs: 300_000 });
        if (values['as-bench']) {
          await measureConnectLatency(gateway.testbed, { ports: [20000, 20000 + mappings - 1], samples: 200, warmup: 20 });
          await generator.run({ kind: 'listByIndex', connection: 'close', maxEntries: mappings + 1, maxMs: 120_000 });
          await gateway.testbed.lan.runner().run('upnpc', ['-u', running.descriptionUrl, '-l'], { timeoutMs: 120_000 });
          await generator.run({ kind: 'listByIndex', connection: 'keep-alive', maxEntries: mappings + 1, maxMs: 120_000 });
        } else {
          for (let walk = 0; walk < walks; walk += 1) {
            await generator.run({ kind: 'listByIndex', connection: 'close', maxEntries: mappings + 1, maxMs: 120_000 });
          }
        }
        await sleep(15_000);
        const mapped = await sampleRss(running.pid);
        log(`${mappings} mappings, settled: ${mapped.mb.toFixed(1)} MB (${mapped.parts})`);
        log(`short-lived children, settled: ${await shortLivedChildren(running.pid)}`);
        const quietFrom = cpuSeconds(running.pid);
        await sleep(IDLE_CPU_MS);
        const idleCpu = ((cpuSeconds(running.pid) - quietFrom) * 1000) / (IDLE_CPU_MS / 1000);
        log(`idle CPU with ${mappings} mappings: ${idleCpu.toFixed(1)} ms per second (its children's included)`);
        rows.get(variant.name)!.push({ idle: idle.mb, cpu, afterRequests: afterRequests.mb, mapped: mapped.mb, idleCpu });
      } finally {
        await running.stop();
      }
    }
  }
  await generator.stop();
} finally {
  await bench.destroy();
}
const show = (samples: number[]) => `${median(samples).toFixed(1)} (${samples.map((s) => s.toFixed(1)).join(', ')})`;
for (const [name, r] of rows) {
  process.stdout.write(
    `${name}: idle ${show(r.map((x) => x.idle))} MB; µs/GetExternalIPAddress ${show(r.map((x) => x.cpu))}; ` +
      `after requests ${show(r.map((x) => x.afterRequests))} MB; ${mappings} mappings ${show(r.map((x) => x.mapped))} MB, ` +
      `idle CPU then ${show(r.map((x) => x.idleCpu))} ms/s\n`,
  );
}
