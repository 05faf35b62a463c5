import { parseArgs } from 'node:util';

/** How much the benchmark measures, and within what time. */
export interface BenchProfile {
  readonly name: 'quick' | 'full';
  /** The whole run, testbed and build included. */
  readonly budgetMs: number;
  /** Repeats per daemon (fewer if the budget runs out; the report says how many ran). */
  readonly repeats: number;
  /** Request-rate phases: warm-up (not counted), then measured for `measureMs` or `maxOps` operations. */
  readonly throughput: { readonly warmupMs: number; readonly measureMs: number; readonly maxOps: number };
  /** Mappings added, listed and connected through. */
  readonly mappings: number;
  /** The smaller count whose add time is reported too (linearity check). */
  readonly firstCheckpoint: number;
  /** Bound on adding all mappings, and on each listing. */
  readonly phaseMaxMs: number;
  readonly connect: { readonly samples: number; readonly warmup: number };
  /** Bound on a daemon's start (description served; persisted mappings reloaded). */
  readonly startTimeoutMs: number;
  /** Which comparisons run: both (default), the nftables one alone (`--no-iptables`), the iptables one alone (`--only-iptables`). */
  readonly comparisons: 'all' | 'nftables' | 'iptables';
}

const PROFILES: Record<BenchProfile['name'], BenchProfile> = {
  full: {
    name: 'full',
    // One repeat of everything takes about 25 minutes on 2 Xeon cores and about 45 on 2 slower
    // AMD EPYC cores (2026-12-07), where miniupnpd's table groups alone take 5 to 10 minutes each
    // (its adds and its 5000 NAT-PMP maps are quadratic); later repeats fill what is left.
    budgetMs: 55 * 60_000,
    repeats: 3,
    throughput: { warmupMs: 1_000, measureMs: 5_000, maxOps: 1_000_000 },
    mappings: 5000,
    firstCheckpoint: 1000,
    // miniupnpd needs minutes for 5000 (each add lists its whole chain): on the slower machine
    // miniupnpd-nftables had added 4223 of them after 360 s.
    phaseMaxMs: 600_000,
    connect: { samples: 200, warmup: 20 },
    startTimeoutMs: 90_000,
    comparisons: 'all',
  },
  quick: {
    name: 'quick',
    // The nftables and iptables UPnP groups take about 4 minutes on a shared 2-core machine, the
    // NAT-PMP groups (nftables only) about 30 s more.
    budgetMs: 6 * 60_000,
    repeats: 1,
    throughput: { warmupMs: 300, measureMs: 1_500, maxOps: 1_000_000 },
    // Small enough for miniupnpd to add them within the budget.
    mappings: 1000,
    firstCheckpoint: 200,
    phaseMaxMs: 30_000,
    connect: { samples: 100, warmup: 10 },
    startTimeoutMs: 30_000,
    comparisons: 'all',
  },
};

export const USAGE = `Usage: npm run bench -- [--quick] [--repeats N] [--no-iptables | --only-iptables]

Runs upnpd and miniupnpd one after the other on the same namespace testbed and prints a table of
absolute figures and the ratio upnpd/miniupnpd (medians over repeats). Needs root.

  --quick      1000 mappings instead of 5000, one repeat, shorter phases: at most 6 minutes
               (default: at most 55 minutes)
  --repeats N  repeats per daemon (default 3, quick 1); fewer run if the time budget runs out
  --no-iptables  the nftables comparison alone (default: the iptables backends too, with
               miniupnpd-iptables fetched by apt-get download into ~/.cache/upnpd-bench once)
  --only-iptables  the iptables comparison alone (upnpd with iptables-legacy and iptables-nft
               against miniupnpd-iptables)
  --help       print this help
`;

export type CommandLine = { readonly help: true } | { readonly help: false; readonly profile: BenchProfile };

export function parseCommandLine(argv: readonly string[]): CommandLine {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      quick: { type: 'boolean' },
      repeats: { type: 'string' },
      'no-iptables': { type: 'boolean' },
      'only-iptables': { type: 'boolean' },
      help: { type: 'boolean' },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return { help: true };
  const chosen = PROFILES[values.quick ? 'quick' : 'full'];
  if (values['no-iptables'] && values['only-iptables']) throw new Error('--no-iptables and --only-iptables exclude each other');
  const comparisons = values['no-iptables'] ? 'nftables' : values['only-iptables'] ? 'iptables' : 'all';
  const profile: BenchProfile = { ...chosen, comparisons };
  if (values.repeats === undefined) return { help: false, profile };
  const repeats = Number(values.repeats);
  if (!Number.isInteger(repeats) || repeats < 1 || repeats > 20) throw new Error(`--repeats must be an integer from 1 to 20, not "${values.repeats}"`);
  return { help: false, profile: { ...profile, repeats } };
}
