import { readdirSync, readFileSync } from 'node:fs';

const MB = 1024 * 1024;

/**
 * A daemon's resident set size in bytes: VmRSS of /proc/PID/status, plus that of each process it
 * runs (upnpd's long-lived `nft -i`), since that memory is part of what the daemon costs. Pages
 * the processes share (libc) are counted once per process, which errs against the daemon.
 */
export function residentBytes(pid: number): number {
  return processTree(pid).reduce((sum, p) => sum + (readOrUndefined(`/proc/${p}/status`, vmRssOrZero) ?? 0), 0);
}

/** A child that has just exited (a zombie until reaped) has no VmRSS line: it holds nothing. */
export function vmRssOrZero(status: string): number {
  return /^VmRSS:/m.test(status) ? parseVmRss(status) : 0;
}

/** Samples of residentBytes taken for a figure, a second apart; the figure is their median. */
export const RSS_SAMPLES = { count: 5, intervalMs: 1_000 } as const;

/**
 * The median of RSS_SAMPLES.count samples of residentBytes a second apart: one sample may catch a
 * short-lived child (upnpd's periodic `nft -j list`, 15 MB with 5000 mappings, runs for a fraction
 * of a second every 2 s) or a collection under way, and then says more about the moment than
 * about the daemon.
 */
export async function medianResidentBytes(pid: number): Promise<number> {
  return (await medianResidentSizes(pid)).total;
}

/** What a daemon's tree holds: the total (residentBytes), the daemon's own process, and who holds what. */
export interface ResidentSizes {
  readonly total: number;
  /** The daemon's own process alone, without the helpers it runs (`xtables-monitor`, `ip monitor`, ...). */
  readonly main: number;
  /** Each process of the sample whose total is the median, in MB: "71.2 upnpd.js (anon 29.2, file 42.0) + 5.7 nft --echo monitor". */
  readonly parts: string;
}

/**
 * medianResidentBytes with the daemon's own process's share beside it (their medians over the same
 * samples), and the processes of the median sample named, so that a report can tell what the
 * daemon holds from what its helpers held when sampled.
 */
export async function medianResidentSizes(pid: number): Promise<ResidentSizes> {
  const samples: Array<{ total: number; main: number; parts: string }> = [];
  for (let i = 0; i < RSS_SAMPLES.count; i += 1) {
    if (i > 0) await new Promise((resolve) => setTimeout(resolve, RSS_SAMPLES.intervalMs));
    const parts = processTree(pid).map((p) => ({ p, bytes: readOrUndefined(`/proc/${p}/status`, vmRssOrZero) ?? 0 }));
    samples.push({
      total: parts.reduce((sum, { bytes }) => sum + bytes, 0),
      main: parts[0]!.bytes,
      parts: parts.map(({ p, bytes }) => `${(bytes / MB).toFixed(1)} ${commandOf(p)}${p === pid ? ` (${residentKinds(p)})` : ''}`).join(' + '),
    });
  }
  const middle = Math.floor(samples.length / 2);
  const byTotal = [...samples].sort((a, b) => a.total - b.total);
  const mains = samples.map((s) => s.main).sort((a, b) => a - b);
  return { total: byTotal[middle]!.total, main: mains[middle]!, parts: byTotal[middle]!.parts };
}

/** "anon 29.2, file 42.0": a process's anonymous memory (heaps, stacks) and the file pages it touched (its binary, libraries), in MB. */
function residentKinds(pid: number): string {
  const status = readOrUndefined(`/proc/${pid}/status`, (text) => text);
  if (status === undefined) return 'exited';
  const mb = (field: string) => (Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) / 1024).toFixed(1);
  return `anon ${mb('RssAnon')}, file ${mb('RssFile')}`;
}

/** A process's program and first arguments, for a log line ("nft --echo monitor"). */
function commandOf(pid: number): string {
  const argv = readOrUndefined(`/proc/${pid}/cmdline`, (text) => text.split('\0').filter(Boolean)) ?? [];
  if (argv.length === 0) return '(exited)';
  // The daemon itself is `node [flags] .../upnpd.js`: its script names it better than node does.
  const script = argv.find((arg) => /\.(?:js|ts)$/.test(arg));
  const words = script ? [script.split('/').pop()!] : [argv[0]!.split('/').pop()!, ...argv.slice(1, 3)];
  return words.join(' ').slice(0, 40);
}

/** The quiet wait of settledResidentSizes. */
export const SETTLE_QUIET_MS = 15_000;

/**
 * The resident size after `quietMs` without load (medianResidentBytes): V8 returns the pages of a
 * burst's garbage to the system only when its memory reducer runs, about ten seconds after
 * allocation calms down, so an earlier sample measures garbage rather than what the daemon holds.
 * Both daemons get the same wait.
 */
export async function settledResidentSizes(pid: number, quietMs = SETTLE_QUIET_MS): Promise<ResidentSizes> {
  await new Promise((resolve) => setTimeout(resolve, quietMs));
  return medianResidentSizes(pid);
}

export function parseVmRss(status: string): number {
  const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  if (!match) throw new Error('no VmRSS line in /proc/PID/status (a kernel thread, or a zombie)');
  return Number(match[1]) * 1024;
}

/** Clock ticks per second of the times in /proc/PID/stat (USER_HZ: 100 on every Linux ABI Node runs on). */
const USER_HZ = 100;

/**
 * CPU seconds a process has used, with its children's: those reaped (one-off `nft` runs) and those
 * still running (upnpd's `nft -i`). That work is part of a change's cost; miniupnpd's netlink calls
 * are its own. A child that exits between two readings moves from the second term to the first.
 */
export function cpuSeconds(pid: number): number {
  const ticks = processTree(pid).reduce((sum, p) => sum + (readOrUndefined(`/proc/${p}/stat`, parseCpuTicks) ?? 0), 0);
  return ticks / USER_HZ;
}

/** `pid` and its descendants that are alive now, found by the parent pid in each /proc/N/stat. */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const parent = readOrUndefined(`/proc/${entry}/stat`, parentPid);
    if (parent !== undefined) children.set(parent, [...(children.get(parent) ?? []), Number(entry)]);
  }
  const tree = [pid];
  for (let i = 0; i < tree.length; i += 1) tree.push(...(children.get(tree[i]!) ?? []));
  return tree;
}

/** The parent pid: field 4 of /proc/PID/stat. */
export function parentPid(stat: string): number {
  return Number(afterCommand(stat).split(' ')[1]);
}

/** `parse` of a /proc file, or undefined when the process has exited meanwhile. */
function readOrUndefined<T>(file: string, parse: (text: string) => T): T | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  return parse(text);
}

/** utime + stime + cutime + cstime (fields 14-17 of /proc/PID/stat). */
export function parseCpuTicks(stat: string): number {
  const fields = afterCommand(stat).split(' ');
  // Fields after the command start at field 3 (state); utime is field 14.
  return [11, 12, 13, 14].reduce((sum, i) => sum + Number(fields[i]), 0);
}

/**
 * Whether a process has exited. A daemonized process (miniupnpd) is not our child: if nothing
 * reaps it (PID 1 in a container may not), it lingers as a zombie, which counts as gone.
 */
export function processGone(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return true;
  }
  return afterCommand(stat).startsWith('Z');
}

/** "PID (comm) STATE ...": comm may hold spaces and parentheses, so the fields start after the last ')'. */
function afterCommand(stat: string): string {
  return stat.slice(stat.lastIndexOf(')') + 2);
}
