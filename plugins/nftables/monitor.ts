import { createInterface } from 'node:readline';
import { messageOf, type Logger } from 'upnpd';
import type { CommandExit, CommandRunner, RunningCommand } from 'upnpd/backend';

/**
 * A line of `nft monitor` that may mean upnpd's rules are gone: a table, chain, rule, set or map
 * deleted or flushed (an admin's reload, `flush ruleset`). Element changes are left out: upnpd
 * makes those itself with every change set, and a check after each would cost the hot path.
 */
const RULESET_LOSS = /^(?:delete|flush) (?:table|chain|rule|set|map|ruleset)\b/;

export function isRulesetLoss(line: string): boolean {
  return RULESET_LOSS.test(line);
}

/** A program that reports the kernel's ruleset events on its standard output, a line each. */
export interface RulesetMonitorProgram {
  /** For log lines. */
  readonly name: string;
  readonly file: string;
  readonly args: readonly string[];
  /** Whether a line of its output may mean upnpd's rules are gone. */
  readonly isLoss: (line: string) => boolean;
  /** Whether its standard error says it ended because it lost events (no loss of its own making). */
  readonly lostEvents?: (stderr: string) => boolean;
}

/**
 * `xtables-monitor --event` (iptables-nft's, iptables ≥ 1.8) decodes each event and forgets it:
 * 1.9 MB with 160 kB of its own, whatever the ruleset holds. It prints a line per deleted table of
 * any family (`flush ruleset`, a table reloaded as fw4 does), ` EVENT: nft: DEL table: table upnpd
 * inet flags 0 use 0 handle 2`, and one `NEWGEN` line per transaction (upnpd's change sets too,
 * none per element). It writes with stdio's buffering, which holds lines back while its output is
 * a pipe, hence `stdbuf -oL`. A transaction with tens of thousands of elements (an admin loading
 * a blocklist set) can overflow its socket buffer, fewer while it is kept from reading (40,000 did
 * on kernel 6.18; 10,000, as upnpd's resync of 5000 mappings, did not), and it exits ("No buffer
 * space available"): it is started again and a check covers what it missed.
 */
export const XTABLES_MONITOR: RulesetMonitorProgram = {
  name: 'xtables-monitor',
  file: 'stdbuf',
  args: ['-oL', 'xtables-monitor', '--event'],
  isLoss: (line) => /^\s*EVENT: nft: DEL table: /.test(line),
  lostEvents: (stderr) => /No buffer space available/.test(stderr),
};

/**
 * `nft monitor`, where xtables-monitor is not installed. Only deleted tables are reported
 * (`destroy tables`): nft then formats no line for the elements every change set adds, which
 * measurably slowed a burst of adds when all events were printed. Losses below table level (a jump
 * deleted by hand) are left to the periodic check.
 *
 * nft 1.0.6 loads the whole ruleset into a cache as it starts, every element of every set
 * included: 17 MB with upnpd's 5000 mappings present, 36 MB with an admin's 50,000-address
 * blocklist set (xtables-monitor: 1.9 MB in both). `--echo` keeps events from adding to
 * that cache (without it, every element of a named set or map it hears of: 4.2 MB with an empty
 * table, 15.6 MB after 5000 mappings were added). So the backend starts its monitor with its own
 * table empty, right after init, and keeps it running.
 */
export const NFT_MONITOR: RulesetMonitorProgram = {
  name: 'nft monitor',
  file: 'nft',
  args: ['--echo', 'monitor', 'destroy', 'tables'],
  isLoss: isRulesetLoss,
};

/** The first that can run is used. */
export const RULESET_MONITORS: readonly RulesetMonitorProgram[] = [XTABLES_MONITOR, NFT_MONITOR];

/** How long to wait before starting the monitor again after it ended, at first and at most. */
const RESTART_DELAY_MS = { first: 1_000, max: 60_000 } as const;
/** Standard error kept from a monitor, for why it ended. */
const STDERR_KEPT = 2_000;

/** The program could not be run at all: spawn failed, or stdbuf could not find or run it (126, 127). */
function couldNotRun(exit: CommandExit): boolean {
  return exit.error !== undefined || exit.exitCode === 126 || exit.exitCode === 127;
}

/**
 * Watches the ruleset with a long-lived monitor (the first of `programs` that can run) and calls
 * `onChange` for each line that may mean a loss. When the monitor ends it is started again, waiting
 * longer each time it ends soon after starting (the periodic check covers the gap), and `onChange`
 * is called once it runs again: a loss may have gone unreported meanwhile. Returns the function
 * that stops watching.
 */
export function watchRuleset(
  runner: CommandRunner,
  logger: Logger,
  onChange: () => void,
  programs: readonly RulesetMonitorProgram[] = RULESET_MONITORS,
): () => void {
  let stopped = false;
  let child: RunningCommand | undefined;
  let delayMs: number = RESTART_DELAY_MS.first;
  let restartTimer: NodeJS.Timeout | undefined;
  let choice = 0;

  /** Moves on to the next program when there is one (true), after `program` could not run at all. */
  const fallBack = (program: RulesetMonitorProgram, why: string, details: object): boolean => {
    if (choice + 1 >= programs.length) return false;
    choice++;
    logger.info(details, `nftables: cannot run ${program.name} (${why}); watching the ruleset with ${programs[choice]!.name}`);
    return true;
  };
  const begin = (restarted: boolean): void => {
    restartTimer = undefined;
    if (stopped) return;
    const program = programs[choice]!;
    const started = Date.now();
    let stderr = '';
    try {
      child = runner.start(program.file, program.args, { stdout: true });
    } catch (err) {
      if (fallBack(program, messageOf(err), { err })) return begin(restarted);
      logger.warn({ err }, `nftables: cannot run ${program.name}: ${messageOf(err)}; firewall changes are noticed by the periodic check only`);
      return;
    }
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-STDERR_KEPT)));
    if (child.stdout) {
      createInterface({ input: child.stdout }).on('line', (line) => {
        if (program.isLoss(line)) onChange();
      });
    }
    if (restarted) onChange();
    void child.exited.then((exit) => {
      if (stopped) return;
      if (couldNotRun(exit) && fallBack(program, describeExit(exit), { exit })) return begin(restarted);
      // A monitor that ran a while and then ended starts again soon; one that cannot start, ever later.
      delayMs = Date.now() - started > RESTART_DELAY_MS.max ? RESTART_DELAY_MS.first : Math.min(delayMs * 2, RESTART_DELAY_MS.max);
      const lost = program.lostEvents?.(stderr) === true;
      const message = lost
        ? `nftables: ${program.name} lost events (a transaction too large for its socket buffer) and ended; it runs again in ${delayMs} ms, and the firewall is checked then`
        : `nftables: ${program.name} ended (${describeExit(exit)}); firewall changes are noticed by the periodic check until it runs again in ${delayMs} ms`;
      logger[lost ? 'info' : 'warn']({ exit, stderr: stderr.trim() || undefined }, message);
      restartTimer = setTimeout(() => begin(true), delayMs);
      restartTimer.unref();
    });
  };
  begin(false);
  return () => {
    stopped = true;
    if (restartTimer) clearTimeout(restartTimer);
    child?.kill();
  };
}

function describeExit(exit: CommandExit): string {
  return exit.error ?? `exit ${exit.exitCode ?? exit.signal}`;
}
