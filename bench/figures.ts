import { NAT_PMP_FIGURES } from './natpmp-figures.js';
import { PINHOLE_FIGURES } from './pinhole-figures.js';
import type { BenchProfile } from './profile.js';

export type Unit = 'req/s' | 'cycles/s' | 's' | 'µs' | 'ms/s' | 'MB' | '×' | '%';

export interface FigureSpec {
  readonly label: string;
  readonly unit: Unit;
  /** Which way is better; 'none' for a daemon's own ratio, which is not compared across daemons. */
  readonly better: 'higher' | 'lower' | 'none';
}

export type Sizes = Pick<BenchProfile, 'mappings' | 'firstCheckpoint'>;

/** A row of the table: its label for the sizes of a run, its unit and which way is better. */
export interface FigureRow {
  readonly label: (sizes: Sizes) => string;
  readonly unit: Unit;
  readonly better: FigureSpec['better'];
}

/**
 * The rows of the table, in order, as data: a module that measures more (another front-end's
 * rows, say) adds its own rows here and fills them from its own phase. Unless a label says
 * "keep-alive", every request comes on a new TCP connection sent with `Connection: Close`, as
 * miniupnpc, libtorrent and GUPnP send them.
 */
export const FIGURES = {
  extIp1: { label: () => 'GetExternalIPAddress, 1 client', unit: 'req/s', better: 'higher' },
  extIp8: { label: () => 'GetExternalIPAddress, 8 clients (8 LAN hosts)', unit: 'req/s', better: 'higher' },
  extIpCpu1: { label: () => '  daemon CPU per GetExternalIPAddress (1 client)', unit: 'µs', better: 'lower' },
  extIpCpu: { label: () => '  daemon CPU per GetExternalIPAddress (8 clients)', unit: 'µs', better: 'lower' },
  extIpGeneratorBusy1: { label: () => '  generator busy (1 client): its CPU time over the phase, % of one core', unit: '%', better: 'none' },
  extIpGeneratorBusy8: {
    label: () => '  generator busy (8 clients): its CPU time over the phase, % of one core (at 100 the generator is the limit)',
    unit: '%',
    better: 'none',
  },
  extIpC1: { label: () => 'GetExternalIPAddress, 1 client, sent by a C client (ApacheBench)', unit: 'req/s', better: 'higher' },
  extIpC8: { label: () => 'GetExternalIPAddress, 8 clients (8 LAN hosts), sent by a C client (ApacheBench)', unit: 'req/s', better: 'higher' },
  extIpCCpu1: { label: () => '  daemon CPU per GetExternalIPAddress (ApacheBench, 1 client)', unit: 'µs', better: 'lower' },
  extIpCCpu8: { label: () => '  daemon CPU per GetExternalIPAddress (ApacheBench, 8 clients)', unit: 'µs', better: 'lower' },
  extIpKeepAlive1: { label: () => 'GetExternalIPAddress, 1 client, keep-alive', unit: 'req/s', better: 'higher' },
  extIpKeepAlive8: { label: () => 'GetExternalIPAddress, 8 clients, keep-alive', unit: 'req/s', better: 'higher' },
  extIpKeepAliveCpu: { label: () => '  daemon CPU per GetExternalIPAddress (8 clients, keep-alive)', unit: 'µs', better: 'lower' },
  cycles1: { label: () => 'AddPortMapping+DeletePortMapping, 1 worker, 100 LAN hosts', unit: 'cycles/s', better: 'higher' },
  cycles8: { label: () => 'AddPortMapping+DeletePortMapping, 8 workers, 100 LAN hosts', unit: 'cycles/s', better: 'higher' },
  cyclesCpu: { label: () => '  daemon CPU per add+delete cycle (8 workers, firewall commands included)', unit: 'µs', better: 'lower' },
  addFirst: { label: (s: Sizes) => `add ${s.firstCheckpoint} mappings (100 LAN hosts)`, unit: 's', better: 'lower' },
  addAll: { label: (s: Sizes) => `add ${s.mappings} mappings (100 LAN hosts)`, unit: 's', better: 'lower' },
  addLinearity: {
    label: (s: Sizes) => `  add ${s.mappings} / add ${s.firstCheckpoint} (linear: ${s.mappings / s.firstCheckpoint})`,
    unit: '×',
    better: 'none',
  },
  listByIndex: { label: (s: Sizes) => `list ${s.mappings}: GetGenericPortMappingEntry walk`, unit: 's', better: 'lower' },
  listCpu: { label: () => '  daemon CPU per GetGenericPortMappingEntry', unit: 'µs', better: 'lower' },
  listGeneratorCpu: { label: () => '  generator CPU per GetGenericPortMappingEntry', unit: 'µs', better: 'lower' },
  listUpnpc: { label: (s: Sizes) => `list ${s.mappings}: \`upnpc -l\` (miniupnpc's walk)`, unit: 's', better: 'lower' },
  listUpnpcCpu: { label: () => '  daemon CPU per GetGenericPortMappingEntry (upnpc -l)', unit: 'µs', better: 'lower' },
  listByIndexKeepAlive: { label: (s: Sizes) => `list ${s.mappings}: GetGenericPortMappingEntry walk, keep-alive`, unit: 's', better: 'lower' },
  listInPages: { label: (s: Sizes) => `list ${s.mappings}: GetListOfPortMappings`, unit: 's', better: 'lower' },
  connectFirst: { label: (s: Sizes) => `TCP connect via the first of ${s.mappings} mappings`, unit: 'µs', better: 'lower' },
  connectLast: { label: (s: Sizes) => `TCP connect via the last of ${s.mappings} mappings`, unit: 'µs', better: 'lower' },
  connectRatio: { label: () => '  last / first connect latency', unit: '×', better: 'none' },
  rssIdle: { label: () => 'RSS idle', unit: 'MB', better: 'lower' },
  rssMapped: { label: (s: Sizes) => `RSS with ${s.mappings} mappings, settled`, unit: 'MB', better: 'lower' },
  rssMappedMain: { label: () => '  of it the daemon process alone (without helpers such as xtables-monitor)', unit: 'MB', better: 'lower' },
  idleCpuMapped: { label: (s: Sizes) => `  idle daemon CPU with ${s.mappings} mappings (children included)`, unit: 'ms/s', better: 'lower' },
  startEmpty: { label: () => 'start-up, no mappings', unit: 's', better: 'lower' },
  startPersisted: { label: (s: Sizes) => `start-up with ${s.mappings} persisted mappings`, unit: 's', better: 'lower' },
  ...NAT_PMP_FIGURES,
  ...PINHOLE_FIGURES,
} as const satisfies Record<string, FigureRow>;

