import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { BENCH_DESCRIPTION, BENCH_LEASE_SECONDS } from '../load/protocol.js';
import { processGone } from '../process-stats.js';
import { removeTableIfPresent } from './gateway-firewall.js';
import { MINIUPNPD_NFT, legacyFirewallScript, miniupnpdConfig, miniupnpdLeaseFile, miniupnpdNftSkeleton } from './miniupnpd-config.js';
import type { DaemonUnderTest, GatewaySetup, PersistedMappings, RunningDaemon } from './types.js';

export const MINIUPNPD_PATH = '/usr/sbin/miniupnpd';
/** Debian's packages; they conflict with each other, so only one backend can be compared per machine. */
const PACKAGES = { nftables: 'miniupnpd-nftables', iptables: 'miniupnpd-iptables' } as const;
const PIDFILE_TIMEOUT_MS = 15_000;
/** With hundreds of mappings miniupnpd takes from seconds to minutes to exit after SIGTERM, asleep in select(). */
const STOP_GRACE_MS = 5_000;
const POLL_MS = 20;

export type MiniupnpdProbe = { readonly available: true; readonly version: string } | { readonly available: false; readonly reason: string };

/**
 * Whether the installed miniupnpd can be compared: present, and built for nftables (the backend
 * the harness sets up for both daemons). The harness never installs packages itself.
 */
export async function probeMiniupnpd(): Promise<MiniupnpdProbe> {
  const r = await execa(MINIUPNPD_PATH, ['--version'], { reject: false });
  if (r.exitCode !== 0) {
    return {
      available: false,
      reason:
        `${MINIUPNPD_PATH} is not installed (or does not run). Install Debian's ${PACKAGES.nftables} ` +
        `without letting it start the service, e.g. with /usr/sbin/policy-rc.d exiting 101 during the install.`,
    };
  }
  const version = r.stdout.trim();
  if (!/nftables/.test(version)) {
    return {
      available: false,
      reason:
        `the installed miniupnpd is not the nftables build (${version.replace(/\n/g, '; ')}); this harness compares nftables ` +
        `backends. ${PACKAGES.iptables} and ${PACKAGES.nftables} conflict, so install ${PACKAGES.nftables} instead.`,
    };
  }
  return { available: true, version: version.replace(/\n/g, ', ') };
}

/**
 * Debian's miniupnpd-iptables, unpacked into a cache folder of the harness's own (it conflicts with
 * the installed miniupnpd-nftables as a package, so it is never installed): `apt-get download`
 * and `dpkg -x` the first time. Its version line, or why it is not available.
 */
export async function unpackedMiniupnpdIptables(): Promise<MiniupnpdProbe & { readonly path?: string }> {
  const cache = join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'upnpd-bench', PACKAGES.iptables);
  const path = join(cache, 'usr/sbin/miniupnpd');
  if (!existsSync(path)) {
    const download = mkdtempSync(join(tmpdir(), 'upnpd-bench-deb-'));
    try {
      const fetched = await execa('apt-get', ['download', PACKAGES.iptables], { cwd: download, reject: false, timeout: 120_000 });
      const deb = readdirSync(download).find((f) => f.endsWith('.deb'));
      if (!deb)
        return { available: false, reason: `apt-get download ${PACKAGES.iptables} failed: ${(fetched.stderr || fetched.stdout).trim().split('\n').pop()}` };
      mkdirSync(cache, { recursive: true });
      const unpacked = await execa('dpkg', ['-x', join(download, deb), cache], { reject: false });
      if (unpacked.exitCode !== 0) return { available: false, reason: `dpkg -x ${deb} failed: ${unpacked.stderr.trim()}` };
    } finally {
      rmSync(download, { recursive: true, force: true });
    }
  }
  const r = await execa(path, ['--version'], { reject: false });
  if (r.exitCode !== 0 || !/iptables/.test(r.stdout))
    return { available: false, reason: `${path} does not run as the iptables build: ${r.stdout || r.stderr}` };
  return { available: true, version: r.stdout.trim().replace(/\n/g, ', '), path };
}

export interface MiniupnpdBuild {
  /** Its name in the tables. */
  readonly name: string;
  readonly version: string;
  readonly path: string;
  readonly backend: 'nftables' | 'iptables';
}

/**
 * Debian's miniupnpd with a generated config, its firewall skeleton installed by the harness (the
 * nftables build: its chains in the admin's nftables table, as nft_init.sh would lay them out; the
 * iptables build: the admin's x_tables filter and its chains, as iptables_init.sh adds them), and
 * its external address learnt from the WAN host's STUN server.
 *
 * It runs as a daemon, not in the foreground: with `-d` miniupnpd logs every LOG_DEBUG line to
 * stderr (a few per request, and with thousands of mappings thousands per main-loop pass),
 * which would measure its logging instead of its work. As a daemon it masks everything below
 * LOG_NOTICE, the counterpart of upnpd's `--log-level warn`. Its pid comes from its pid file.
 */
