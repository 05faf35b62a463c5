import { createInterface } from 'node:readline';
import { messageOf, type Logger } from 'upnpd';
import type { CommandRunner, RunningCommand } from 'upnpd/backend';

/**
 * A line of `nft monitor` that may mean upnpd's rules are gone: a table, chain, rule, set or map
 * deleted or flushed (an admin's reload, `flush ruleset`). Element changes are left out: upnpd
 * makes those itself with every change set, and a check after each would cost the hot path.
 */
const RULESET_LOSS = /^(?:delete|flush) (?:table|chain|rule|set|map|ruleset)\b/;

export function isRulesetLoss(line: string): boolean {
  return RULESET_LOSS.test(line);
}

/**
 * Only deleted tables are reported (`flush ruleset`, an admin's table reloaded as fw4 does): nft
 * then formats no line for the elements every change set adds, which measurably slowed a burst of
 * adds when all events were printed. Losses below table level (a jump deleted by hand) are left to
 * the periodic check.
 */
export const MONITOR_ARGS = ['monitor', 'destroy', 'tables'] as const;

/** How long to wait before starting `nft monitor` again after it ended, at first and at most. */
const RESTART_DELAY_MS = { first: 1_000, max: 60_000 } as const;

/**
 * `nft monitor` keeps a cache of the ruleset that grows with every change it sees, printed or not
 * (the soak run measured 5.7 -> 12.7 MB in two minutes of churn), so it is replaced this often.
 */
export const MONITOR_RECYCLE_MS = 5 * 60_000;

/**
 * A burst of element changes (mappings added or removed) also grows that cache: with 5000
 * mappings added one change set each, nft monitor held 16.9 MB, where one started afterwards holds
 * about 9 (it reads the ruleset once at start). So after `afterChanges` element changes it is
 * replaced once they have been quiet for `quietMs`.
 */
export const MONITOR_BURST_RECYCLE = { afterChanges: 500, quietMs: 10_000 } as const;

export interface MonitorRecycling {
  /** Replaced this often however quiet the ruleset is. */
  readonly everyMs: number;
  /** Replaced once this many element changes were made (RulesetWatch.changed) and then `quietMs` passed without one. */
  readonly afterChanges: number;
  readonly quietMs: number;
}

export interface RulesetWatch {
  /** Tells the watch that upnpd changed this many elements (for MonitorRecycling.afterChanges). */
  readonly changed: (count: number) => void;
  readonly stop: () => void;
}

/**
 * Watches the ruleset with a long-lived `nft monitor destroy tables` and calls `onChange` for each line that may
 * mean a loss. When nft ends it is started again, waiting longer each time (the periodic check
 * covers the gap).
 */
export function watchRuleset(
  runner: CommandRunner,
  logger: Logger,
  onChange: () => void,
  recycling: MonitorRecycling = { everyMs: MONITOR_RECYCLE_MS, ...MONITOR_BURST_RECYCLE },
): RulesetWatch {
  let stopped = false;
  let child: RunningCommand | undefined;
  let delayMs: number = RESTART_DELAY_MS.first;
  let restartTimer: NodeJS.Timeout | undefined;
  let recycleTimer: NodeJS.Timeout | undefined;
  let quietTimer: NodeJS.Timeout | undefined;
  let changesSeen = 0;
  let recycle: (() => void) | undefined;

  const begin = () => {
    restartTimer = undefined;
    if (stopped) return;
    const started = Date.now();
    const current = runner.start('nft', MONITOR_ARGS, { stdout: true });
    child = current;
    changesSeen = 0;
    let recycled = false;
    recycle = () => {
      // Replaced at once (the periodic check covers the instant in between).
      if (recycled) return;
      recycled = true;
      current.kill();
    };
    recycleTimer = setTimeout(recycle, recycling.everyMs);
    recycleTimer.unref();
    child.stderr.resume();
    if (child.stdout) {
      createInterface({ input: child.stdout }).on('line', (line) => {
        if (isRulesetLoss(line)) onChange();
      });
    }
    void child.exited.then((exit) => {
      clearTimeout(recycleTimer);
      clearTimeout(quietTimer);
      recycle = undefined;
      if (stopped) return;
      if (recycled) return begin();
      // A monitor that ran a while and then ended starts again soon; one that cannot start, ever later.
      delayMs = Date.now() - started > RESTART_DELAY_MS.max ? RESTART_DELAY_MS.first : Math.min(delayMs * 2, RESTART_DELAY_MS.max);
      logger.warn(
        { exit },
        `nftables: nft monitor ended (${exit.error ?? `exit ${exit.exitCode ?? exit.signal}`}); firewall changes are noticed by the periodic check until it runs again in ${delayMs} ms`,
      );
      restartTimer = setTimeout(begin, delayMs);
      restartTimer.unref();
    });
  };
  try {
    begin();
  } catch (err) {
    logger.warn({ err }, `nftables: cannot run nft monitor: ${messageOf(err)}`);
  }
  return {
    changed(count) {
      if (stopped || !recycle) return;
      changesSeen += count;
      if (changesSeen < recycling.afterChanges) return;
      clearTimeout(quietTimer);
      quietTimer = setTimeout(() => recycle?.(), recycling.quietMs);
      quietTimer.unref();
    },
    stop() {
      stopped = true;
      if (restartTimer) clearTimeout(restartTimer);
      clearTimeout(recycleTimer);
      clearTimeout(quietTimer);
      child?.kill();
    },
  };
}
