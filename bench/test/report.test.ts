import { describe, expect, it } from 'vitest';
import { aggregate, median } from '../figures.js';
import type { BenchProfile } from '../profile.js';
import { formatValue, markdownTable, notesList, resultsTable } from '../report.js';

const profile = { mappings: 5000, firstCheckpoint: 1000 } as BenchProfile;
const daemon = (name: string, samples: object[], notes = {}) => ({ name, version: `${name} 1.0`, samples, notes });

function rowOf(table: string, label: string): string[] {
  const line = table.split('\n').find((l) => l.startsWith(`| ${label} `));
  if (!line) throw new Error(`no row "${label}" in\n${table}`);
  return line
    .split('|')
    .slice(1, -1)
    .map((cell) => cell.trim());
}

describe('results table', () => {
  it('shows medians, the ratio upnpd/miniupnpd and who is better, for higher-is-better figures', () => {
    const table = resultsTable({
      profile,
      upnpd: daemon('upnpd', [{ extIp1: 3000 }, { extIp1: 5000 }, { extIp1: 4000 }]),
      miniupnpd: daemon('miniupnpd', [{ extIp1: 2000 }]),
    });
    expect(rowOf(table, 'GetExternalIPAddress, 1 client')).toEqual(['GetExternalIPAddress, 1 client', 'req/s', '4,000', '2,000', '2.00', 'upnpd 2.0×']);
  });

  it('names the faster daemon for lower-is-better figures', () => {
    const table = resultsTable({ profile, upnpd: daemon('upnpd', [{ addAll: 30 }]), miniupnpd: daemon('miniupnpd', [{ addAll: 6 }]) });
    expect(rowOf(table, 'add 5000 mappings (100 LAN hosts)').slice(2)).toEqual(['30.0', '6.000', '5.00', 'miniupnpd 5.0×']);
  });

  it("prints n/a for a missing figure and compares nothing then, nor a daemon's own ratios", () => {
    const table = resultsTable({
      profile,
      upnpd: daemon('upnpd', [{ connectRatio: 1.01 }]),
      miniupnpd: daemon('miniupnpd', [{ connectRatio: 1.9, listInPages: 3 }]),
    });
    expect(rowOf(table, 'list 5000: GetListOfPortMappings').slice(2)).toEqual(['n/a', '3.000', '—', '—']);
    expect(rowOf(table, '  last / first connect latency').slice(2)).toEqual(['1.01', '1.90', '—', '—']);
  });

  it('shows only the rows a comparison measures when it names them (the iptables pair has no NAT-PMP rows)', () => {
    const input = { profile, upnpd: daemon('upnpd', [{ extIp1: 1, natPmpCycles1: 2 }]), miniupnpd: daemon('miniupnpd', [{ extIp1: 1, natPmpCycles1: 2 }]) };
    const natPmpLabel = 'NAT-PMP map+delete, 1 client (limits.stateChanges and requestsPerClient raised)';
    expect(rowOf(resultsTable(input), natPmpLabel).slice(2)).toEqual(['2', '2', '1.00', 'upnpd 1.0×']);
    const upnpOnly = resultsTable({ ...input, figures: ['extIp1', 'addAll'] });
    const labels = upnpOnly
      .split('\n')
      .filter((line) => line.startsWith('| '))
      .map((line) => line.split('|')[1]!.trim());
    expect(labels).toEqual(['figure', 'GetExternalIPAddress, 1 client', 'add 5000 mappings (100 LAN hosts)']);
  });

  it('lists why figures are missing', () => {
    const notes = notesList({
      profile,
      upnpd: daemon('upnpd', [], { startPersisted: 'no persistence yet' }),
      miniupnpd: daemon('miniupnpd', [], { listInPages: 'crashed' }),
    });
    expect(notes).toEqual([
      'start-up with 5000 persisted mappings, upnpd: n/a: no persistence yet',
      'list 5000: GetListOfPortMappings, miniupnpd: n/a: crashed',
    ]);
  });

  it('pads every column to its widest cell', () => {
    expect(markdownTable(['a', 'bb'], [['ccc', 'd']])).toBe('| a   | bb |\n|-----|----|\n| ccc | d  |');
  });

  it('formats each unit for reading', () => {
    expect(formatValue(12345.6, 'req/s')).toBe('12,346');
    expect(formatValue(0.01234, 's')).toBe('0.012');
    expect(formatValue(205.1, 's')).toBe('205.1');
    expect(formatValue(84.23, 'MB')).toBe('84.2');
    expect(formatValue(undefined, 'µs')).toBe('n/a');
  });
});

describe('aggregate', () => {
  it('takes per figure the median of the samples that have it', () => {
    expect(aggregate([{ extIp1: 1, rssIdle: 10 }, { extIp1: 3 }, { extIp1: 2 }])).toEqual({
      extIp1: { median: 2, count: 3, min: 1, max: 3 },
      rssIdle: { median: 10, count: 1, min: 10, max: 10 },
    });
  });

  it('has the middle value of an odd count and the mean of the middle two of an even count as median', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(() => median([])).toThrow(RangeError);
  });
});
