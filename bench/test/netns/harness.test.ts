import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeNetns } from '../../../test/netns/netns.js';
import { buildNeeded } from '../../build.js';
import { measureConnectLatency } from '../../dataplane/measure.js';
import { upnpd } from '../../daemons/upnpd.js';
import type { GatewaySetup, RunningDaemon } from '../../daemons/types.js';
import { runApacheBench } from '../../load/apache-bench.js';
import { LoadGenerator } from '../../load/remote.js';
import { processGone, residentBytes } from '../../process-stats.js';
import { createBenchTestbed, gatewaySetup, type BenchTestbed } from '../../testbed.js';

const LIFETIME_MS = 60_000;

// The harness end to end with upnpd (miniupnpd is not among the CI packages): testbed with STUN
// server, daemon adapter, load generator and ApacheBench in the LAN namespace, data-plane probe
// from the WAN host.
describeNetns('benchmark harness (upnpd)', ['ip', 'nft', 'ab'], () => {
  let bench: BenchTestbed;
  let generator: LoadGenerator;
  let daemon: RunningDaemon | undefined;

  beforeAll(async () => {
    const stale = buildNeeded();
    if (stale) throw new Error(`run npm run build first: ${stale}`);
    bench = await createBenchTestbed(LIFETIME_MS);
    generator = await LoadGenerator.start(bench.testbed.lan, bench.testbed.addresses.lanClient, bench.lanHosts, LIFETIME_MS);
  });
  afterAll(async () => {
    await daemon?.stop().catch(() => {});
    await generator?.stop();
    await bench?.destroy();
  });

  it('drives upnpd from the LAN client, reaches the mapped ports from the WAN host, and cleans up', async () => {
    const gateway: GatewaySetup = gatewaySetup(bench, 49152);
    daemon = await upnpd.start(gateway);
    const found = await generator.run({ kind: 'discover', descriptionUrl: daemon.descriptionUrl, timeoutMs: 20_000 });
    expect(found.controlUrl).toMatch(/^http:\/\/192\.168\.77\.1:49152\//);
    expect(residentBytes(daemon.pid)).toBeGreaterThan(1024 * 1024);

    const rate = await generator.run({
      kind: 'getExternalIp',
      connection: 'close',
      concurrency: 2,
      warmupMs: 0,
      maxOps: 20,
      maxMs: 10_000,
      expectedAddress: '203.0.113.1',
    });
    expect(rate.ops).toBe(20);
    // ApacheBench from two LAN hosts: every answer a 200 of the same length, or it throws.
    const fromC = await runApacheBench(bench.testbed.lan.runner(), {
      controlUrl: new URL(found.controlUrl),
      serviceType: found.serviceType,
      sources: bench.lanHosts.slice(0, 2),
      requestsPerSource: 20,
      maxSeconds: 10,
      workDir: bench.workDir,
    });
    expect(fromC.requests).toBe(40);
    const added = await generator.run({ kind: 'addMappings', connection: 'close', firstPort: 20000, count: 5, checkpoints: [5], maxMs: 20_000 });
    expect(added.added).toBe(5);
    expect(await generator.run({ kind: 'listByIndex', connection: 'close', maxEntries: 10, maxMs: 10_000 })).toMatchObject({ entries: 5 });
    expect(await generator.run({ kind: 'listInPages', connection: 'close', pageSize: 2, maxEntries: 10, maxMs: 10_000 })).toMatchObject({
      entries: 5,
      calls: 3,
    });

    const latency = await measureConnectLatency(bench.testbed, { ports: [20000, 20004], samples: 5, warmup: 1 });
    expect(latency.get(20000)).toHaveLength(5);
    expect(latency.get(20004)).toHaveLength(5);

    const pid = daemon.pid;
    await daemon.stop();
    daemon = undefined;
    expect(processGone(pid)).toBe(true);
    expect(await bench.testbed.gateway.exec('nft', ['list', 'tables'])).not.toMatch(/upnpd/);
  });

  it('starts upnpd with persisted mappings: it reports the last one once started, and the WAN host reaches it', async () => {
    const gateway: GatewaySetup = gatewaySetup(bench, 49152);
    daemon = await upnpd.start(gateway, { count: 50, firstPort: 21000, clients: bench.lanHosts });
    await generator.run({ kind: 'discover', descriptionUrl: daemon.descriptionUrl, timeoutMs: 20_000, awaitMappingPort: 21049 });
    expect(await generator.run({ kind: 'listByIndex', connection: 'close', maxEntries: 60, maxMs: 10_000 })).toMatchObject({ entries: 50 });
    const latency = await measureConnectLatency(bench.testbed, { ports: [21049], samples: 2, warmup: 1 });
    expect(latency.get(21049)).toHaveLength(2);
    await daemon.stop();
    daemon = undefined;
  });
});
