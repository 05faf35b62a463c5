import { readdirSync, readFileSync } from 'node:fs';

/** The pids of `parent`'s children whose command line (arguments joined by spaces) starts with `command`. */
export function childProcesses(parent: number, command: string): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((entry) => {
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
        const parentPid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        return parentPid === parent && readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ').startsWith(command);
      } catch {
        // The process ended since the listing.
        return false;
      }
    })
    .map(Number);
}
