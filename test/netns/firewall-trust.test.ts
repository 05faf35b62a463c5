import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import { programsOf } from '../../plugins/iptables/rules.js';
import { describeNetns } from './netns.js';
import {
  NFT_ADMIN_FORWARD_CHAIN,
  NFT_FORWARD_JUMP_PLUGIN,
  PUBLIC_API,
  TESTBED_ADDRESSES,
  createTestbed,
  firewallSnapshot,
  installNftAdminFirewall,
  parseUpnpcListing,
  startDaemonInGateway,
  tcpReachable,
  upnpc,
  useTestbedDaemon,
  type RunningDaemon,
  type Testbed,
} from './topology.js';

// A daemon on either iptables flavour, beside docker-like chains of the admin: a crash (kill -9)
// and a restart from --state-dir, then a whole iptables-restore of the admin's firewall, then
// SIGTERM. After each step the WAN host must reach the LAN client through the mapping, and the
// kernel must hold exactly one rule pair per mapping; at the end nothing of upnpd's is left.

const PASSES_MS = 5_000;
const RESTORED_WITHIN_MS = 6_000;
const PROBE_MS = 800;

for (const flavour of ['iptables', 'iptables-legacy'] as const) {
  const programs = programsOf(flavour);
  describeNetns(`a daemon on ${flavour} beside docker-like rules`, ['ip', 'upnpc', programs.iptables, programs.restore, programs.save], () => {
    const a = TESTBED_ADDRESSES;
    let testbed: Testbed;
    let scratchDir: string;
    let daemonArgs: string[];
    let daemon: RunningDaemon | undefined;
    let adminRules: string[];
    let baseline: string;

    const reaches = (port: number, timeoutMs = PASSES_MS) => tcpReachable(testbed.wan, a.gatewayWan, port, testbed.lan, timeoutMs);
    // upnpd's tagged jumps and dispatch rules, and the mapping rules in its chains (the chains themselves
    // not: the iptables-restore session's sync chain comes and goes).
    const upnpdRules = async () => (await firewallSnapshot(testbed.gateway, flavour)).filter((line) => line.includes('upnpd') || line.startsWith('-A UPNPD-'));
    /** The DNAT and ACCEPT rules of a mapping of TCP `port` to the same port, in upnpd's leaf chains. */
    const mappingRules = async (port: number) =>
      (await upnpdRules()).filter((line) => new RegExp(`^-A UPNPD-\\S+\\.t[0-9a-f]{3} .*--dport ${port} -j (DNAT|ACCEPT)\\b`).test(line));
    const eventuallyReaches = async (port: number) => {
      const started = Date.now();
      while (Date.now() - started < RESTORED_WITHIN_MS) if (await reaches(port, PROBE_MS)) return true;
      return false;
    };

    beforeAll(async () => {
      scratchDir = await mkdtemp(join(tmpdir(), 'upnpd-trust-'));
      testbed = await createTestbed({ adminFlavour: flavour });
      // Docker's chains: nat PREROUTING jumps to DOCKER for local addresses, FORWARD starts with DOCKER-USER.
      await testbed.gateway.exec(programs.restore, ['--noflush'], {
        input: [
          '*nat',
          ':DOCKER - [0:0]',
          '-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER',
          '-A DOCKER -i docker0 -j RETURN',
          'COMMIT',
          '*filter',
          ':DOCKER-USER - [0:0]',
          '-I FORWARD 1 -j DOCKER-USER',
          '-A DOCKER-USER -j RETURN',
          'COMMIT',
          '',
        ].join('\n'),
      });
      adminRules = await firewallSnapshot(testbed.gateway, flavour);
      baseline = await testbed.gateway.exec(programs.save, []);
      const configFile = join(scratchDir, 'upnpd.config.mjs');
      await writeFile(
        configFile,
        [
          `import { defineConfig, iptables } from ${JSON.stringify(PUBLIC_API)};`,
          `export default defineConfig({ plugins: [iptables({ flavour: ${JSON.stringify(flavour)} })] });`,
          '',
        ].join('\n'),
      );
      daemonArgs = ['--lan', testbed.lanInterface, '--wan', testbed.wanInterface, '--config', configFile, '--state-dir', join(scratchDir, 'state')];
      daemon = await startDaemonInGateway(testbed, daemonArgs);
    });
    afterAll(async () => {
      try {
        if (daemon) process.kill(daemon.pid, 'SIGCONT');
        await daemon?.kill();
      } finally {
        await testbed?.destroy();
        if (scratchDir) await rm(scratchDir, { recursive: true, force: true });
      }
    });
    beforeEach(({ onTestFailed }) => {
      onTestFailed(() => console.error(`upnpd output, last part:\n${daemon?.output().slice(-6000)}`));
    });

    it('maps, survives kill -9 and a restart, a whole iptables-restore, and SIGTERM leaves the admin rules exactly', async () => {
      const add = await upnpc(testbed.lan, ['-u', daemon!.url, '-a', a.lanClient, '7600', '7600', 'TCP', '3600']);
      expect(add.exitCode, add.output).toBe(0);
      expect(await reaches(7600)).toBe(true);
      expect(await mappingRules(7600)).toHaveLength(2);

      await daemon!.kill();
      daemon = await startDaemonInGateway(testbed, daemonArgs);
      expect(await reaches(7600)).toBe(true);
      expect(await mappingRules(7600)).toHaveLength(2);
      const listed = parseUpnpcListing((await upnpc(testbed.lan, ['-u', daemon.url, '-l'])).output);
      expect(listed.map((m) => m.externalPort)).toEqual([7600]);
      const afterRestart = await upnpdRules();

      await testbed.gateway.exec(programs.restore, [], { input: baseline });
      expect(await eventuallyReaches(7600)).toBe(true);
      expect(await upnpdRules()).toEqual(afterRestart);

      const second = await upnpc(testbed.lan, ['-u', daemon.url, '-a', a.lanClient, '7601', '7601', 'TCP', '3600']);
      expect(second.exitCode, second.output).toBe(0);
      expect(await reaches(7601)).toBe(true);

      expect(await daemon.stop()).toBe(0);
      daemon = undefined;
      expect(await firewallSnapshot(testbed.gateway, flavour)).toEqual(adminRules);
    });

    it('a whole iptables-restore of a save taken while an old mapping was held: its rules do not come back to forward', async () => {
      daemon ??= await startDaemonInGateway(testbed, daemonArgs);
      for (const port of ['7610', '7611']) {
        const run = await upnpc(testbed.lan, ['-u', daemon.url, '-a', a.lanClient, port, port, 'TCP', '3600']);
        expect(run.exitCode, run.output).toBe(0);
      }
      // `netfilter-persistent save` while upnpd runs, then the mapping is deleted, then `netfilter-persistent reload`.
      const saved = await testbed.gateway.exec(programs.save, []);
      const del = await upnpc(testbed.lan, ['-u', daemon.url, '-d', '7611', 'TCP']);
      expect(del.exitCode, del.output).toBe(0);
      expect(await reaches(7611, 1_500)).toBe(false);
      await testbed.gateway.exec(programs.restore, [], { input: saved });
      await new Promise((resolve) => setTimeout(resolve, RESTORED_WITHIN_MS));
      expect(await mappingRules(7611)).toEqual([]);
      expect(await reaches(7611, 1_500)).toBe(false);
      expect(await reaches(7610)).toBe(true);
    });
  });
}

