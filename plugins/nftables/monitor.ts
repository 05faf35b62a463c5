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
 *
 * `--echo`: nft monitor keeps a cache of the ruleset for printing, and without it adds every
 * element of a named set or map it hears of, printed or not (4.2 MB with an empty table, 15.6 MB
 * after 5000 mappings were added; a soak run measured 5.7 -> 12.7 MB in two minutes of churn).
 * With it (nft 1.0.6, src/monitor.c) events change the cache no more: 4.1 MB after those 5000.
 * The cache still holds what exists when nft starts (17 MB with 5000 mappings present), so the
 * backend starts its monitor with its table empty, right after init, and keeps it running.
 */
export const MONITOR_ARGS = ['--echo', 'monitor', 'destroy', 'tables'] as const;

/** How long to wait before starting `nft monitor` again after it ended, at first and at most. */
const RESTART_DELAY_MS = { first: 1_000, max: 60_000 } as const;

/**
 * Watches the ruleset with a long-lived `nft monitor destroy tables` and calls `onChange` for each line that may
 * mean a loss. When nft ends it is started again, waiting longer each time (the periodic check
 * covers the gap). Returns the function that stops watching.
 */
export function watchRuleset(runner: CommandRunner, logger: Logger, onChange: () => void): () => void {
  let stopped = false;
  let child: RunningCommand | undefined;
  let delayMs: number = RESTART_DELAY_MS.first;
  let restartTimer: NodeJS.Timeout | undefined;

  const begin = () => {
    restartTimer = undefined;
    if (stopped) return;
    const started = Date.now();
    child = runner.start('nft', MONITOR_ARGS, { stdout: true });
    child.stderr.resume();
    if (child.stdout) {
      createInterface({ input: child.stdout }).on('line', (line) => {
        if (isRulesetLoss(line)) onChange();
      });
    }
    void child.exited.then((exit) => {
      if (stopped) return;
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
  return () => {
    stopped = true;
    if (restartTimer) clearTimeout(restartTimer);
    child?.kill();
  };
}
