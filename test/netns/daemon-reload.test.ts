import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import { describeNetns } from './netns.js';
import {
  NFT_ADMIN_FORWARD_CHAIN,
  TESTBED_ADDRESSES,
  createTestbed,
  installNftAdminFirewall,
  startDaemonInGateway,
  tcpReachable,
  upnpc,
  type RunningDaemon,
  type Testbed,
  type TestbedOptions,
  type UpnpcRun,
  PUBLIC_API,
  NFT_FORWARD_JUMP_PLUGIN,
} from './topology.js';

// The admin reloads the firewall under a running upnpd (OpenWrt's fw4, firewalld, a script that
// starts with `flush ruleset`). The mappings must forward again within 5 s without any client
// asking, and a client's next request must not be answered 501. With nftables the kernel's events
// (xtables-monitor, else `nft monitor`) trigger the repair; iptables has none, and its periodic check (2 s) does.
//
// To see the broken state with real packets, the daemon is paused (SIGSTOP) from just before the
// reload until the traffic check is done: otherwise it may repair faster than a check can prove the
// breakage. The 5 s count from the moment it runs again.

/** A delivery that should happen gets this long; one that should not, this long. */
const PASSES_MS = 5_000;
const BLOCKED_MS = 1_500;
/** Forwarding must be back within this, with no client request. */
const RESTORED_WITHIN_MS = 5_000;
/** One probe while waiting for the repair. */
const PROBE_MS = 800;
const LEASE = '3600';

interface ReloadScenario {
  readonly name: string;
  readonly programs: readonly string[];
  readonly testbed: TestbedOptions;
  /** Completes the admin's firewall; returns the daemon's backend arguments (a config file goes in `scratchDir`). */
  prepare(testbed: Testbed, scratchDir: string): Promise<string[]>;
  /** What the admin does. `baseline` is what `saveBaseline` read before upnpd started. */
  reload(testbed: Testbed, baseline: string): Promise<void>;
  saveBaseline(testbed: Testbed): Promise<string>;
  /** What the repair's log line must name as its trigger. */
  readonly trigger: RegExp;
}

/** The admin's nftables ruleset (the same as installNftAdminFirewall), as a file they would load. */
function nftAdminBaseline(testbed: Testbed): string {
  const { family, table, chain } = NFT_ADMIN_FORWARD_CHAIN;
  return `table ${family} ${table} {
	chain ${chain} {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname "${testbed.lanInterface}" oifname "${testbed.wanInterface}" accept
	}
}
`;
}

async function nftablesWithForwardJump(testbed: Testbed, scratchDir: string): Promise<string[]> {
  await installNftAdminFirewall(testbed);
  const configFile = join(scratchDir, 'upnpd.config.mjs');
  await writeFile(
    configFile,
    [
      `import { defineConfig, nftables } from ${JSON.stringify(PUBLIC_API)};`,
      // The periodic check is put far off: only the ruleset monitor's events can bring the mappings back in time.
      `export default defineConfig({ reconcile: { intervalSeconds: 60 }, plugins: [${NFT_FORWARD_JUMP_PLUGIN}] });`,
      '',
    ].join('\n'),
  );
  return ['--config', configFile];
}

