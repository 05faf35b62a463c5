// `npm run bench [-- --quick]`: upnpd against miniupnpd on a namespace testbed. See bench/README.md.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, release } from 'node:os';
import { performance } from 'node:perf_hooks';
import { namespaceSupport } from '../test/netns/netns.js';
import { haveProgram } from '../test/support/requirements.js';
import { build, buildNeeded } from './build.js';
import { MINIUPNPD_PATH, miniupnpd, probeMiniupnpd, unpackedMiniupnpdIptables } from './daemons/miniupnpd.js';
import type { DaemonUnderTest } from './daemons/types.js';
import { upnpd, upnpdIptables, upnpdIptablesNft } from './daemons/upnpd.js';
import { nodeFloor } from './daemons/node-floor.js';
import { xtablesFloor } from './daemons/xtables-floor.js';
import { TESTBED_ADDRESSES } from '../test/netns/topology.js';
import { FIGURE_KEYS, type Notes, type Sample } from './figures.js';
import { NAT_PMP_FIGURE_KEYS } from './natpmp-figures.js';
import { Schedule } from './schedule.js';
import { LoadGenerator } from './load/remote.js';
import { GROUPS as UPNP_GROUPS, type GroupName as UpnpGroupName } from './measure.js';
import { NAT_PMP_GROUPS, type NatPmpGroupName } from './natpmp-rows.js';
import { PINHOLE_FIGURE_KEYS } from './pinhole-figures.js';
import { PINHOLE_GROUPS, type PinholeGroupName } from './pinhole-rows.js';
import { USAGE, parseCommandLine, type BenchProfile } from './profile.js';
import { notesList, resultsMarkdown, resultsTable, type DaemonResults, type Machine, type Section } from './report.js';
import { createBenchTestbed, gatewaySetup, removeOnSignal } from './testbed.js';

/** Both daemons listen here in turn. */
const HTTP_PORT = 49152;
/** Kept free at the end of the budget for removing the testbed and writing the report. */
const FINISH_RESERVE_MS = 15_000;
/** After the budget, this long for cleanup before the run is cut short. */
const CLEANUP_GRACE_MS = 30_000;
const EXIT_USAGE = 2;
const GROUPS = { ...UPNP_GROUPS, ...NAT_PMP_GROUPS, ...PINHOLE_GROUPS };
type GroupName = UpnpGroupName | NatPmpGroupName | PinholeGroupName;
/** The rows of a comparison without the NAT-PMP and pinhole groups (those run with the nftables backends only). */
const NFTABLES_ONLY_KEYS: readonly string[] = [...NAT_PMP_FIGURE_KEYS, ...PINHOLE_FIGURE_KEYS];
const UPNP_FIGURE_KEYS = FIGURE_KEYS.filter((key) => !NFTABLES_ONLY_KEYS.includes(key));

