import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeNetns } from '../../../test/netns/netns.js';
import { measureConnectLatency } from '../../dataplane/measure.js';
import type { GatewaySetup, RunningDaemon } from '../../daemons/types.js';
import { xtablesFloor } from '../../daemons/xtables-floor.js';
import { LoadGenerator } from '../../load/remote.js';
import { processGone } from '../../process-stats.js';
import { createBenchTestbed, gatewaySetup, type BenchTestbed } from '../../testbed.js';

const LIFETIME_MS = 60_000;

describeNetns('benchmark harness (x_tables floor)', ['ip', 'nft', 'iptables-legacy-restore', 'iptables-legacy-save'], () => {
  let bench: BenchTestbed;
  let generator: LoadGenerator;
  let floor: RunningDaemon | undefined;

  beforeAll(async () => {
    bench = await createBenchTestbed(LIFETIME_MS);
    generator = await LoadGenerator.start(bench.testbed.lan, bench.testbed.addresses.lanClient, bench.lanHosts, LIFETIME_MS);
  });
  afterAll(async () => {
    await floor?.stop().catch(() => {});
    await generator?.stop();
    await bench?.destroy();
  });

  it('commits each AddPortMapping as one DNAT and one ACCEPT rule in x_tables, which the WAN host connects through; stopping leaves empty tables', async () => {
    const gateway: GatewaySetup = gatewaySetup(bench, 49152);
    floor = await xtablesFloor.start(gateway);
    await generator.run({ kind: 'discover', descriptionUrl: floor.descriptionUrl, timeoutMs: 20_000 });

    const added = await generator.run({ kind: 'addMappings', connection: 'close', firstPort: 20000, count: 5, checkpoints: [5], maxMs: 20_000 });
    expect(added.added).toBe(5);
    const saved = await bench.testbed.gateway.exec('iptables-legacy-save', []);
    expect(saved.match(/^-A MINIUPNPD -p tcp -m tcp --dport 2000\d -j DNAT --to-destination [\d.]+:2000\d$/gm)).toHaveLength(5);
    expect(saved.match(/^-A MINIUPNPD -d [\d.]+\/32 -p tcp -m tcp --dport 2000\d -j ACCEPT$/gm)).toHaveLength(5);

    // The admin's forward policy drops: a connection gets through only by both rules.
    const latency = await measureConnectLatency(bench.testbed, { ports: [20000, 20004], samples: 3, warmup: 1 });
    expect(latency.get(20000)).toHaveLength(3);
    expect(latency.get(20004)).toHaveLength(3);

    const pid = floor.pid;
    await floor.stop();
    floor = undefined;
    expect(processGone(pid)).toBe(true);
    expect(await bench.testbed.gateway.exec('iptables-legacy-save', [])).not.toMatch(/MINIUPNPD|DNAT|ACCEPT$/m);
  });
});
