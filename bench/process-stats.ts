import { readFileSync } from 'node:fs';

/** A process's resident set size in bytes (VmRSS of /proc/PID/status). */
export function residentBytes(pid: number): number {
  return parseVmRss(readFileSync(`/proc/${pid}/status`, 'utf8'));
}

/**
 * The resident size after `quietMs` without load: V8 returns the pages of a burst's garbage to the
 * system only when its memory reducer runs, about ten seconds after allocation calms down, so an
 * earlier sample measures garbage rather than what the daemon holds. Both daemons get the same wait.
 */
export async function settledResidentBytes(pid: number, quietMs = 15_000): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, quietMs));
  return residentBytes(pid);
}

export function parseVmRss(status: string): number {
  const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  if (!match) throw new Error('no VmRSS line in /proc/PID/status (a kernel thread, or a zombie)');
  return Number(match[1]) * 1024;
}

/** Clock ticks per second of the times in /proc/PID/stat (USER_HZ: 100 on every Linux ABI Node runs on). */
const USER_HZ = 100;

/**
 * CPU seconds a process has used, its reaped children's included: upnpd runs `nft` for each
 * change, and that work is part of the change's cost (miniupnpd's netlink calls are its own).
 */
export function cpuSeconds(pid: number): number {
  return parseCpuTicks(readFileSync(`/proc/${pid}/stat`, 'utf8')) / USER_HZ;
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