export type FigureKey = keyof typeof FIGURES;

export const FIGURE_KEYS = Object.keys(FIGURES) as FigureKey[];

/** What each figure measures, in the words of the table. */
export function figureSpecs(profile: Sizes): Record<FigureKey, FigureSpec> {
  return Object.fromEntries(FIGURE_KEYS.map((key) => [key, { ...FIGURES[key], label: FIGURES[key].label(profile) }])) as Record<FigureKey, FigureSpec>;
}

/** One daemon's figures from one repeat. A figure is missing when it could not be measured (see notes). */
export type Sample = Partial<Record<FigureKey, number>>;

/** Why a figure is missing for a daemon (the same for every repeat, e.g. no persistence). */
export type Notes = Partial<Record<FigureKey, string>>;

/** Per figure, the median over the samples that have it, and how many had it. */
export function aggregate(samples: readonly Sample[]): Partial<Record<FigureKey, { median: number; count: number; min: number; max: number }>> {
  const result: Partial<Record<FigureKey, { median: number; count: number; min: number; max: number }>> = {};
  for (const key of FIGURE_KEYS) {
    const values = samples.map((s) => s[key]).filter((v): v is number => v !== undefined && Number.isFinite(v));
    if (values.length === 0) continue;
    result[key] = { median: median(values), count: values.length, min: Math.min(...values), max: Math.max(...values) };
  }
  return result;
}

export function median(values: readonly number[]): number {
  if (values.length === 0) throw new RangeError('the median of no values');
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}