const SCENARIOS: readonly ReloadScenario[] = [
  {
    name: 'nftables: `flush ruleset` followed by the admin baseline',
    programs: ['ip', 'upnpc', 'iptables-restore', 'nft'],
    testbed: { forwardPolicy: 'ACCEPT' },
    prepare: nftablesWithForwardJump,
    trigger: /resynced 1 mapping\(s\) in \d+ ms \(after a firewall change event\)/,
    saveBaseline: (testbed) => Promise.resolve(nftAdminBaseline(testbed)),
    reload: async (testbed, baseline) => {
      await testbed.gateway.exec('nft', ['-f', '-'], { input: `flush ruleset\n${baseline}` });
    },
  },
  {
    name: "nftables: a reload of only the admin's table inet filter (forwardJump)",
    programs: ['ip', 'upnpc', 'iptables-restore', 'nft'],
    testbed: { forwardPolicy: 'ACCEPT' },
    prepare: nftablesWithForwardJump,
    trigger: /resynced 1 mapping\(s\) in \d+ ms \(after a firewall change event\)/,
    saveBaseline: (testbed) => Promise.resolve(nftAdminBaseline(testbed)),
    reload: async (testbed, baseline) => {
      const { family, table } = NFT_ADMIN_FORWARD_CHAIN;
      // As fw4 does: the table is deleted and defined again in one transaction.
      await testbed.gateway.exec('nft', ['-f', '-'], { input: `table ${family} ${table}\ndelete table ${family} ${table}\n${baseline}` });
    },
  },
  {
    name: 'iptables: a full iptables-restore of the admin baseline',
    programs: ['ip', 'upnpc', 'iptables', 'iptables-save', 'iptables-restore'],
    testbed: {},
    prepare: () => Promise.resolve(['--backend', 'iptables']),
    trigger: /resynced 1 mapping\(s\) in \d+ ms \(periodic check\)/,
    saveBaseline: (testbed) => testbed.gateway.exec('iptables-save', []),
    reload: async (testbed, baseline) => {
      await testbed.gateway.exec('iptables-restore', [], { input: baseline });
    },
  },
  {
    name: 'iptables: FORWARD and nat PREROUTING flushed and the admin rules put back (upnpd chains intact, jumps gone)',
    programs: ['ip', 'upnpc', 'iptables', 'iptables-save', 'iptables-restore'],
    testbed: {},
    prepare: () => Promise.resolve(['--backend', 'iptables']),
    trigger: /resynced 1 mapping\(s\) in \d+ ms \(periodic check\)/,
    saveBaseline: (testbed) => testbed.gateway.exec('iptables-save', []),
    reload: async (testbed, baseline) => {
      await testbed.gateway.exec('iptables', ['-F', 'FORWARD']);
      await testbed.gateway.exec('iptables', ['-t', 'nat', '-F', 'PREROUTING']);
      const rulesOf = (chain: string) => baseline.split('\n').filter((line) => line.startsWith(`-A ${chain} `));
      const script = ['*nat', ...rulesOf('PREROUTING'), 'COMMIT', '*filter', ...rulesOf('FORWARD'), 'COMMIT', ''].join('\n');
      await testbed.gateway.exec('iptables-restore', ['--noflush'], { input: script });
    },
  },
];

function expectSucceeded(run: UpnpcRun): void {
  expect(run.exitCode, run.output).toBe(0);
}

for (const scenario of SCENARIOS) {
  describeNetns(`after the admin's firewall reload, ${scenario.name}`, scenario.programs, () => {
    const a = TESTBED_ADDRESSES;
    let testbed: Testbed;
    let scratchDir: string | undefined;
    let daemon: RunningDaemon | undefined;
    let baseline: string;

    const fromLan = (...args: string[]) => upnpc(testbed.lan, ['-u', daemon!.url, ...args]);
    const reaches = (port: number, timeoutMs = PASSES_MS) => tcpReachable(testbed.wan, a.gatewayWan, port, testbed.lan, timeoutMs);

    beforeAll(async () => {
      scratchDir = await mkdtemp(join(tmpdir(), 'upnpd-reload-'));
      testbed = await createTestbed(scenario.testbed);
      const backendArgs = await scenario.prepare(testbed, scratchDir);
      baseline = await scenario.saveBaseline(testbed);
      daemon = await startDaemonInGateway(testbed, ['--lan', testbed.lanInterface, '--wan', testbed.wanInterface, ...backendArgs]);
    });
    afterAll(async () => {
      try {
        if (daemon) process.kill(daemon.pid, 'SIGCONT');
        await daemon?.stop();
      } finally {
        await testbed?.destroy();
        if (scratchDir) await rm(scratchDir, { recursive: true, force: true });
      }
    });
    beforeEach(({ onTestFailed }) => {
      onTestFailed(() => console.error(`upnpd output, last part:\n${daemon?.output().slice(-6000)}`));
    });

    it('forwards again within 5 s without a client request, and the next AddPortMapping succeeds', async () => {
      expectSucceeded(await fromLan('-a', a.lanClient, '7600', '7600', 'TCP', LEASE));
      expect(await reaches(7600)).toBe(true);

      process.kill(daemon!.pid, 'SIGSTOP');
      try {
        await scenario.reload(testbed, baseline);
        expect(await reaches(7600, BLOCKED_MS)).toBe(false);
      } finally {
        process.kill(daemon!.pid, 'SIGCONT');
      }

      const resumed = Date.now();
      let restored = false;
      while (!restored && Date.now() - resumed < RESTORED_WITHIN_MS) restored = await reaches(7600, PROBE_MS);
      expect(restored, 'forwarding restored without a client request').toBe(true);
      expect(Date.now() - resumed).toBeLessThanOrEqual(RESTORED_WITHIN_MS + PROBE_MS);

      expectSucceeded(await fromLan('-a', a.lanClient, '7601', '7601', 'TCP', LEASE));
      expect(await reaches(7601)).toBe(true);
      expect(await reaches(7600)).toBe(true);
      expect(daemon!.output()).toMatch(scenario.trigger);
    });
  });
}