async function main(argv: readonly string[]): Promise<number> {
  let profile: BenchProfile;
  try {
    const commandLine = parseCommandLine(argv);
    if (commandLine.help) {
      process.stdout.write(USAGE);
      return 0;
    }
    profile = commandLine.profile;
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error).message}\n${USAGE}`);
    return EXIT_USAGE;
  }
  const started = performance.now();
  const deadline = started + profile.budgetMs;

  const cannotRun = await preflight();
  if (cannotRun) {
    process.stderr.write(`bench: cannot run: ${cannotRun}\n`);
    return EXIT_USAGE;
  }
  const probe = await probeMiniupnpd();
  if (!probe.available) {
    process.stderr.write(`bench: cannot compare: ${probe.reason}\n`);
    return EXIT_USAGE;
  }
  const stale = buildNeeded();
  if (stale) {
    log(`building upnpd: ${stale}`);
    await build();
  }

  const comparisons = await comparisonsToRun(probe.version, profile);
  const daemons = comparisons.flatMap((c) => [c.upnpd, c.miniupnpd, ...c.others.map((o) => o.daemon)]);
  const results = new Map<DaemonUnderTest, { samples: Sample[]; notes: Notes }>(daemons.map((d) => [d, { samples: [], notes: {} }]));
  const errors: string[] = [];
  // Read before the run: a commit made while it runs did not build what ran.
  const versions = new Map(await Promise.all(daemons.map(async (d) => [d, await d.version()] as const)));

  log(`${profile.name} run: ${profile.repeats} repeat(s), ${profile.mappings} mappings, budget ${profile.budgetMs / 60_000} min`);
  const bench = await createBenchTestbed(profile.budgetMs + CLEANUP_GRACE_MS);
  const { lan, lan2, gateway: gw, wan } = bench.testbed;
  log(`testbed: namespaces ${[lan, lan2, gw, wan].map((ns) => ns.name).join(', ')}`);
  const stopOnSignal = removeOnSignal(bench);
  // Set before the first group runs, so that a run cut short writes what it measured.
  const schedule = new Schedule<DaemonUnderTest, GroupName>(profile.repeats, deadline - FINISH_RESERVE_MS);
  let current = 'before the first group';
  const watchdog = setTimeout(() => {
    const cut = `cut short ${CLEANUP_GRACE_MS / 1000} s after the ${profile.budgetMs / 60_000}-minute budget, in ${current} (it and what was to follow are not measured)`;
    process.stderr.write(`bench: ${cut}: stopping\n`);
    errors.push(cut);
    void bench
      .destroy()
      .finally(() => writeReport())
      .finally(() => process.exit(1));
  }, profile.budgetMs + CLEANUP_GRACE_MS);
  try {
    const generator = await LoadGenerator.start(bench.testbed.lan, bench.testbed.addresses.lanClient, bench.lanHosts, profile.budgetMs + CLEANUP_GRACE_MS);
    const gateway = gatewaySetup(bench, HTTP_PORT);
    for (let repeat = 1; repeat <= profile.repeats; repeat += 1) {
      // Alternate the order so that drift (a warming machine, other load) hits both alike.
      const tasks = comparisons.flatMap((c) => tasksOf(c, repeat));
      for (const { daemon, group } of schedule.tasks(repeat, tasks)) {
        log(`${daemon.name}, ${group}, repeat ${repeat}`);
        current = `${daemon.name}'s ${group} group, repeat ${repeat}`;
        const measurement = await schedule.timed(daemon, group, () =>
          GROUPS[group](daemon, { gateway, profile, generator, log: (line) => log(`  ${daemon.name} #${repeat}: ${line}`) }),
        );
        const result = results.get(daemon)!;
        result.samples[repeat - 1] = { ...result.samples[repeat - 1], ...measurement.sample };
        Object.assign(result.notes, measurement.notes);
        for (const error of measurement.errors) log(`  ERROR ${error}`);
        errors.push(...measurement.errors.map((e) => `repeat ${repeat}: ${e}`));
      }
    }
    await generator.stop();
  } finally {
    clearTimeout(watchdog);
    stopOnSignal();
    await bench.destroy();
  }

  writeReport();
  return errors.length === 0 ? 0 : 1;

  /** Prints the tables and writes bench/results/<date>-<mode>.md with what was measured. */
  function writeReport(): void {
    const daemonResults = (daemon: DaemonUnderTest, compared: readonly DaemonUnderTest[]): DaemonResults => {
      const { samples, notes } = results.get(daemon)!;
      return { name: daemon.name, version: versions.get(daemon)!, samples: samples.filter(Boolean), notes: { ...persistenceNote(daemon, compared), ...notes } };
    };
    const sections: Section[] = [];
    for (const c of comparisons) {
      const pair = [c.upnpd, c.miniupnpd];
      sections.push({
        title: c.title,
        ...(c.natPmp ? {} : { figures: UPNP_FIGURE_KEYS }),
        upnpd: daemonResults(c.upnpd, pair),
        miniupnpd: daemonResults(c.miniupnpd, pair),
        others: c.others.map((o) => daemonResults(o.daemon, [])),
      });
    }
    const report = { profile, date: new Date(), machine: machine(), sections, errors, shortfall: schedule.shortfall() };
    for (const section of sections) {
      process.stdout.write(`\n${section.title}\n\n${resultsTable({ profile, ...section })}\n`);
      for (const note of notesList({ profile, ...section })) process.stdout.write(`- ${note}\n`);
    }
    for (const error of errors) process.stdout.write(`ERROR ${error}\n`);
    const file = resultsFile(profile, report.date);
    mkdirSync(new URL('./', file), { recursive: true });
    writeFileSync(file, resultsMarkdown(report));
    log(`results written to ${file.pathname} (${((performance.now() - started) / 1000).toFixed(0)} s in all)`);
  }
}

/** upnpd against miniupnpd with one firewall backend, and what is shown beside them. */
interface Comparison {
  readonly title: string;
  readonly upnpd: DaemonUnderTest;
  readonly miniupnpd: DaemonUnderTest;
  /** Shown beside them, without a ratio (the floors, upnpd with iptables-nft), each with the groups it runs. */
  readonly others: readonly { readonly daemon: DaemonUnderTest; readonly groups: readonly GroupName[] }[];
  /** Whether the pair runs the NAT-PMP and pinhole groups too (the nftables pair only). */
  readonly natPmp: boolean;
}

