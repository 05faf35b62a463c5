import { randomBytes } from 'node:crypto';
import { BackendError } from 'upnpd';
import { CommandOutput, HelperSlot, endCommand, type CommandExit, type RunningCommand, type SlotProcess } from 'upnpd/backend';

/** What one transaction printed, and whether nft reported an error. */
export interface TransactionResult {
  readonly ok: boolean;
  /** nft's error output for this transaction (it echoes the offending line and marks the place). */
  readonly output: string;
}

export interface NftSessionLimits {
  /** A transaction whose end nft has not reported by then fails, and the process is killed. */
  readonly timeoutMs: number;
  /**
   * nft's interactive mode keeps every line it has read in its history (libedit's has no limit), so
   * after this many transactions, or this much input, the process is replaced by a fresh one.
   */
  readonly maxTransactions: number;
  readonly maxInputBytes: number;
  /**
   * After this long without a transaction the process ends (an idle gateway keeps no helper, and
   * nft's cache of the ruleset goes with it); the next change starts a new one, a few ms.
   */
  readonly idleMs: number;
}

export const DEFAULT_SESSION_LIMITS: NftSessionLimits = { timeoutMs: 60_000, maxTransactions: 2000, maxInputBytes: 4 * 1024 * 1024, idleMs: 10_000 };

/**
 * The environment `nft -i` needs: its interactive mode reads `$HOME/.nft.history` at start and
 * writes every line it has read there at exit, for upnpd a file in root's home that grows by each
 * change set and is read back by each new session. With HOME a path that cannot be a directory,
 * both fail and nft carries on.
 */
export const NFT_SESSION_ENV: Readonly<Record<string, string>> = { HOME: '/dev/null' };

/** The table no one has: listing it makes nft report, in order on stderr, that everything sent before has run. */
const MARKER_PREFIX = 'upnpd_sync_';
/** The line under an echoed command that marks the failing part (`   ^^^^~~~~`), left over from the last marker. */
const PLACE_MARK_LINE = /^[ \t]*[\^~][\^~ \t]*\n/;

/**
 * One long-lived `nft -i` that runs transactions, instead of one `nft -f -` process per change:
 * spawning costs far more than the netlink transaction itself (about 1.6 ms of upnpd's event loop
 * per spawn, plus nft's start-up), and each spawn leaves garbage that keeps the daemon's heap large.
 *
 * nft's interactive mode runs each input line as one transaction (commands joined with `;` commit
 * or fail together) and prints nothing on success. So after each transaction the session lists a
 * table that does not exist, with a name unique to that transaction: nft's error for it, on the
 * same stderr stream and therefore in order, says that the transaction has finished, and whatever
 * stderr held before it is that transaction's own error output.
 *
 * Transactions run one at a time. The process is started on first use, started again after it
 * dies, replaced after `maxTransactions`, and ended after `idleMs` without work (NftSessionLimits).
 */
export class NftSession {
  private readonly slot: HelperSlot<NftProcess>;

  constructor(
    private readonly startNft: () => RunningCommand,
    private readonly limits: NftSessionLimits = DEFAULT_SESSION_LIMITS,
  ) {
    this.slot = new HelperSlot(limits);
  }

  /** Runs a script (commands one per line) as one transaction. Rejects only when nft could not tell the outcome. */
  run(script: string): Promise<TransactionResult> {
    const line = transactionLine(script);
    return this.slot.enqueue(() => this.runNow(line));
  }

  /** Ends the process once queued transactions have run (closing its input, killing it if it lingers). A later `run` starts a new one. */
  close(): Promise<void> {
    return this.slot.close();
  }

  /** The pid of the running nft, if one runs (for tests and the benchmark's accounting). */
  get pid(): number | undefined {
    return this.slot.current?.command.pid;
  }