export function miniupnpd(build: MiniupnpdBuild): DaemonUnderTest {
  return {
    name: build.name,
    persistence: { supported: true },
    version: () => Promise.resolve(build.version),
    start: (gateway, persisted) => startMiniupnpd(build, gateway, persisted),
  };
}

/** The x_tables of the gateway as a fresh namespace has them: empty, every policy ACCEPT. */
export async function resetLegacyTables(gateway: GatewaySetup['testbed']['gateway']): Promise<void> {
  const tables = {
    filter: ['INPUT', 'FORWARD', 'OUTPUT'],
    nat: ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'],
    mangle: ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'],
  };
  const script = Object.entries(tables).flatMap(([table, chains]) => [`*${table}`, ...chains.map((c) => `:${c} ACCEPT [0:0]`), 'COMMIT']);
  await gateway.exec('iptables-legacy-restore', [], { input: `${script.join('\n')}\n` });
}

async function startMiniupnpd(build: MiniupnpdBuild, gateway: GatewaySetup, persisted: PersistedMappings | undefined): Promise<RunningDaemon> {
  const { testbed } = gateway;
  const dir = join(gateway.workDir, 'miniupnpd');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const files = { config: join(dir, 'miniupnpd.conf'), pid: join(dir, 'miniupnpd.pid'), leases: join(dir, 'leases') };

  writeFileSync(
    files.config,
    miniupnpdConfig(
      {
        wanInterface: testbed.wanInterface,
        lanInterface: testbed.lanInterface,
        lanSubnet: testbed.addresses.lanSubnet,
        httpPort: gateway.httpPort,
        stunHost: gateway.stun.host,
        stunPort: gateway.stun.port,
        uuid: randomUUID(),
        leaseFile: files.leases,
      },
      build.backend,
    ),
  );
  if (persisted) {
    const expiresAtUnix = Math.floor(Date.now() / 1000) + BENCH_LEASE_SECONDS;
    const mappings = Array.from({ length: persisted.count }, (_, i) => ({
      port: persisted.firstPort + i,
      client: persisted.clients[i % persisted.clients.length]!,
      expiresAtUnix,
      description: BENCH_DESCRIPTION,
    }));
    writeFileSync(files.leases, miniupnpdLeaseFile(mappings));
  }
  const interfaces = { lanInterface: testbed.lanInterface, wanInterface: testbed.wanInterface };
  const removeFirewall = async () => {
    if (build.backend === 'nftables') await removeTableIfPresent(testbed.gateway, MINIUPNPD_NFT.family, MINIUPNPD_NFT.table);
    else await resetLegacyTables(testbed.gateway);
  };
  await removeFirewall();
  if (build.backend === 'nftables') await testbed.gateway.exec('nft', ['-f', '-'], { input: miniupnpdNftSkeleton(interfaces) });
  else await testbed.gateway.exec('iptables-legacy-restore', [], { input: legacyFirewallScript(interfaces, true) });

  const command = [build.path, '-f', files.config, '-P', files.pid];
  // The launcher returns once miniupnpd has forked into the background.
  await testbed.gateway.exec(command[0]!, command.slice(1), { timeoutMs: PIDFILE_TIMEOUT_MS });
  const pid = await readPidFile(files.pid);
  const reproduce = `miniupnpd runs as a daemon and logs to syslog only; to see its log, run it in the foreground: ip netns exec ${testbed.gateway.name} ${command.join(' ')} -d`;

  return {
    pid,
    descriptionUrl: `http://${testbed.addresses.gatewayLan}:${gateway.httpPort}/rootDesc.xml`,
    diagnostics: () => reproduce,
    async stop() {
      const killed = await terminate(pid);
      await removeFirewall();
      rmSync(dir, { recursive: true, force: true });
      return killed ? `miniupnpd did not exit within ${STOP_GRACE_MS / 1000} s of SIGTERM; killed` : undefined;
    },
  };
}

async function readPidFile(path: string): Promise<number> {
  const deadline = Date.now() + PIDFILE_TIMEOUT_MS;
  while (Date.now() < deadline) {
    try {
      const pid = Number(readFileSync(path, 'utf8').trim());
      if (Number.isInteger(pid) && pid > 0) return pid;
    } catch {
      // not written yet
    }
    await sleep(POLL_MS);
  }
  throw new Error(`miniupnpd wrote no pid file (${path}) within ${PIDFILE_TIMEOUT_MS} ms`);
}

/** SIGTERM, then SIGKILL after the grace time. Resolves with whether it had to be killed. */
async function terminate(pid: number): Promise<boolean> {
  if (processGone(pid)) return false;
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + STOP_GRACE_MS;
  while (Date.now() < deadline) {
    if (processGone(pid)) return false;
    await sleep(POLL_MS);
  }
  process.kill(pid, 'SIGKILL');
  return true;
}
