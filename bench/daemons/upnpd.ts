import { execa } from 'execa';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { NamespaceProcess } from '../../test/netns/namespace-process.js';
import { ADMIN_FORWARD, adminFirewallScript, removeTableIfPresent } from './gateway-firewall.js';
import { resetLegacyTables } from './miniupnpd.js';
import { legacyFirewallScript } from './miniupnpd-config.js';
import { silentLogger } from '../../core/logger.js';
import { MappingStateFile } from '../../core/mapping/state-file.js';
import type { PortMapping } from '../../core/mapping/types.js';
import { BENCH_DESCRIPTION, BENCH_LEASE_SECONDS } from '../load/protocol.js';
import type { DaemonUnderTest, GatewaySetup, PersistedMappings } from './types.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** This tree's upnpd command. */
export const DAEMON_ENTRY = fileURLToPath(new URL('../../bin/upnpd.js', import.meta.url));

/**
 * What a daemon runs: `build`'s bin/upnpd.js, else BENCH_UPNPD_ENTRY's (another build's
 * bin/upnpd.js), else this tree's; and the public API its config file imports the plugins from,
 * that of the same build. Read when the daemon starts, not when this module loads:
 * bench/rss-probe.ts sets BENCH_UPNPD_ENTRY for each variant after importing it.
 */
export function buildToRun(build?: { readonly root: string }): { entry: string; packageEntry: string } {
  const fromEnv = process.env.BENCH_UPNPD_ENTRY;
  const root = build?.root ?? (fromEnv ? join(dirname(fromEnv), '..') : REPO_ROOT);
  const entry = build ? join(build.root, 'bin/upnpd.js') : (fromEnv ?? DAEMON_ENTRY);
  return { entry, packageEntry: pathToFileURL(join(root, 'dist/core/index.js')).href };
}

/** Where upnpd's nftables backend keeps its rules by default. */
const UPNPD_TABLE = { family: 'inet', table: 'upnpd' } as const;
/** upnpd removes every mapping at shutdown (one nft transaction); give it time with 5000. */
const STOP_GRACE_MS = 30_000;

/**
 * upnpd from this working tree (bin/upnpd.js over dist/), secure mode and the other default
 * policies on. With nftables (`upnpd`): its forward accept jumped to from the admin's nftables
 * forward chain (as its README recommends). With iptables (`upnpdIptables`): the x_tables build
 * (`flavour: 'iptables-legacy'`, what miniupnpd-iptables' libiptc edits), its chains jumped to from
 * the admin's FORWARD and PREROUTING.
 */
export const upnpd: DaemonUnderTest = upnpdWith('nftables');
export const upnpdIptables: DaemonUnderTest = upnpdWith('iptables');
/**
 * The iptables backend with its default flavour (iptables-nft, nf_tables underneath): the admin's
 * forward filter is the same, made with iptables-nft (FORWARD policy DROP over the testbed's own
 * accepts); shown beside the x_tables pair, where a change costs a rewrite of the whole table.
 */
export const upnpdIptablesNft: DaemonUnderTest = upnpdWith('iptables', 'iptables');

/**
 * Another build of upnpd (nftables), named `upnpd (baseline)`: `root` holds its `bin/upnpd.js`
 * and `dist/` (e.g. a copy of both made before a change), for A/B runs interleaved with this
 * tree's build (`bench/request-cost.ts` with BENCH_UPNPD_BASELINE=root).
 */
export function upnpdBaseline(root: string): DaemonUnderTest {
  return upnpdWith('nftables', 'iptables-legacy', { name: 'upnpd (baseline)', root });
}

/** The admin's FORWARD policy in the testbed's iptables-nft filter table (its accepts stay). */
const nftForwardPolicy = (policy: 'DROP' | 'ACCEPT') => `*filter\n:FORWARD ${policy} [0:0]\nCOMMIT\n`;

