import { BackendError, messageOf } from 'upnpd';
import { CommandOutput, HelperSlot, endCommand, type CommandExit, type CommandResult, type RunningCommand, type SlotProcess } from 'upnpd/backend';

export interface RestoreSessionLimits {
  /** A script whose end iptables-restore has not reported by then fails, and the process is killed. */
  readonly timeoutMs: number;
  /** After this many scripts the process is replaced by a fresh one. */
  readonly maxScripts: number;
  /** After this long without a script the process ends (an idle gateway keeps no helper); the next change starts a new one. */
  readonly idleMs: number;
}

export const DEFAULT_RESTORE_SESSION_LIMITS: RestoreSessionLimits = { timeoutMs: 30_000, maxScripts: 5_000, idleMs: 10_000 };

/**
 * The sections around the scripts, for a chain of nat that stays empty: declared when a process
 * starts (`:CHAIN` under --noflush creates it, or flushes it when it is left over), flushed after
 * each script (its `-v` prints `syncLine` once the script's last COMMIT is done; flushing an empty
 * chain changes nothing in the kernel), deleted when the process is ended. (Creating and deleting a
 * chain after each script instead costs a kernel grace period each time: 13 ms a change.)
 */
function syncSections(chain: string) {
  return {
    declare: `*nat\n:${chain} - [0:0]\nCOMMIT\n`,
    sync: `*nat\n-v -F ${chain}\nCOMMIT\n`,
    remove: `*nat\n-X ${chain}\nCOMMIT\n`,
    syncLine: `Flushing chain \`${chain}'\n`,
  };
}
/** Where iptables-restore names the input line it failed on ("line 7 failed", "Error occurred at line: 7"). */
const LINE_NUMBER = /\bline(:?) (\d+)/g;
const FIRST_LINE_NUMBER = new RegExp(LINE_NUMBER.source);

/** Why the session could not apply a script; `mayHaveRun: false` when the script surely did not run (iptables-restore could not start, or ended before reading it). */
export class RestoreSessionError extends BackendError {
  constructor(
    message: string,
    readonly mayHaveRun: boolean,
  ) {
    super(message);
  }
}

/**
 * One long-lived `iptables-nft-restore --noflush` that applies scripts as they come, instead of
 * one process per change set: starting the program costs more than its nf_tables transaction.
 *
 * iptables-restore commits each table's section at its COMMIT line as it reads it, prints nothing
 * on success, and exits at the first error. Its standard output is line-buffered through
 * `stdbuf -oL` (the caller starts it so). After each script comes a section whose `-v -F` of an
 * empty chain of upnpd's prints a line as it is read, so once the script's last COMMIT is done
 * (syncSections); a failure ends the process, and
 * the line number in its message (counted over everything it has read) says whose it was. A
 * script ends with the same result as a one-shot `iptables-restore --noflush` reading it alone:
 * exit status 0, or the status and the error output with line numbers counted from the script's
 * first line.
 *
 * Only for iptables-nft: the section after each script is one more nf_tables transaction, cheap;
 * under x_tables each COMMIT replaces the whole table, which would double the cost of a change.
 */
export class RestoreSession {
  private readonly slot: HelperSlot<RestoreProcess>;

  constructor(
    private readonly startRestore: () => RunningCommand,
    /** The nat chain the session keeps (empty) while its process runs: its flush marks the end of each script. */
    private readonly syncChain: string,
    private readonly limits: RestoreSessionLimits = DEFAULT_RESTORE_SESSION_LIMITS,
  ) {
    this.slot = new HelperSlot(limits);
  }

  /** Applies `script` (table sections, each ending with COMMIT). Rejects only when the outcome cannot be told. */
  run(script: string): Promise<CommandResult> {
    return this.slot.enqueue(() => this.runNow(script.endsWith('\n') ? script : `${script}\n`));
  }

  /** Ends the process once queued scripts have run. A later `run` starts a new one. */
  close(): Promise<void> {
    return this.slot.close();
  }

  /** The pid of the running iptables-restore, if one runs (for tests). */
  get pid(): number | undefined {
    return this.slot.current?.command.pid;
  }

  private start(): RunningCommand {
    try {
      return this.startRestore();
    } catch (err) {
      throw new RestoreSessionError(`iptables-restore could not be started: ${messageOf(err)}`, false);
    }
  }

