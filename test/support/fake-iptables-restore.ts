import { PassThrough } from 'node:stream';
import type { CommandExit, RunningCommand } from '../../core/command-runner.js';
import { readLines } from './line-input.js';

/**
 * `stdbuf -oL iptables-nft-restore --noflush` as the iptables backend's session drives it, in
 * memory. It reads line by line and counts lines as iptables-restore does (from 1, over all it has
 * read); `COMMIT` commits the section's lines (kept in `committed`); `-v -F CHAIN` prints
 * "Flushing chain `CHAIN'" at once; a line `fails` picks makes it exit with status 1 and
 * iptables-nft-restore's message naming that line, or with 'stall' stops it reading there (a test
 * then ends it with `die`, as a commit the kernel refused late would). Closing stdin ends it with
 * status 0.
 */
export class FakeIptablesRestore implements RunningCommand {
  readonly stdin = new PassThrough();
  readonly stdout = new PassThrough();
  readonly stderr = new PassThrough();
  readonly exited: Promise<CommandExit>;
  /** The lines of every section committed, in order, section headers and COMMIT left out. */
  readonly committed: string[] = [];
  lineNumber = 0;
  private section: string[] = [];
  private exit!: (exit: CommandExit) => void;
  private ended = false;
  private stalled = false;

  constructor(
    readonly pid: number,
    private readonly fails: (line: string, lineNumber: number) => boolean | 'stall' = () => false,
  ) {
    this.exited = new Promise((resolve) => {
      this.exit = resolve;
    });
    readLines(
      this.stdin,
      (line) => this.read(line),
      () => !this.ended && !this.stalled,
    );
    this.stdin.on('end', () => this.end({ exitCode: 0 }));
  }

  kill(): void {
    this.end({ signal: 'SIGKILL' });
  }

  /** Ends as a process that died on its own would, between two scripts. */
  die(stderr: string): void {
    this.stderr.write(stderr);
    this.end({ exitCode: 1 });
  }

  private read(line: string): void {
    this.lineNumber += 1;
    const fails = this.fails(line, this.lineNumber);
    if (fails === 'stall') {
      this.stalled = true;
      return;
    }
    if (fails) {
      this.stderr.write(`iptables-nft-restore: line ${this.lineNumber} failed\n`);
      this.end({ exitCode: 1 });
      return;
    }
    if (line.startsWith('*')) {
      this.section = [];
    } else if (line === 'COMMIT') {
      this.committed.push(...this.section);
      this.section = [];
    } else {
      this.section.push(line);
      const flushed = /^-v -F (\S+)$/.exec(line);
      if (flushed) this.stdout.write(`Flushing chain \`${flushed[1]}'\n`);
    }
  }

  private end(exit: CommandExit): void {
    if (this.ended) return;
    this.ended = true;
    this.exit(exit);
  }
}