  private async runNow(line: string, retried = false): Promise<TransactionResult> {
    const nft = this.slot.acquire(() => new NftProcess(this.startNft(), randomBytes(4).toString('hex')));
    try {
      return await nft.transaction(line, this.limits.timeoutMs);
    } catch (err) {
      this.slot.drop(nft);
      nft.command.kill();
      // An nft that had died before this transaction reached it (its exit not yet reported when
      // the line was written) printed nothing for it: the transaction did not run, so it runs
      // once more on a fresh process.
      if (err instanceof NftExitedError && err.silent && !retried) return this.runNow(line, true);
      throw err;
    } finally {
      if (this.slot.current === nft && (nft.transactions >= this.limits.maxTransactions || nft.inputBytes >= this.limits.maxInputBytes)) {
        void this.slot.retire(false);
      }
    }
  }
}

/** nft exited while a transaction was under way; `silent` when it had printed nothing for it. */
class NftExitedError extends BackendError {
  constructor(
    message: string,
    readonly silent: boolean,
  ) {
    super(message);
  }
}

/** One nft process and the stderr it has printed since the last transaction ended. */
class NftProcess implements SlotProcess {
  transactions = 0;
  inputBytes = 0;
  private readonly output: CommandOutput;

  constructor(
    readonly command: RunningCommand,
    private readonly token: string,
  ) {
    this.output = new CommandOutput(command);
  }

  get hasExited(): boolean {
    return this.output.hasExited;
  }

  async transaction(line: string, timeoutMs: number): Promise<TransactionResult> {
    this.transactions += 1;
    const marker = `${MARKER_PREFIX}${this.token}_${this.transactions}`;
    const input = `${line}\nlist table ip ${marker}\n`;
    this.inputBytes += input.length;
    // nft's error for the marker: its message line ("Error: ...", with a location prefix in some
    // versions), then the line it failed on. The line marking the place follows and may arrive in
    // a later chunk; it is dropped from the start of the next transaction's output.
    const echo = `\nlist table ip ${marker}\n`;
    return new Promise<TransactionResult>((resolve, reject) => {
      const settle = (outcome: () => void) => {
        clearTimeout(timer);
        this.output.onProgress = undefined;
        outcome();
      };
      const check = () => {
        const at = this.output.stderr.indexOf(echo);
        const messageStart = at < 0 ? -1 : this.output.stderr.lastIndexOf('\n', at - 1) + 1;
        if (at >= 0 && this.output.stderr.slice(messageStart, at).includes('Error:')) {
          const output = this.output.stderr.slice(0, messageStart).replace(PLACE_MARK_LINE, '');
          this.output.stderr = this.output.stderr.slice(at + echo.length);
          settle(() => resolve({ ok: !/^[^\n]*Error:/m.test(output), output }));
        } else if (this.output.exit) {
          const exit = this.output.exit;
          const printed = this.output.stderr.replace(PLACE_MARK_LINE, '').trim();
          settle(() =>
            reject(new NftExitedError(`nftables: nft -i ${describeExit(exit)} during a transaction${printed ? `: ${printed}` : ''}`, printed === '')),
          );
        }
      };
      const timer = setTimeout(
        () => settle(() => reject(new BackendError(`nftables: nft did not finish a transaction within ${timeoutMs / 1000} s`))),
        timeoutMs,
      );
      this.output.onProgress = check;
      this.command.stdin.write(input);
      check();
    });
  }

  end(timeoutMs: number): Promise<void> {
    return endCommand(this.command, timeoutMs);
  }
}

/** A script of one command per line as one input line: nft -i commits a line's `;`-joined commands together. */
export function transactionLine(script: string): string {
  const commands = script.split('\n').filter((command) => command.trim() !== '');
  const joined = commands.join('; ');
  if (/[\r\n]/.test(joined)) throw new BackendError('nftables: a transaction cannot hold a line break');
  return joined;
}

function describeExit(exit: CommandExit): string {
  if (exit.error) return `could not be started (${exit.error})`;
  return exit.signal ? `was killed by ${exit.signal}` : `exited with status ${exit.exitCode}`;
}