  private async runNow(script: string, retried = false): Promise<CommandResult> {
    const restore = this.slot.acquire(() => new RestoreProcess(this.start(), this.syncChain));
    try {
      const outcome = await restore.apply(script, this.limits.timeoutMs);
      // A process that ended before it read the script (an earlier sync section failed late):
      // the script did not run, so it runs once more on a fresh process.
      if (outcome === 'not run') {
        this.slot.drop(restore);
        if (retried) throw new RestoreSessionError('iptables-restore ended before reading the change twice in a row', false);
        return await this.runNow(script, true);
      }
      if (outcome.exitCode !== 0 || restore.hasExited) this.slot.drop(restore);
      return outcome;
    } catch (err) {
      this.slot.drop(restore);
      restore.command.kill();
      throw err;
    } finally {
      if (this.slot.current === restore && restore.scripts >= this.limits.maxScripts) void this.slot.retire(false);
    }
  }
}

/** One iptables-restore process: how many input lines it has been given, and what it has printed since. */
class RestoreProcess implements SlotProcess {
  scripts = 0;
  private linesWritten = 0;
  private readonly output: CommandOutput;
  private readonly sections: ReturnType<typeof syncSections>;

  constructor(
    readonly command: RunningCommand,
    syncChain: string,
  ) {
    if (!command.stdout) throw new RestoreSessionError('the restore session needs the output of iptables-restore', false);
    this.output = new CommandOutput(command);
    this.sections = syncSections(syncChain);
    this.write(this.sections.declare);
  }

  /** Writes input, counting its lines as iptables-restore numbers them. */
  private write(input: string): void {
    this.linesWritten += lineCount(input);
    this.command.stdin.write(input);
  }

  get hasExited(): boolean {
    return this.output.hasExited;
  }

  /** The script's result, or 'not run' when the process had ended before reading it. */
  apply(script: string, timeoutMs: number): Promise<CommandResult | 'not run'> {
    this.scripts += 1;
    const first = this.linesWritten + 1;
    const syncFirst = first + lineCount(script);
    const { sync, syncLine } = this.sections;
    return new Promise((resolve, reject) => {
      const settle = (outcome: () => void) => {
        clearTimeout(timer);
        this.output.onProgress = undefined;
        outcome();
      };
      const check = () => {
        const synced = this.output.stdout.indexOf(syncLine);
        if (synced >= 0) {
          this.output.stdout = this.output.stdout.slice(synced + syncLine.length);
          const warnings = this.output.stderr;
          this.output.stderr = '';
          settle(() => resolve({ exitCode: 0, stdout: '', stderr: warnings }));
        } else if (this.output.exit) {
          const exit = this.output.exit;
          const failed = firstLineNumber(this.output.stderr);
          if (exit.error) return settle(() => reject(new RestoreSessionError(`iptables-restore could not be started: ${exit.error}`, false)));
          if (failed !== undefined && failed < first) return settle(() => resolve('not run'));
          // Failed in the sync section: the script's own COMMITs were all done before it was read.
          if (failed !== undefined && failed >= syncFirst) return settle(() => resolve({ exitCode: 0, stdout: '', stderr: '' }));
          const stderr = this.output.stderr.replace(LINE_NUMBER, (_, colon: string, n: string) => `line${colon} ${Number(n) - first + 1}`);
          settle(() => resolve({ exitCode: exit.exitCode ?? -1, stdout: '', stderr: stderr || describeExit(exit) }));
        }
      };
      const timer = setTimeout(
        () => settle(() => reject(new RestoreSessionError(`iptables-restore did not finish a change within ${timeoutMs / 1000} s`, true))),
        timeoutMs,
      );
      this.output.onProgress = check;
      this.write(script + sync);
      check();
    });
  }

  /** Deletes the sync chain and ends the process (closing its input; killed if it lingers). */
  end(timeoutMs: number): Promise<void> {
    if (!this.hasExited) this.write(this.sections.remove);
    return endCommand(this.command, timeoutMs);
  }
}

function lineCount(text: string): number {
  let count = 0;
  for (let at = text.indexOf('\n'); at >= 0; at = text.indexOf('\n', at + 1)) count += 1;
  return count;
}

function firstLineNumber(stderr: string): number | undefined {
  const match = FIRST_LINE_NUMBER.exec(stderr);
  return match ? Number(match[2]) : undefined;
}

function describeExit(exit: CommandExit): string {
  return exit.signal ? `iptables-restore was killed by ${exit.signal}` : `iptables-restore exited with status ${exit.exitCode}`;
}
