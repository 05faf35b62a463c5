import { FIGURE_KEYS, aggregate, figureSpecs, type FigureKey, type FigureSpec, type Notes, type Sample, type Unit } from './figures.js';
import type { BenchProfile } from './profile.js';

export interface DaemonResults {
  readonly name: string;
  readonly version: string;
  readonly samples: readonly Sample[];
  readonly notes: Notes;
}

export interface Machine {
  readonly cpus: number;
  readonly cpuModel: string;
  readonly kernel: string;
  readonly node: string;
}

/**
 * One comparison: upnpd against miniupnpd with the same firewall backend, and further columns
 * shown beside them without a ratio (Node's floor: where the figure exists, the least any Node
 * HTTP server spends).
 */
export interface Section {
  readonly title: string;
  /** The rows this comparison measures, in the order of `FIGURES` (default: all of them). */
  readonly figures?: readonly FigureKey[];
  readonly upnpd: DaemonResults;
  readonly miniupnpd: DaemonResults;
  readonly others?: readonly DaemonResults[];
}

export type TableInput = Pick<Section, 'upnpd' | 'miniupnpd' | 'others' | 'figures'> & { readonly profile: Pick<BenchProfile, 'mappings' | 'firstCheckpoint'> };

export interface Report {
  readonly profile: BenchProfile;
  readonly date: Date;
  readonly machine: Machine;
  readonly sections: readonly Section[];
  readonly errors: readonly string[];
  /** Why fewer repeats ran than asked, if they did. */
  readonly shortfall?: string;
}

const NOT_MEASURED = 'n/a';

/**
 * The results table as a Markdown table padded to column widths (readable as it stands in a
 * terminal): per figure the medians for both daemons, the ratio upnpd/miniupnpd and which is
 * better by how much.
 */
export function resultsTable(report: TableInput): string {
  const specs = figureSpecs(report.profile);
  const ours = aggregate(report.upnpd.samples);
  const theirs = aggregate(report.miniupnpd.samples);
  const others = (report.others ?? []).map((d) => aggregate(d.samples));
  const rows = (report.figures ?? FIGURE_KEYS).map((key) => {
    const spec = specs[key];
    const u = ours[key]?.median;
    const m = theirs[key]?.median;
    const extra = others.map((o) => (o[key] === undefined ? '' : formatValue(o[key].median, spec.unit)));
    return [spec.label, spec.unit, formatValue(u, spec.unit), formatValue(m, spec.unit), ...comparison(spec, u, m), ...extra];
  });
  const header = ['figure', 'unit', report.upnpd.name, report.miniupnpd.name, `${report.upnpd.name}/${report.miniupnpd.name}`, 'better'];
  return markdownTable([...header, ...(report.others ?? []).map((d) => d.name)], rows);
}

/** Why figures are missing, one line per daemon and figure. */
export function notesList(report: TableInput): string[] {
  const specs = figureSpecs(report.profile);
  return [report.upnpd, report.miniupnpd, ...(report.others ?? [])].flatMap((daemon) =>
    (Object.entries(daemon.notes) as [FigureKey, string][]).map(([key, note]) => `${specs[key].label}, ${daemon.name}: ${NOT_MEASURED}: ${note}`),
  );
}

/** The results file: the table, the machine, what ran, what failed, every sample. */
export function resultsMarkdown(report: Report): string {
  const { profile, machine } = report;
  const daemons = report.sections.flatMap((s) => [s.upnpd, s.miniupnpd, ...(s.others ?? [])]);
  const repeats = daemons.map((d) => `${d.name} ${d.samples.length} of ${profile.repeats}`).join(', ');
  const lines = [`# upnpd vs miniupnpd, ${profile.name} run, ${report.date.toISOString()}`, ''];
  for (const section of report.sections) {
    lines.push(`## ${section.title}`, '', resultsTable({ profile, ...section }), '', ...notesList({ profile, ...section }).map((note) => `- ${note}`), '');
  }
  lines.push(
    'Medians over the repeats; "better" names the daemon that did better on that figure and by what factor. Every request on a new',
    'connection (`Connection: Close`, as miniupnpc sends them) unless the row says keep-alive.',
    '',
    '## Machine and versions',
    '',
    `- CPUs: ${machine.cpus} × ${machine.cpuModel}`,
    `- kernel: ${machine.kernel}`,
    `- Node.js: ${machine.node}`,
    ...daemons.map((d) => `- ${d.version}`),
    `- repeats: ${repeats}${report.shortfall ? ` (${report.shortfall})` : ''}`,
    '',
    'How it was measured: bench/README.md.',
  );
  if (report.errors.length > 0) lines.push('', '## Errors', '', ...report.errors.map((e) => `- ${e.replace(/\n/g, '\n  ')}`));
  lines.push('', '## Every sample', '', samplesTable(profile, daemons), '');
  return lines.join('\n');
}

function samplesTable(profile: BenchProfile, daemons: readonly DaemonResults[]): string {
  const specs = figureSpecs(profile);
  const columns = daemons.flatMap((d) => d.samples.map((sample, i) => ({ title: `${d.name} #${i + 1}`, sample })));
  const rows = FIGURE_KEYS.map((key) => [specs[key].label, ...columns.map(({ sample }) => formatValue(sample[key], specs[key].unit))]);
  return markdownTable(['figure', ...columns.map((c) => c.title)], rows);
}

function comparison(spec: FigureSpec, ours: number | undefined, theirs: number | undefined): [string, string] {
  if (ours === undefined || theirs === undefined || theirs === 0 || spec.better === 'none') return ['—', '—'];
  const ratio = ours / theirs;
  const upnpdBetter = spec.better === 'higher' ? ratio >= 1 : ratio <= 1;
  const factor = Math.max(ratio, 1 / ratio);
  return [`${ratio.toFixed(2)}`, `${upnpdBetter ? 'upnpd' : 'miniupnpd'} ${factor.toFixed(1)}×`];
}

export function formatValue(value: number | undefined, unit: Unit): string {
  if (value === undefined) return NOT_MEASURED;
  switch (unit) {
    case 'req/s':
    case 'cycles/s':
    case 'µs':
    case '%':
      return Math.round(value).toLocaleString('en-US');
    case 's':
      return value < 10 ? value.toFixed(3) : value.toFixed(1);
    case 'MB':
    case 'ms/s':
      return value.toFixed(1);
    case '×':
      return value.toFixed(2);
  }
}

export function markdownTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  const line = (cells: readonly string[]) => `| ${cells.map((cell, column) => cell.padEnd(widths[column]!)).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}
