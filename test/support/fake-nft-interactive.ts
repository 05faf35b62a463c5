import { PassThrough } from 'node:stream';
import type { CommandExit, RunningCommand } from '../../core/command-runner.js';
import { readLines } from './line-input.js';

/** What the fake does with one transaction line: its error output (nft prints nothing on success). */
export type TransactionAnswer = { readonly stderr?: string } | 'hang' | 'die' | 'vanish';

/**
 * `nft -i` as upnpd drives it, in memory: each input line is a transaction answered by `answer`,
 * and `list table` of a table that does not exist gets nft's error, echoing the line. Closing
 * stdin ends it with status 0. 'hang' never answers again; 'die' exits with status 1 at that line,
 * saying why; 'vanish' is killed at that line and prints nothing (an nft that had died before).
 */
export class FakeInteractiveNft implements RunningCommand {
  readonly stdin = new PassThrough();
  readonly stderr = new PassThrough();
  readonly exited: Promise<CommandExit>;
  readonly lines: string[] = [];
  private exit!: (exit: CommandExit) => void;
  private ended = false;
  /** After a 'hang', nft reads no further line. */
  private stuck = false;
  private markerPending = false;
  /** Whether a line arrived while the answer to a marker was still due (a session must wait for it). */
  overlapped = false;

  constructor(
    readonly pid: number,
    private readonly answer: (line: string) => TransactionAnswer = () => ({}),
    /** How other nft versions and pipes may present the marker's error: a location before "Error:", the place line in a later chunk. */
    private readonly style: { readonly locationPrefix?: boolean; readonly placeLineLater?: boolean; readonly markerDelayMs?: number } = {},
  ) {
    this.exited = new Promise((resolve) => {
      this.exit = resolve;
    });
    readLines(
      this.stdin,
      (line) => this.read(line),
      () => !this.ended && !this.stuck,
    );
    this.stdin.on('end', () => this.end({ exitCode: 0 }));
  }

  kill(): void {
    this.end({ signal: 'SIGKILL' });
  }

  /** The transactions it received (the sync markers left out). */
  transactions(): string[] {
    return this.lines.filter((line) => !/^list table ip upnpd_sync_/.test(line));
  }

  private read(line: string): void {
    this.lines.push(line);
    if (this.markerPending) this.overlapped = true;
    if (/^list table ip upnpd_sync_/.test(line)) {
      const place = '              ^^^^^^^^^^^^^^^^^^^^^^^^^^\n';
      const answer = () => {
        this.markerPending = false;
        this.stderr.write(`${this.style.locationPrefix ? '<cmdline>:1:15-40: ' : ''}Error: No such file or directory\n${line}\n`);
        if (this.style.placeLineLater) setTimeout(() => this.stderr.write(place), 5);
        else this.stderr.write(place);
      };
      if (this.style.markerDelayMs) {
        this.markerPending = true;
        setTimeout(answer, this.style.markerDelayMs);
      } else {
        answer();
      }
      return;
    }
    const answer = this.answer(line);
    if (answer === 'hang') {
      this.stuck = true;
      return;
    }
    if (answer === 'vanish') {
      this.end({ signal: 'SIGKILL' });
      return;
    }
    if (answer === 'die') {
      this.stderr.write('nft: out of memory\n');
      this.end({ exitCode: 1 });
      return;
    }
    if (answer.stderr) this.stderr.write(answer.stderr);
  }

  private end(exit: CommandExit): void {
    if (this.ended) return;
    this.ended = true;
    this.stderr.end();
    this.exit(exit);
  }
}