function upnpdWith(
  backend: 'nftables' | 'iptables',
  flavour: 'iptables' | 'iptables-legacy' = 'iptables-legacy',
  build?: { readonly name: string; readonly root: string },
): DaemonUnderTest {
  return {
    name: build?.name ?? (backend === 'nftables' ? 'upnpd' : flavour === 'iptables' ? 'upnpd (iptables-nft)' : 'upnpd (iptables)'),
    persistence: { supported: true },

    async version() {
      const { version } = JSON.parse(readFileSync(new URL('package.json', `file://${REPO_ROOT}`), 'utf8')) as { version: string };
      const head = await execa('git', ['-C', REPO_ROOT, 'rev-parse', '--short', 'HEAD'], { reject: false });
      const status = await execa('git', ['-C', REPO_ROOT, 'status', '--porcelain', '--untracked-files=no'], { reject: false });
      const commit = head.exitCode === 0 ? ` (commit ${head.stdout.trim()}${status.stdout.trim() ? ' + uncommitted changes' : ''})` : '';
      return `upnpd ${version}${commit}`;
    },

    async start(gateway: GatewaySetup, persisted) {
      const { testbed, httpPort } = gateway;
      const { entry, packageEntry } = buildToRun(build);
      const dir = join(gateway.workDir, 'upnpd');
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir, { recursive: true });
      const configFile = join(dir, 'upnpd.config.mjs');
      writeFileSync(configFile, upnpdConfig(backend, flavour, gateway.raiseClientRateLimits ?? false, packageEntry));
      const stateDir = join(dir, 'state');
      if (persisted) await writeStateFile(stateDir, persisted);
      const interfaces = { lanInterface: testbed.lanInterface, wanInterface: testbed.wanInterface };
      await removeTableIfPresent(testbed.gateway, ADMIN_FORWARD.family, ADMIN_FORWARD.table);
      await resetLegacyTables(testbed.gateway);
      if (backend === 'nftables') await testbed.gateway.exec('nft', ['-f', '-'], { input: adminFirewallScript(interfaces) });
      else if (flavour === 'iptables') await testbed.gateway.exec('iptables-nft-restore', ['--noflush'], { input: nftForwardPolicy('DROP') });
      else await testbed.gateway.exec('iptables-legacy-restore', [], { input: legacyFirewallScript(interfaces, false) });

      const daemon = NamespaceProcess.start(
        testbed.gateway,
        [
          ...daemonCommand(entry),
          '--config',
          configFile,
          '--lan',
          testbed.lanInterface,
          '--wan',
          testbed.wanInterface,
          '--backend',
          backend,
          '--http-port',
          String(httpPort),
          '--log-level',
          'warn',
          '--state-dir',
          stateDir,
        ],
        { cwd: dir },
      );
      return {
        pid: daemon.pid,
        descriptionUrl: `http://${testbed.addresses.gatewayLan}:${httpPort}/rootDesc.xml`,
        diagnostics: () => `upnpd output:\n${daemon.output()}`,
        async stop() {
          const code = await daemon.stop('SIGTERM', STOP_GRACE_MS);
          const leftovers =
            backend === 'nftables'
              ? [
                  (await removeTableIfPresent(testbed.gateway, UPNPD_TABLE.family, UPNPD_TABLE.table)) && `table ${UPNPD_TABLE.family} ${UPNPD_TABLE.table}`,
                  (await testbed.gateway.exec('nft', ['list', 'table', ADMIN_FORWARD.family, ADMIN_FORWARD.table])).includes(UPNPD_TABLE.table) &&
                    `its chain or set in the admin's table ${ADMIN_FORWARD.family} ${ADMIN_FORWARD.table}`,
                ].filter(Boolean)
              : /upnpd/i.test(await testbed.gateway.exec(`${flavour}-save`, []))
                ? [`its rules or chains in ${flavour}'s tables`]
                : [];
          if (flavour === 'iptables') await testbed.gateway.exec('iptables-nft-restore', ['--noflush'], { input: nftForwardPolicy('ACCEPT') });
          await removeTableIfPresent(testbed.gateway, ADMIN_FORWARD.family, ADMIN_FORWARD.table);
          await resetLegacyTables(testbed.gateway);
          rmSync(dir, { recursive: true, force: true });
          if (code !== 0 || leftovers.length > 0) {
            throw new Error(
              `upnpd did not stop cleanly (exit ${code}${leftovers.length > 0 ? `; left behind: ${leftovers.join(', ')}` : ''}):\n${daemon.output()}`,
            );
          }
          return undefined;
        },
      };
    },
  };
}

/**
 * Executed as the installed `upnpd` command is, so its shebang's settings apply. With
 * BENCH_UPNPD_NODE_FLAGS (e.g. `--cpu-prof --cpu-prof-dir=/tmp/profiles`) it runs as the shebang
 * says plus those flags, for profiling the daemon under the benchmark's load.
 */
