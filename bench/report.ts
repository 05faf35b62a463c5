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

export interface Report {
  readonly profile: BenchProfile;
  readonly date: Date;
  readonly machine: Machine;
  readonly upnpd: DaemonResults;
  readonly miniupnpd: DaemonResults;
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
export function resultsTable(report: Pick<Report, 'profile' | 'upnpd' | 'miniupnpd'>): string {
  const specs = figureSpecs(report.profile);
  const ours = aggregate(report.upnpd.samples);
  const theirs = aggregate(report.miniupnpd.samples);
  const rows = FIGURE_KEYS.map((key) => {
    const spec = specs[key];
    const u = ours[key]?.median;
    const m = theirs[key]?.median;
    return [spec.label, spec.unit, formatValue(u, spec.unit), formatValue(m, spec.unit), ...comparison(spec, u, m)];
  });
  return markdownTable(['figure', 'unit', report.upnpd.name, report.miniupnpd.name, 'upnpd/miniupnpd', 'better'], rows);
}

/** Why figures are missing, one line per daemon and figure. */
export function notesList(report: Pick<Report, 'profile' | 'upnpd' | 'miniupnpd'>): string[] {
  const specs = figureSpecs(report.profile);
  return [report.upnpd, report.miniupnpd].flatMap((daemon) =>
    (Object.entries(daemon.notes) as [FigureKey, string][]).map(([key, note]) => `${specs[key].label}, ${daemon.name}: ${NOT_MEASURED}: ${note}`),
  );
}

/** The results file: the table, the machine, what ran, what failed, every sample. */
export function resultsMarkdown(report: Report): string {
  const { profile, machine } = report;
  const repeats = (d: DaemonResults) => `${d.samples.length} of ${profile.repeats}`;
  const lines = [
    `# upnpd vs miniupnpd, ${profile.name} run, ${report.date.toISOString()}`,
    '',
    resultsTable(report),
    '',
    'Medians over the repeats; "better" names the daemon that did better on that figure and by what factor.',
    ...notesList(report).map((note) => `- ${note}`),
    '',
    '## Machine and versions',
    '',
    `- CPUs: ${machine.cpus} × ${machine.cpuModel}`,
    `- kernel: ${machine.kernel}`,
    `- Node.js: ${machine.node}`,
    `- ${report.upnpd.version}`,
    `- ${report.miniupnpd.version}`,
    `- repeats: upnpd ${repeats(report.upnpd)}, miniupnpd ${repeats(report.miniupnpd)}${report.shortfall ? ` (${report.shortfall})` : ''}`,
    '',
    'How it was measured: bench/README.md.',
  ];
  if (report.errors.length > 0) lines.push('', '## Errors', '', ...report.errors.map((e) => `- ${e.replace(/\n/g, '\n  ')}`));
  lines.push('', '## Every sample', '', samplesTable(report), '');
  return lines.join('\n');
}

function samplesTable(report: Report): string {
  const specs = figureSpecs(report.profile);
  const columns = [report.upnpd, report.miniupnpd].flatMap((d) => d.samples.map((sample, i) => ({ title: `${d.name} #${i + 1}`, sample })));
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
      return Math.round(value).toLocaleString('en-US');
    case 's':
      return value < 10 ? value.toFixed(3) : value.toFixed(1);
    case 'MB':
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