describeNetns('a daemon on nftables (forwardJump) and a reload of a ruleset saved while an old mapping was held', ['ip', 'upnpc', 'nft'], () => {
  const a = TESTBED_ADDRESSES;
  let scratchDir: string | undefined;
  const gateway = useTestbedDaemon({ forwardPolicy: 'ACCEPT' }, async (testbed) => {
    await installNftAdminFirewall(testbed);
    scratchDir = await mkdtemp(join(tmpdir(), 'upnpd-trust-'));
    const configFile = join(scratchDir, 'upnpd.config.mjs');
    await writeFile(
      configFile,
      [
        `import { defineConfig, nftables } from ${JSON.stringify(PUBLIC_API)};`,
        `export default defineConfig({ plugins: [${NFT_FORWARD_JUMP_PLUGIN}] });`,
        '',
      ].join('\n'),
    );
    return ['--lan', testbed.lanInterface, '--wan', testbed.wanInterface, '--config', configFile];
  });
  afterAll(async () => {
    if (scratchDir) await rm(scratchDir, { recursive: true, force: true });
  });
  const reaches = (port: number, timeoutMs = PASSES_MS) => tcpReachable(gateway.testbed.wan, a.gatewayWan, port, gateway.testbed.lan, timeoutMs);

  it('`flush ruleset` and the saved tables: the deleted mapping does not forward again, the held one does', async () => {
    for (const port of ['7610', '7611']) {
      const run = await upnpc(gateway.testbed.lan, ['-u', gateway.daemon.url, '-a', a.lanClient, port, port, 'TCP', '3600']);
      expect(run.exitCode, run.output).toBe(0);
    }
    const { family, table } = NFT_ADMIN_FORWARD_CHAIN;
    const own = (await gateway.testbed.gateway.exec('nft', ['list', 'tables'])).split('\n').find((line) => line.includes('upnpd'))!;
    const saved = [
      await gateway.testbed.gateway.exec('nft', ['list', ...own.trim().split(' ')]),
      await gateway.testbed.gateway.exec('nft', ['list', 'table', family, table]),
    ].join('\n');
    const del = await upnpc(gateway.testbed.lan, ['-u', gateway.daemon.url, '-d', '7611', 'TCP']);
    expect(del.exitCode, del.output).toBe(0);
    expect(await reaches(7611, 1_500)).toBe(false);
    await gateway.testbed.gateway.exec('nft', ['-f', '-'], { input: `flush ruleset\n${saved}` });
    await new Promise((resolve) => setTimeout(resolve, RESTORED_WITHIN_MS));
    expect(await reaches(7611, 1_500)).toBe(false);
    expect(await gateway.testbed.gateway.exec('nft', ['list', 'ruleset'])).not.toMatch(/\b7611\b/);
    expect(await reaches(7610)).toBe(true);
  });
  it("a reload of only the admin's table from a save with another mapping in the accept set: the mapping held now forwards again", async () => {
    const { family, table } = NFT_ADMIN_FORWARD_CHAIN;
    const exec = (args: string[], input?: string) => gateway.testbed.gateway.exec('nft', args, input === undefined ? {} : { input });
    const map = async (...args: string[]) => {
      const run = await upnpc(gateway.testbed.lan, ['-u', gateway.daemon.url, ...args]);
      expect(run.exitCode, run.output).toBe(0);
    };
    await map('-a', a.lanClient, '7620', '7620', 'TCP', '3600');
    // fw4 saved the admin's table (with upnpd's accept set in it) while 7620 was held.
    const saved = await exec(['list', 'table', family, table]);
    await map('-d', '7620', 'TCP');
    await map('-a', a.lanClient, '7621', '7621', 'TCP', '3600');
    expect(await reaches(7621)).toBe(true);
    await exec(['-f', '-'], `table ${family} ${table}\ndelete table ${family} ${table}\n${saved}\n`);
    await new Promise((resolve) => setTimeout(resolve, RESTORED_WITHIN_MS));
    expect(await reaches(7621)).toBe(true);
    expect(await exec(['list', 'table', family, table])).not.toMatch(/\b7620\b/);
  });
});
