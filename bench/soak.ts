// `npx tsx bench/soak.ts [--minutes N] [--clients N]` (root): upnpd under expiry churn for N
// minutes (default 30) on the benchmark's namespace testbed; RSS, fds, child processes, table size
// and the kernel's nftables elements sampled every 30 s; at the end every lease must have run out
// with nothing left in the kernel, and a SIGTERM must remove upnpd's table. Not part of CI. See bench/README.md.
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, release } from 'node:os';
import { basename, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { request as controlRequest } from '../app/control/client.js';
import { SOCKET_NAME, type ListedMapping } from '../app/control/protocol.js';
import type { DaemonStatus } from '../core/daemon.js';
import { NamespaceProcess, tsEntryCommand } from '../test/netns/namespace-process.js';
import { namespaceSupport, type TestNamespace } from '../test/netns/netns.js';
import { oneClientLoadConfig } from '../test/support/load-limits.js';
import { haveProgram } from '../test/support/requirements.js';
import { build, buildNeeded } from './build.js';
import { ADMIN_FORWARD, adminFirewallScript } from './daemons/gateway-firewall.js';
import { upnpd } from './daemons/upnpd.js';
import { parseVmRss, processTree } from './process-stats.js';
import type { ChurnStats } from './soak-churn.js';
import { createBenchTestbed, type BenchTestbed } from './testbed.js';

const REPO_ROOT = fileURLToPath(new URL('../', import.meta.url));
const DAEMON_ENTRY = fileURLToPath(new URL('../bin/upnpd.js', import.meta.url));
const PACKAGE_ENTRY = pathToFileURL(join(REPO_ROOT, 'dist/core/index.js')).href;
const HTTP_PORT = 49152;
/** upnpd's own table (the nftables backend's default) and the chain and set it adds to the admin's with forwardJump. */
const UPNPD_TABLE = { family: 'inet', table: 'upnpd' } as const;
const UPNPD_PREFIX = 'upnpd';

const DEFAULT_MINUTES = 30;
const MAX_MINUTES = 240;
const DEFAULT_CLIENTS = 10;
/** Requests a second from all clients together, and the number of mappings the churn keeps. */
const RATE = 50;
const TARGET_MAPPINGS = 300;
/** Leases the churn asks for, in seconds, uniformly at random. */
const SOAK_MIN_LEASE_SECONDS = 5;
const SOAK_MAX_LEASE_SECONDS = 20;
const SAMPLE_INTERVAL_MS = 30_000;
/** Past the churn's time, everything is killed this long after it (set-up, drain, stop and report fit well inside). */
const DEADLINE_MARGIN_MS = 5 * 60_000;
const START_TIMEOUT_MS = 30_000;
const CHURN_ANSWER_MS = 20_000;
/** A mapping and its kernel elements must disagree this long (churn paused) to count as unmatched. */
const RECHECK_MS = 2_000;
/** After the last lease has run out, the daemon's expiry pass has this long to empty the table and the kernel. */
const EXPIRY_GRACE_MS = 5_000;
const DRAIN_POLL_MS = 1_000;
const STOP_GRACE_MS = 30_000;
const EXIT_USAGE = 2;

const USAGE = `Usage: npx tsx bench/soak.ts [--minutes N] [--clients N]   (as root)
  --minutes N   how long the churn runs (default ${DEFAULT_MINUTES}, at most ${MAX_MINUTES})
  --clients N   LAN addresses the load comes from (default ${DEFAULT_CLIENTS}, at most 100)
`;

interface Options {
  readonly minutes: number;
  readonly clients: number;
}

/** What the kernel holds of upnpd's: element counts by set or map, and the mappings they name (PROTOCOL/PORT). */
interface KernelState {
  readonly counts: Readonly<Record<string, number>>;
  readonly total: number;
  /** Keys of the DNAT maps' elements (external port). */
  readonly dnat: ReadonlySet<string>;
  /** Keys of the accept set's elements (internal port: the churn maps each port to the same one). */
  readonly accept: ReadonlySet<string>;
}

interface Sample {
  readonly label: string;
  readonly rssMb: number;
  readonly fds: number;
  readonly children: ReadonlyArray<{ readonly command: string; readonly rssMb: number }>;
  readonly table: number;
  readonly kernel: KernelState;
  /** Kernel elements without a table entry, and table entries missing from a map or the set, in two reads RECHECK_MS apart. */
  readonly stale: readonly string[];
  readonly missing: readonly string[];
  /** Requests a second since the previous sample. */
  readonly rate: number | undefined;
}

interface FinalCheck {
  readonly tableLeft: number;
  readonly kernelLeft: number;
  readonly kernelLeftDetail: string;
  readonly exitCode: number | undefined;
  readonly leftovers: readonly string[];
}

function parseOptions(argv: readonly string[]): Options | 'help' {
  const { values } = parseArgs({ args: [...argv], options: { minutes: { type: 'string' }, clients: { type: 'string' }, help: { type: 'boolean' } } });
  if (values.help) return 'help';
  const minutes = Number(values.minutes ?? DEFAULT_MINUTES);
  const clients = Number(values.clients ?? DEFAULT_CLIENTS);
  if (!(minutes > 0 && minutes <= MAX_MINUTES)) throw new Error(`--minutes must be above 0 and at most ${MAX_MINUTES}`);
  if (!(Number.isInteger(clients) && clients >= 1 && clients <= 100)) throw new Error('--clients must be an integer from 1 to 100');
  return { minutes, clients };
}

async function main(argv: readonly string[]): Promise<number> {
  let options: Options;
  try {
    const parsed = parseOptions(argv);
    if (parsed === 'help') {
      process.stdout.write(USAGE);
      return 0;
    }
    options = parsed;
  } catch (err) {
    process.stderr.write(`soak: ${(err as Error).message}\n${USAGE}`);
    return EXIT_USAGE;
  }
  const churnMs = options.minutes * 60_000;
  const cannotRun = await preflight();
  if (cannotRun) {
    process.stderr.write(`soak: cannot run: ${cannotRun}\n`);
    return EXIT_USAGE;
  }

  // The global deadline: whatever hangs, the namespaces go and the process ends.
  const created: { bench?: BenchTestbed } = {};
  const watchdog = setTimeout(() => {
    process.stderr.write(`soak: still running ${DEADLINE_MARGIN_MS / 60_000} min after the ${options.minutes}-minute churn: stopping\n`);
    void (created.bench?.destroy() ?? Promise.resolve()).finally(() => process.exit(1));
  }, churnMs + DEADLINE_MARGIN_MS);
  watchdog.unref();
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals) => {
    // A Ctrl-C reaches us twice (from the terminal and relayed by tsx): act on the first only.
    if (signalled) return;
    signalled = true;
    process.stderr.write(`soak: ${signal}: removing the testbed\n`);
    void (created.bench?.destroy() ?? Promise.resolve()).finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const stale = buildNeeded();
  if (stale) {
    log(`building upnpd: ${stale}`);
    await build();
  }
  const version = await upnpd.version();
  const date = new Date();
  const samples: Sample[] = [];
  const failures: string[] = [];
  let churnStats: ChurnStats | undefined;
  let final: FinalCheck | undefined;
  let daemonTail = '';
  let status: DaemonStatus | undefined;

  const bench = (created.bench = await createBenchTestbed(churnMs + DEADLINE_MARGIN_MS));
  try {
    const { testbed } = bench;
    const gw = testbed.gateway;
    log(`testbed: namespaces ${[testbed.lan, testbed.lan2, gw, testbed.wan].map((ns) => ns.name).join(', ')}`);
    const dir = join(bench.workDir, 'soak');
    const stateDir = join(dir, 'state');
    const runtimeDir = join(dir, 'run');
    mkdirSync(runtimeDir, { recursive: true });
    const configFile = join(dir, 'upnpd.config.mjs');
    writeFileSync(configFile, oneClientLoadConfig(PACKAGE_ENTRY, [`nftables({ forwardJump: ${JSON.stringify(ADMIN_FORWARD)} })`]));
    await gw.exec('nft', ['-f', '-'], { input: adminFirewallScript({ lanInterface: testbed.lanInterface, wanInterface: testbed.wanInterface }) });

    const args = ['--config', configFile, '--lan', testbed.lanInterface, '--wan', testbed.wanInterface, '--backend', 'nftables'];
    args.push('--http-port', String(HTTP_PORT), '--log-level', 'warn', '--state-dir', stateDir, '--runtime-dir', runtimeDir);
    const daemon = NamespaceProcess.start(gw, [DAEMON_ENTRY, ...args], { cwd: dir });
    const socket = join(runtimeDir, SOCKET_NAME);
    await waitForControl(socket, daemon);
    log(`upnpd serving (pid ${daemon.pid}); idle sample`);
    samples.push(await sample('idle', daemon.pid, socket, gw, undefined));

    const hosts = bench.lanHosts.slice(0, options.clients);
    const churn = NamespaceProcess.start(
      testbed.lan,
      tsEntryCommand(new URL('./soak-churn.ts', import.meta.url), [
        '--description-url',
        `http://${testbed.addresses.gatewayLan}:${HTTP_PORT}/rootDesc.xml`,
        ...hosts.flatMap((host) => ['--host', host]),
        '--rate',
        String(RATE),
        '--target',
        String(TARGET_MAPPINGS),
        '--min-lease',
        String(SOAK_MIN_LEASE_SECONDS),
        '--max-lease',
        String(SOAK_MAX_LEASE_SECONDS),
        '--duration-ms',
        String(churnMs),
        '--lifetime-ms',
        String(churnMs + DEADLINE_MARGIN_MS),
      ]),
      { stdin: true },
    );
    await churn.waitFor(/^CHURN READY$/m, START_TIMEOUT_MS);
    const churnStart = performance.now();
    log(
      `churn: ${hosts.length} LAN client(s), ${RATE} requests/s, about ${TARGET_MAPPINGS} mappings, leases ${SOAK_MIN_LEASE_SECONDS}–${SOAK_MAX_LEASE_SECONDS} s, ${options.minutes} min`,
    );

    let previous = { at: churnStart, requests: 0 };
    const sampleCount = Math.ceil(churnMs / SAMPLE_INTERVAL_MS);
    for (let i = 1; i <= sampleCount; i += 1) {
      const dueMs = Math.min(i * SAMPLE_INTERVAL_MS, churnMs);
      await sleepUntil(churnStart + dueMs, daemon, churn);
      if (!daemon.running || !churn.running) break;
      const stats = parseJsonLine<ChurnStats>(await ask(churn, 'stats', 'STATS '));
      const now = performance.now();
      const rate = (stats.requests - previous.requests) / ((now - previous.at) / 1000);
      previous = { at: now, requests: stats.requests };
      // The answer is PAUSED, or PAUSE TIMEOUT when requests are still in flight.
      if ((await ask(churn, 'pause', 'PAUSE')) !== 'D') failures.push(`at ${minutes(dueMs)} min the churn did not pause: requests still in flight`);
      const s = await sample(minutes(dueMs), daemon.pid, socket, gw, rate);
      samples.push(s);
      await ask(churn, 'resume', 'RESUMED');
      log(
        `${s.label} min: RSS ${s.rssMb.toFixed(1)} MB, ${s.fds} fds, children ${describeChildren(s.children)}, table ${s.table}, kernel ${s.kernel.total} (${kernelCounts(s.kernel)}), ${rate.toFixed(0)} req/s`,
      );
      if (s.stale.length > 0 || s.missing.length > 0) {
        failures.push(`at ${s.label} min the kernel and the table disagreed for ${RECHECK_MS / 1000} s: ${describeUnmatched(s)}`);
      }
    }

    if (!daemon.running) failures.push(`upnpd died during the churn (exit ${await daemon.exited()})`);
    if (churn.running) churnStats = parseJsonLine<ChurnStats>(await ask(churn, 'stop', 'STOPPED '));
    else failures.push(`the churn process ended early (exit ${await churn.exited()}): ${churn.output().slice(-2000)}`);
    await churn.stop('SIGTERM', 5_000);

    if (daemon.running) {
      // Every lease runs out: the last one granted ends at churnStats.lastExpiry (wall clock, shared by the namespaces).
      const lastExpiry = churnStats?.lastExpiry ?? Date.now() + SOAK_MAX_LEASE_SECONDS * 1000;
      const drainMs = Math.min(Math.max(0, lastExpiry - Date.now()), (SOAK_MAX_LEASE_SECONDS + 5) * 1000) + EXPIRY_GRACE_MS;
      log(`churn stopped; waiting ${(drainMs / 1000).toFixed(0)} s for the last leases to run out`);
      await sleepUntil(performance.now() + drainMs, daemon);
      let table = await tableOf(socket);
      let kernel = await kernelState(gw);
      for (let i = 0; i < 10 && (table.length > 0 || kernel.total > 0) && daemon.running; i += 1) {
        await sleep(DRAIN_POLL_MS);
        [table, kernel] = [await tableOf(socket), await kernelState(gw)];
      }
      status = (await controlRequest(socket, { command: 'status' }).then((r) => (r.ok ? r.result : undefined))) as DaemonStatus | undefined;
      const drained = await sample('drained', daemon.pid, socket, gw, undefined);
      samples.push(drained);
      log(`drained: table ${table.length}, kernel ${kernel.total}; SIGTERM`);
      const exitCode = await daemon.stop('SIGTERM', STOP_GRACE_MS);
      final = {
        tableLeft: table.length,
        kernelLeft: kernel.total,
        kernelLeftDetail: kernelCounts(kernel),
        exitCode,
        leftovers: await upnpdLeftovers(gw),
      };
      if (final.tableLeft > 0) failures.push(`${final.tableLeft} mapping(s) still in upnpd's table after every lease ran out`);
      if (final.kernelLeft > 0)
        failures.push(`${final.kernelLeft} element(s) of upnpd's maps/sets still in the kernel after every lease ran out (${final.kernelLeftDetail})`);
      if (exitCode !== 0) failures.push(`upnpd exited ${exitCode} on SIGTERM`);
      if (final.leftovers.length > 0) failures.push(`after SIGTERM the gateway still has: ${final.leftovers.join(', ')}`);
    } else {
      failures.push(`upnpd died (exit ${await daemon.exited()})`);
    }
    daemonTail = daemon.output().trim().split('\n').slice(-10).join('\n');
  } catch (err) {
    failures.push(`the soak failed: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    log('removing the testbed');
    await bench.destroy();
    clearTimeout(watchdog);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }

  const report = reportMarkdown({ options, version, date, samples, churnStats, final, status, failures, daemonTail });
  process.stdout.write(`\n${report}`);
  const file = new URL(`./results/soak-${isoDay(date)}.md`, import.meta.url);
  mkdirSync(new URL('./', file), { recursive: true });
  writeFileSync(file, report);
  log(`report written to ${fileURLToPath(file)}`);
  return failures.length === 0 ? 0 : 1;
}

/** Why the soak cannot run here (not root, no `ip netns`, no nft), or undefined. */
async function preflight(): Promise<string | undefined> {
  for (const program of ['ip', 'nft']) if (!(await haveProgram(program))) return `${program} is not installed (Debian packages iproute2, nftables)`;
  return namespaceSupport();
}

/** Until the daemon answers on its control socket (it serves HTTP by then), or rejects with its output. */
async function waitForControl(socket: string, daemon: NamespaceProcess): Promise<void> {
  const start = performance.now();
  for (;;) {
    if (!daemon.running) throw new Error(`upnpd exited (${await daemon.exited()}) at start:\n${daemon.output()}`);
    const answer = await controlRequest(socket, { command: 'status' }).catch(() => undefined);
    if (answer?.ok) return;
    if (performance.now() - start > START_TIMEOUT_MS) {
      await daemon.kill();
      throw new Error(`upnpd did not answer on ${socket} within ${START_TIMEOUT_MS} ms:\n${daemon.output()}`);
    }
    await sleep(200);
  }
}

/** Sleeps until `at` (performance.now() time), waking early when a process exits. Bounded by `at`. */
async function sleepUntil(at: number, ...processes: NamespaceProcess[]): Promise<void> {
  const wait = at - performance.now();
  if (wait <= 0) return;
  const controller = new AbortController();
  await Promise.race([sleep(wait, undefined, { signal: controller.signal }).catch(() => undefined), ...processes.map((p) => p.exited())]);
  controller.abort();
}

/** Sends a command to the churn and resolves with the rest of its answer line (which starts with `prefix`). */
function ask(churn: NamespaceProcess, command: string, prefix: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => finish(() => reject(new Error(`the churn did not answer "${command}" within ${CHURN_ANSWER_MS} ms`))), CHURN_ANSWER_MS);
    const off = churn.onLine((line) => {
      if (line.startsWith(prefix)) finish(() => resolve(line.slice(prefix.length)));
    });
    const finish = (settle: () => void) => {
      clearTimeout(timer);
      off();
      settle();
    };
    churn.writeLine(command);
  });
}

function parseJsonLine<T>(text: string): T {
  return JSON.parse(text) as T;
}

/**
 * One row: the daemon's RSS, fds and children from /proc, its table through the control socket,
 * the kernel's elements; then both again RECHECK_MS later, so that what still disagrees is not a
 * change in flight (the churn is paused; only expiries happen meanwhile).
 */
async function sample(label: string, pid: number, socket: string, gw: TestNamespace, rate: number | undefined): Promise<Sample> {
  const rssMb = parseVmRss(readFileSync(`/proc/${pid}/status`, 'utf8')) / 2 ** 20;
  const fds = readdirSync(`/proc/${pid}/fd`).length;
  const children = childProcesses(pid);
  const table0 = keysOf(await tableOf(socket));
  const kernel0 = await kernelState(gw);
  await sleep(RECHECK_MS);
  const table1 = keysOf(await tableOf(socket));
  const kernel1 = await kernelState(gw);
  const staleAt = (table: ReadonlySet<string>, kernel: KernelState) => [...new Set([...kernel.dnat, ...kernel.accept])].filter((key) => !table.has(key));
  const missingAt = (table: ReadonlySet<string>, kernel: KernelState) => [...table].filter((key) => !kernel.dnat.has(key) || !kernel.accept.has(key));
  const both = (a: readonly string[], b: readonly string[]) => a.filter((key) => b.includes(key));
  return {
    label,
    rssMb,
    fds,
    children,
    table: table0.size,
    kernel: kernel0,
    stale: both(staleAt(table0, kernel0), staleAt(table1, kernel1)),
    missing: both(missingAt(table0, kernel0), missingAt(table1, kernel1)),
    rate,
  };
}

/** The daemon's child processes (command and first two arguments) with their VmRSS in MB, in pid order. */
function childProcesses(pid: number): Array<{ readonly command: string; readonly rssMb: number }> {
  const children = processTree(pid)
    .slice(1)
    .sort((a, b) => a - b);
  return children.flatMap((child) => {
    try {
      const argv = readFileSync(`/proc/${child}/cmdline`, 'utf8').split('\0').filter(Boolean);
      const command = [basename(argv[0] ?? '?'), ...argv.slice(1, 3)].join(' ');
      return [{ command, rssMb: parseVmRss(readFileSync(`/proc/${child}/status`, 'utf8')) / 2 ** 20 }];
    } catch {
      return []; // exited meanwhile
    }
  });
}

function describeChildren(children: Sample['children']): string {
  return children.length === 0 ? '0' : `${children.length}: ${children.map((c) => `${c.command} ${c.rssMb.toFixed(1)} MB`).join(', ')}`;
}

/** Each child command's RSS in the first and the last loaded sample (same commands added up). */
function childrenChange(first: Sample, last: Sample): string {
  const byCommand = (s: Sample) => s.children.reduce((m, c) => m.set(c.command, (m.get(c.command) ?? 0) + c.rssMb), new Map<string, number>());
  const [before, after] = [byCommand(first), byCommand(last)];
  const commands = [...new Set([...before.keys(), ...after.keys()])];
  return commands.map((command) => `${command} ${before.get(command)?.toFixed(1) ?? '–'} → ${after.get(command)?.toFixed(1) ?? '–'} MB`).join(', ');
}

async function tableOf(socket: string): Promise<ListedMapping[]> {
  const answer = await controlRequest(socket, { command: 'list' });
  if (!answer.ok) throw new Error(`upnpd list: ${answer.error}`);
  return answer.result as ListedMapping[];
}

function keysOf(mappings: readonly ListedMapping[]): Set<string> {
  return new Set(mappings.map((m) => `${m.protocol.toUpperCase()}/${m.externalPort}`));
}

interface NftContainer {
  readonly family: string;
  readonly table: string;
  readonly name: string;
  readonly elem?: readonly unknown[];
}

/** `nft -j list ruleset` in the gateway: every set and map of upnpd's table, and those named upnpd… in other tables. */
async function kernelState(gw: TestNamespace): Promise<KernelState> {
  const listing = JSON.parse(await gw.exec('nft', ['-j', 'list', 'ruleset'])) as { nftables: Array<{ set?: NftContainer; map?: NftContainer }> };
  const counts: Record<string, number> = {};
  const dnat = new Set<string>();
  const accept = new Set<string>();
  for (const entry of listing.nftables) {
    const container = entry.set ?? entry.map;
    if (!container) continue;
    const ours = (container.family === UPNPD_TABLE.family && container.table === UPNPD_TABLE.table) || container.name.startsWith(UPNPD_PREFIX);
    if (!ours) continue;
    const elements = container.elem ?? [];
    counts[container.name] = elements.length;
    for (const element of elements) {
      const key = mappingKey(element);
      if (entry.map) dnat.add(key);
      else accept.add(key);
    }
  }
  return { counts, total: Object.values(counts).reduce((a, b) => a + b, 0), dnat, accept };
}

/** PROTOCOL/PORT of an element: its key's protocol part and its last port (a map element is [key, value]). */
function mappingKey(element: unknown): string {
  let key: unknown = Array.isArray(element) ? element[0] : element;
  if (key && typeof key === 'object' && 'elem' in key) key = (key as { elem: { val?: unknown } }).elem.val ?? key;
  const parts: unknown[] = key && typeof key === 'object' && 'concat' in key && Array.isArray(key.concat) ? (key.concat as unknown[]) : [key];
  const protocol = parts.map(protocolName).find((p) => p !== undefined) ?? '?';
  const port = parts.filter((p): p is number => typeof p === 'number' && p > 17).at(-1) ?? parts.at(-1);
  return `${protocol}/${String(port)}`;
}

function protocolName(part: unknown): string | undefined {
  if (part === 'tcp' || part === 6) return 'TCP';
  if (part === 'udp' || part === 17) return 'UDP';
  return undefined;
}

function kernelCounts(kernel: KernelState): string {
  const entries = Object.entries(kernel.counts);
  return entries.length === 0 ? 'no set or map of upnpd' : entries.map(([name, n]) => `${name} ${n}`).join(', ');
}

function describeUnmatched(s: Sample): string {
  const list = (keys: readonly string[]) => `${keys.slice(0, 5).join(' ')}${keys.length > 5 ? ` … (${keys.length})` : ''}`;
  return [s.stale.length > 0 && `in the kernel only: ${list(s.stale)}`, s.missing.length > 0 && `in the table only: ${list(s.missing)}`]
    .filter(Boolean)
    .join('; ');
}

/** What upnpd left in the gateway's ruleset after it exited: its table, or anything named upnpd… (chain, set, jump). */
async function upnpdLeftovers(gw: TestNamespace): Promise<string[]> {
  const leftovers: string[] = [];
  const tables = await gw.exec('nft', ['list', 'tables']);
  if (tables.split('\n').some((line) => line.trim() === `table ${UPNPD_TABLE.family} ${UPNPD_TABLE.table}`))
    leftovers.push(`table ${UPNPD_TABLE.family} ${UPNPD_TABLE.table}`);
  const admin = await gw.exec('nft', ['list', 'table', ADMIN_FORWARD.family, ADMIN_FORWARD.table]);
  for (const line of admin.split('\n').filter((l) => l.includes(UPNPD_PREFIX)))
    leftovers.push(`"${line.trim()}" in table ${ADMIN_FORWARD.family} ${ADMIN_FORWARD.table}`);
  return leftovers;
}

function reportMarkdown(r: {
  options: Options;
  version: string;
  date: Date;
  samples: readonly Sample[];
  churnStats: ChurnStats | undefined;
  final: FinalCheck | undefined;
  status: DaemonStatus | undefined;
  failures: readonly string[];
  daemonTail: string;
}): string {
  const cpu = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? 'unknown CPU';
  const loaded = r.samples.filter((s) => s.rate !== undefined);
  const first = loaded[0];
  const last = loaded.at(-1);
  const lines = [
    `# upnpd soak, ${r.date.toISOString().slice(0, 16).replace('T', ' ')} UTC, ${r.options.minutes} min`,
    '',
    `${r.version}, nftables backend (forwardJump into ${ADMIN_FORWARD.family} ${ADMIN_FORWARD.table} ${ADMIN_FORWARD.chain}), --state-dir on, ` +
      `per-client bounds and quota raised (test/support/load-limits.ts). Churn from ${r.options.clients} LAN client(s): ${RATE} requests/s, ` +
      `about ${TARGET_MAPPINGS} mappings (TCP and UDP on a rotating port range), leases ${SOAK_MIN_LEASE_SECONDS}–${SOAK_MAX_LEASE_SECONDS} s, ` +
      `some renewed, some deleted, some listings. ${availableParallelism()} × ${cpu}, Linux ${release()}, Node ${process.version}.`,
    '',
    `Every ${SAMPLE_INTERVAL_MS / 1000} s (churn paused for the row): the daemon's VmRSS and open fds, its child processes, its table (control socket \`list\`), ` +
      `the elements of upnpd's maps and set (\`nft -j list ruleset\`), and what disagreed between the two in two reads ${RECHECK_MS / 1000} s apart.`,
    '',
    '| min | RSS MB | fds | children | table | kernel elements | unmatched | req/s |',
    '|---|---|---|---|---|---|---|---|',
    ...r.samples.map(
      (s) =>
        `| ${s.label} | ${s.rssMb.toFixed(1)} | ${s.fds} | ${describeChildren(s.children)} | ${s.table} | ${s.kernel.total} (${kernelCounts(s.kernel)}) | ${s.stale.length + s.missing.length} | ${s.rate === undefined ? '–' : s.rate.toFixed(0)} |`,
    ),
    '',
  ];
  if (first && last) {
    const rssChange = ((last.rssMb - first.rssMb) / first.rssMb) * 100;
    const peak = Math.max(...loaded.map((s) => s.rssMb));
    lines.push(
      `First vs last loaded sample (${first.label} → ${last.label} min): RSS ${first.rssMb.toFixed(1)} → ${last.rssMb.toFixed(1)} MB (${rssChange >= 0 ? '+' : ''}${rssChange.toFixed(1)} %, peak ${peak.toFixed(1)}), ` +
        `fds ${first.fds} → ${last.fds} (range ${Math.min(...loaded.map((s) => s.fds))}–${Math.max(...loaded.map((s) => s.fds))}); ` +
        `children's RSS ${childrenChange(first, last)}.`,
      '',
    );
  }
  const c = r.churnStats;
  if (c) {
    const faults = Object.entries(c.faults).map(([what, n]) => `${what}: ${n}`);
    lines.push(
      `Churn: ${c.requests} requests: ${c.adds} adds, ${c.renewals} renewals, ${c.deletes} deletes (${c.deletesAfterExpiry} answered 714, the lease had run out), ${c.reads} listings; ` +
        `faults ${faults.length > 0 ? faults.join(', ') : 'none'}; other errors ${c.errors}${c.errors > 0 ? ` (last: ${c.lastError})` : ''}; ticks skipped with 16 requests in flight ${c.skippedTicks}.`,
      '',
    );
  }
  if (r.status) {
    const { reconcile, limits, persistence } = r.status;
    lines.push(
      `Daemon at the end: reconcile ${reconcile.checks} checks, ${reconcile.repairs} repairs, ${reconcile.failures} failures; limits refused ${JSON.stringify(limits.refused)}; persistence ${JSON.stringify(persistence)}.`,
      '',
    );
  }
  const f = r.final;
  lines.push(
    f
      ? `Final check (churn stopped, every lease run out plus ${EXPIRY_GRACE_MS / 1000} s): table ${f.tableLeft} left, kernel ${f.kernelLeft} element(s) left (${f.kernelLeftDetail}); ` +
          `SIGTERM: exit ${f.exitCode}, ${f.leftovers.length === 0 ? `table ${UPNPD_TABLE.family} ${UPNPD_TABLE.table} gone, nothing of upnpd left in ${ADMIN_FORWARD.family} ${ADMIN_FORWARD.table}` : `left: ${f.leftovers.join(', ')}`}.`
      : 'Final check: not reached.',
    '',
    r.failures.length === 0
      ? '**Result: pass** (no leak, daemon alive throughout, clean stop).'
      : `**Result: FAIL**\n\n${r.failures.map((f) => `- ${f}`).join('\n')}`,
    '',
  );
  if (r.failures.length > 0 && r.daemonTail) lines.push('upnpd output (last lines):', '', '```', r.daemonTail, '```', '');
  return lines.join('\n');
}

function minutes(ms: number): string {
  return String(Math.round((ms / 60_000) * 10) / 10);
}

function isoDay(date: Date): string {
  return [date.getFullYear(), date.getMonth() + 1, date.getDate()].map((n) => String(n).padStart(2, '0')).join('-');
}

function log(line: string): void {
  process.stderr.write(`[soak ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
}

process.exitCode = await main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`soak: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  return 1;
});