function daemonCommand(entry: string): string[] {
  // BENCH_UPNPD_COMMAND (e.g. `env MALLOC_ARENA_MAX=1 node --max-semi-space-size=1`) replaces the
  // shebang, for A/B runs of launcher settings (bench/rss-probe.ts).
  const command = process.env.BENCH_UPNPD_COMMAND?.split(/\s+/).filter(Boolean);
  if (command?.length) return [...command, entry];
  const extraFlags = process.env.BENCH_UPNPD_NODE_FLAGS?.split(/\s+/).filter(Boolean) ?? [];
  if (extraFlags.length === 0) return [entry];
  const { variables, nodeFlags } = shebangOf(entry);
  return ['env', ...variables, 'node', ...nodeFlags, ...extraFlags, entry];
}

/** The environment variables and node flags of a bin/upnpd.js's `#!/usr/bin/env -S VAR=value … node --flag …` line. */
export function shebangOf(entry: string): { variables: string[]; nodeFlags: string[] } {
  const shebang = /^#!\/usr\/bin\/env -S (.*)$/m.exec(readFileSync(entry, 'utf8').split('\n')[0] ?? '');
  const words = shebang?.[1]?.split(/\s+/) ?? [];
  const node = words.indexOf('node');
  if (node < 0) throw new Error(`${entry}: expected a "#!/usr/bin/env -S [VAR=value ...] node [flags]" line`);
  return { variables: words.slice(0, node), nodeFlags: words.slice(node + 1) };
}

/** `mappings.json` as upnpd saves it (written by upnpd's own MappingStateFile), holding the persisted mappings. */
async function writeStateFile(stateDir: string, persisted: PersistedMappings): Promise<void> {
  const file = new MappingStateFile(stateDir, silentLogger);
  await file.prepare();
  const mappings: PortMapping[] = Array.from({ length: persisted.count }, (_, i) => ({
    remoteHost: '',
    externalPort: persisted.firstPort + i,
    protocol: 'TCP',
    internalClient: persisted.clients[i % persisted.clients.length]!,
    internalPort: persisted.firstPort + i,
    enabled: true,
    description: BENCH_DESCRIPTION,
    leaseSeconds: BENCH_LEASE_SECONDS,
    expiresAt: 0,
    createdBy: { address: persisted.clients[i % persisted.clients.length]!, via: 'upnp-igd:2' },
  }));
  await file.save(mappings, () => BENCH_LEASE_SECONDS * 1000);
}

/**
 * The load comes from 100 LAN hosts, 50 mappings each at most: under the default quota per client
 * (128). The table of 5000 is above the default total (4096), the one quota raised here (the
 * NAT-PMP request rows raise `limits.stateChanges` too, through `GatewaySetup.raiseClientRateLimits`).
 */
const BENCH_QUOTA = { total: 20_000 } as const;

/**
 * The per-client limits of the rows that raise them (one LAN address sending far more than a real
 * client): `limits.stateChanges` and the NAT-PMP front-end's `requestsPerClient`, at the schemas'
 * ceilings, far above any rate measured here.
 */
const RAISED_STATE_CHANGES = { perSecond: 100_000, burst: 100_000 } as const;
const RAISED_NAT_PMP_REQUESTS = { perSecond: 100_000, burst: 100_000 } as const;

/** The config file: only what the command line cannot say. */
function upnpdConfig(backend: 'nftables' | 'iptables', flavour: 'iptables' | 'iptables-legacy', raiseClientRateLimits: boolean, packageEntry: string): string {
  const { family, table, chain } = ADMIN_FORWARD;
  const firewall =
    backend === 'nftables' ? `nftables({ forwardJump: { family: '${family}', table: '${table}', chain: '${chain}' } })` : `iptables({ flavour: '${flavour}' })`;
  return [
    `import { ${backend}, natPmp, quota } from '${packageEntry}';`,
    '',
    'export default {',
    `  plugins: [${firewall}, quota(${JSON.stringify(BENCH_QUOTA)})${raiseClientRateLimits ? `, natPmp({ requestsPerClient: ${JSON.stringify(RAISED_NAT_PMP_REQUESTS)} })` : ''}],`,
    ...(raiseClientRateLimits ? [`  limits: { stateChanges: ${JSON.stringify(RAISED_STATE_CHANGES)} },`] : []),
    '};',
    '',
  ].join('\n');
}