/**
 * nftables backends (miniupnpd-nftables as installed) with Node's floor beside them and the
 * NAT-PMP rows, then the iptables backends (miniupnpd-iptables unpacked into the harness's cache;
 * UPnP rows only), unless `--no-iptables` or that build cannot be had (said in the log; the
 * nftables comparison runs all the same).
 */
async function comparisonsToRun(installedVersion: string, { comparisons: which, mappings }: BenchProfile): Promise<Comparison[]> {
  const comparisons: Comparison[] = [];
  if (which !== 'iptables') {
    comparisons.push({
      title: "nftables backends (miniupnpd-nftables as installed), with Node's floor; the NAT-PMP and IPv6 pinhole rows run with these backends only",
      upnpd,
      miniupnpd: miniupnpd({ name: 'miniupnpd', version: installedVersion, path: MINIUPNPD_PATH, backend: 'nftables' }),
      others: [{ daemon: nodeFloor(TESTBED_ADDRESSES.gatewayWan, mappings), groups: ['requests', 'table'] }],
      natPmp: true,
    });
  }
  if (which === 'nftables') return comparisons;
  const iptablesBuild = await unpackedMiniupnpdIptables();
  if (!iptablesBuild.available) {
    log(`no iptables comparison: ${iptablesBuild.reason}`);
    return comparisons;
  }
  comparisons.push({
    title:
      'iptables backends (x_tables: upnpd with iptables-legacy, miniupnpd-iptables unpacked from its Debian package); UPnP rows only, the NAT-PMP and IPv6 pinhole rows run with the nftables backends. Beside them, upnpd with the default flavour iptables-nft (nf_tables underneath; the table rows only) and the x_tables floor (one iptables-legacy-restore per AddPortMapping, nothing else: the add and connect rows only)',
    upnpd: upnpdIptables,
    miniupnpd: miniupnpd({ name: 'miniupnpd (iptables)', version: iptablesBuild.version, path: iptablesBuild.path!, backend: 'iptables' }),
    others: [
      { daemon: upnpdIptablesNft, groups: ['table'] },
      { daemon: xtablesFloor, groups: ['table'] },
    ],
    natPmp: false,
  });
  return comparisons;
}

/**
 * The groups each daemon of a comparison runs in one repeat, the daemons' order alternating
 * between repeats. The persisted start-up is measured once both daemons can persist, the NAT-PMP
 * groups where the comparison says; the floors run the phases they serve (DaemonUnderTest.floor).
 */
function tasksOf(comparison: Comparison, repeat: number): Array<{ daemon: DaemonUnderTest; group: GroupName }> {
  const pair = repeat % 2 === 1 ? [comparison.upnpd, comparison.miniupnpd] : [comparison.miniupnpd, comparison.upnpd];
  const upnpGroups: GroupName[] = pair.every((d) => d.persistence.supported) ? ['requests', 'table', 'persistedStart'] : ['requests', 'table'];
  const groups: GroupName[] = comparison.natPmp ? [...upnpGroups, 'natPmpRequests', 'natPmpTable', 'pinholes'] : upnpGroups;
  return [
    ...groups.flatMap((group) => pair.map((daemon) => ({ daemon, group }))),
    ...comparison.others.flatMap(({ daemon, groups }) => groups.map((group) => ({ daemon, group }))),
  ];
}

/** Why the benchmark cannot run here (not root, no `ip netns`, no nft, no upnpc, no ab), or undefined. */
async function preflight(): Promise<string | undefined> {
  const packages = { ip: 'iproute2', nft: 'nftables', upnpc: 'miniupnpc', ab: 'apache2-utils' } as const;
  for (const [program, debianPackage] of Object.entries(packages)) {
    if (!(await haveProgram(program))) return `${program} is not installed (Debian package ${debianPackage})`;
  }
  return namespaceSupport();
}

/** Why the persisted start-up figure is missing: a daemon cannot persist, so neither is measured. */
function persistenceNote(daemon: DaemonUnderTest, daemons: readonly DaemonUnderTest[]): Notes {
  if (!daemon.persistence.supported) return { startPersisted: daemon.persistence.reason };
  const cannot = daemons.filter((d) => !d.persistence.supported).map((d) => d.name);
  return cannot.length > 0 ? { startPersisted: `not measured until ${cannot.join(', ')} can persist mappings too` } : {};
}

function machine(): Machine {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  return {
    cpus: availableParallelism(),
    cpuModel: /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? 'unknown',
    kernel: release(),
    node: process.version,
  };
}

function resultsFile(profile: BenchProfile, date: Date): URL {
  const day = [date.getFullYear(), date.getMonth() + 1, date.getDate()].map((n) => String(n).padStart(2, '0')).join('-');
  return new URL(`./results/${day}-${profile.name}.md`, import.meta.url);
}

function log(line: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
}

process.exitCode = await main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  return 1;
});
