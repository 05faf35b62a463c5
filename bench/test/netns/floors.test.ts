import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { describeNetns } from '../../../test/netns/netns.js';
import { parseUpnpcListing } from '../../../test/netns/topology.js';
import { measureConnectLatency } from '../../dataplane/measure.js';
import { nodeFloor } from '../../daemons/node-floor.js';
import type { GatewaySetup, RunningDaemon } from '../../daemons/types.js';
import { xtablesFloor } from '../../daemons/xtables-floor.js';
import { LoadGenerator } from '../../load/remote.js';
import { processGone } from '../../process-stats.js';
import { createBenchTestbed, gatewaySetup, type BenchTestbed } from '../../testbed.js';

const LIFETIME_MS = 90_000;
/** The entries Node's floor answers as if it held them. */
const ENTRIES = 7;

describeNetns("benchmark harness (the floors: x_tables and Node's)", ['ip', 'nft', 'upnpc', 'iptables-legacy-restore', 'iptables-legacy-save'], () => {
  let bench: BenchTestbed;
  let generator: LoadGenerator;
  let floor: RunningDaemon | undefined;

  beforeAll(async () => {
    bench = await createBenchTestbed(LIFETIME_MS);
    generator = await LoadGenerator.start(bench.testbed.lan, bench.testbed.addresses.lanClient, bench.lanHosts, LIFETIME_MS);
  });
  afterEach(async () => {
    await floor?.stop().catch(() => {});
    floor = undefined;
  });
  afterAll(async () => {
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

  it('answers the walks as if it held its entries: the generator and upnpc -l list them all, then fault 713; it stops on SIGTERM', async () => {
    floor = await nodeFloor(bench.testbed.addresses.gatewayWan, ENTRIES).start(gatewaySetup(bench, 49152));
    await generator.run({ kind: 'discover', descriptionUrl: floor.descriptionUrl, timeoutMs: 20_000 });

    for (const connection of ['close', 'keep-alive'] as const) {
      const walked = await generator.run({ kind: 'listByIndex', connection, maxEntries: ENTRIES + 5, maxMs: 20_000 });
      expect(walked.entries).toBe(ENTRIES);
    }

    const upnpc = await bench.testbed.lan.runner().run('upnpc', ['-u', floor.descriptionUrl, '-l'], { timeoutMs: 20_000 });
    expect(upnpc.exitCode).toBe(0);
    expect(upnpc.stdout).toContain(`ExternalIPAddress = ${bench.testbed.addresses.gatewayWan}`);
    const listed = parseUpnpcListing(upnpc.stdout);
    expect(listed.map((m) => m.externalPort)).toEqual(Array.from({ length: ENTRIES }, (_, i) => 20000 + i));
    expect(listed.every((m) => m.internalClient === bench.testbed.addresses.lanClient && m.protocol === 'TCP')).toBe(true);
    expect(upnpc.stdout).toContain('713');

    const pid = floor.pid;
    await floor.stop();
    floor = undefined;
    expect(processGone(pid)).toBe(true);
  });
});
