import { NAT_PMP_FIGURE_KEYS, natPmpFigureSpecs } from './natpmp-figures.js';
import type { BenchProfile } from './profile.js';

export const FIGURE_KEYS = [
  'extIp1',
  'extIp8',
  'extIpCpu',
  'cycles1',
  'cycles8',
  'cyclesCpu',
  'addFirst',
  'addAll',
  'addLinearity',
  'listByIndex',
  'listCpu',
  'listGeneratorCpu',
  'listInPages',
  'connectFirst',
  'connectLast',
  'connectRatio',
  'rssIdle',
  'rssMapped',
  'startEmpty',
  'startPersisted',
  ...NAT_PMP_FIGURE_KEYS,
] as const;

export type FigureKey = (typeof FIGURE_KEYS)[number];

export type Unit = 'req/s' | 'cycles/s' | 's' | 'µs' | 'MB' | '×';

export interface FigureSpec {
  readonly label: string;
  readonly unit: Unit;
  /** Which way is better; 'none' for a daemon's own ratio, which is not compared across daemons. */
  readonly better: 'higher' | 'lower' | 'none';
}

/** What each figure measures, in the words of the table. */
export function figureSpecs(profile: Pick<BenchProfile, 'mappings' | 'firstCheckpoint'>): Record<FigureKey, FigureSpec> {
  const n = profile.mappings;
  const first = profile.firstCheckpoint;
  return {
    extIp1: { label: 'GetExternalIPAddress, 1 client', unit: 'req/s', better: 'higher' },
    extIp8: { label: 'GetExternalIPAddress, 8 clients', unit: 'req/s', better: 'higher' },
    extIpCpu: { label: '  daemon CPU per GetExternalIPAddress (8 clients)', unit: 'µs', better: 'lower' },
    cycles1: { label: 'AddPortMapping+DeletePortMapping, 1 worker, 100 LAN hosts', unit: 'cycles/s', better: 'higher' },
    cycles8: { label: 'AddPortMapping+DeletePortMapping, 8 workers, 100 LAN hosts', unit: 'cycles/s', better: 'higher' },
    cyclesCpu: { label: '  daemon CPU per add+delete cycle (8 workers, nft included)', unit: 'µs', better: 'lower' },
    addFirst: { label: `add ${first} mappings (100 LAN hosts)`, unit: 's', better: 'lower' },
    addAll: { label: `add ${n} mappings (100 LAN hosts)`, unit: 's', better: 'lower' },
    addLinearity: { label: `  add ${n} / add ${first} (linear: ${n / first})`, unit: '×', better: 'none' },
    listByIndex: { label: `list ${n}: GetGenericPortMappingEntry`, unit: 's', better: 'lower' },
    listCpu: { label: '  daemon CPU per GetGenericPortMappingEntry', unit: 'µs', better: 'lower' },
    listGeneratorCpu: { label: '  generator CPU per GetGenericPortMappingEntry', unit: 'µs', better: 'lower' },
    listInPages: { label: `list ${n}: GetListOfPortMappings`, unit: 's', better: 'lower' },
    connectFirst: { label: `TCP connect via the first of ${n} mappings`, unit: 'µs', better: 'lower' },
    connectLast: { label: `TCP connect via the last of ${n} mappings`, unit: 'µs', better: 'lower' },
    connectRatio: { label: '  last / first connect latency', unit: '×', better: 'none' },
    rssIdle: { label: 'RSS idle', unit: 'MB', better: 'lower' },
    rssMapped: { label: `RSS with ${n} mappings, settled`, unit: 'MB', better: 'lower' },
    startEmpty: { label: 'start-up, no mappings', unit: 's', better: 'lower' },
    startPersisted: { label: `start-up with ${n} persisted mappings`, unit: 's', better: 'lower' },
    ...natPmpFigureSpecs(profile),
  };
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
