import { systemClock, type Clock } from '../clock.js';
import { messageOf } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Pinhole } from './pinhole.js';
import type { LeaseHolder, MappingChanges, MappingStateFile } from './state-file.js';
import { keyString, type PortMapping } from './types.js';

/**
 * Where the mapping lifecycle makes a committed batch durable: called once per batch, after the
 * firewall applied it and before any request of the batch is answered. Rejects when the changes
 * are not on disk.
 */
export interface MappingJournal {
  record(changes: MappingChanges): Promise<void>;
  /** True after a failed write, until a write works again. */
  readonly failing: boolean;
  /** Writes the state whole if the wall clock stepped since it was last written (called now and then, in the mapping queue). */
  rewriteAfterWallClockStep?(): Promise<void>;
}

/**
 * How far the wall clock may move against the monotonic one between writes before the state is
 * written whole again: beyond NTP's slewing, an NTP step or an admin's `date -s`.
 */
export const WALL_CLOCK_STEP_MS = 5_000;

/** What to do with a new mapping while the state cannot be written. */
export type WriteFailurePolicy = 'refuse' | 'best-effort';

/**
 * Whether acknowledged mappings are being kept across restarts: `ok`; `failing` (the last write
 * failed: disk full, read-only, I/O error); `unavailable` (the state directory could not be written
 * at start, nor since: as `failing`, tried again with each change and every few seconds); `off`
 * (no state directory configured).
 */
export interface PersistenceStatus {
  readonly state: 'ok' | 'failing' | 'unavailable' | 'off';
  /** When the state last changed (ISO 8601). */
  readonly since: string;
  readonly lastError?: string;
  readonly directory?: string;
  /** Writes that failed since the start (for the metrics). */
  readonly writeErrors?: number;
}

export interface JournalOptions {
  /** Journal lines after which the next write is a compaction (a new snapshot, the journal emptied). */
  readonly compactAfterRecords: number;
  /** While writes keep failing, the error is logged at most once per this interval. */
  readonly errorLogIntervalMs: number;
}

export const DEFAULT_JOURNAL_OPTIONS: JournalOptions = {
  // A replay of this many lines at start takes well under a second; the snapshot of 5000 mappings is about 1 MB.
  compactAfterRecords: 2_000,
  errorLogIntervalMs: 60_000,
};

/** The committed table, as the journal snapshots it. */
export interface TableSource {
  mappings(): Iterable<PortMapping>;
  /** IPv6 pinholes (absent: none). */
  pinholes?(): Iterable<Pinhole>;
  /** The last pinhole UniqueID given out (absent: 0). */
  lastPinholeId?(): number;
  remainingMs(entry: LeaseHolder): number | null;
}

/**
 * The journal on a MappingStateFile. A batch is one appended, fsync'ed line; every
 * `compactAfterRecords` lines, and after a failed write (lines were lost, so the next write must
 * be whole), the write is a compaction instead: the committed table with the batch over it.
 */
export class DurableMappingJournal implements MappingJournal {
  private records = 0;
  private closed = false;
  private status: PersistenceStatus;
  private lastErrorLog = -Infinity;
  private writeErrors = 0;
  /** Wall-clock minus monotonic time when the state was last written whole: leases end at wall-clock times computed with it. */
  private wallOffset: number;

  constructor(
    private readonly file: MappingStateFile,
    private readonly table: TableSource,
    private readonly logger: Logger,
    private readonly options: JournalOptions = DEFAULT_JOURNAL_OPTIONS,
    private readonly wallClock: () => number = Date.now,
    /** Paces the error log: monotonic, so that a wall clock set back (NTP) cannot silence it for as long. */
    private readonly clock: Pick<Clock, 'now'> = systemClock,
  ) {
    this.status = { state: 'ok', since: this.isoNow(), directory: file.directory };
    this.wallOffset = this.currentWallOffset();
  }

  get failing(): boolean {
    return this.status.state === 'failing' || this.status.state === 'unavailable';
  }

  /**
   * The snapshot at start could not be written (the daemon logged why): `unavailable` until a write
   * works, and meanwhile failing as after any failed write (new mappings as `onWriteFailure` says,
   * the next write a whole snapshot).
   */
  startedUnavailable(err: unknown): void {
    this.writeErrors++;
    this.lastErrorLog = this.clock.now();
    this.status = { state: 'unavailable', since: this.isoNow(), lastError: errorText(err), directory: this.file.directory };
  }

  get persistence(): PersistenceStatus {
    return { ...this.status, writeErrors: this.writeErrors };
  }

  async record(changes: MappingChanges): Promise<void> {
    if (this.closed) return;
    const empty = changes.mapped.length === 0 && changes.unmapped.length === 0 && !changes.pinholes?.length && !changes.closedPinholes?.length;
    if (empty && !this.failing) return;
    try {
      // After a failed write the journal may end in a partial line: never append after it, rewrite both files.
      if (this.failing || this.records >= this.options.compactAfterRecords || this.wallClockStepped()) {
        await this.writeSnapshot(changes);
      } else {
        await this.file
          .append(changes, (m) => this.table.remainingMs(m))
          .then(
            () => (this.records += 1),
            // The journal may end in a partial line now, or be gone (its directory removed): the batch is written whole instead.
            (err: unknown) => {
              this.logger.warn(
                { err, file: this.file.journalPath },
                `cannot append to ${this.file.journalPath} (${messageOf(err)}); writing the whole state instead`,
              );
              return this.writeSnapshot(changes);
            },
          );
      }
    } catch (err) {
      this.failed(err);
      throw err;
    }
    if (this.failing) {
      this.logger.info({ directory: this.file.directory }, `the mapping state is written to ${this.file.directory} again`);
      this.status = { state: 'ok', since: this.isoNow(), directory: this.file.directory };
    }
  }

  /** Writes the committed table as the snapshot and empties the journal (periodically, and at shutdown). */
  async compact(): Promise<void> {
    await this.record({ mapped: [], unmapped: [] }).catch(() => undefined);
    if (this.failing || this.records === 0) return;
    try {
      await this.writeSnapshot({ mapped: [], unmapped: [] });
    } catch (err) {
      this.failed(err);
      throw err;
    }
  }

  /**
   * A wall clock that stepped (NTP setting a gateway that booted at 1970, a correction back) left
   * the stored leases ending at times computed with the old one: a restart would drop them as ended,
   * or keep them too long. Writes them whole with the new one. Between batches, in the mapping queue.
   */
  async rewriteAfterWallClockStep(): Promise<void> {
    if (this.closed || this.failing || !this.wallClockStepped()) return;
    const moved = Math.round((this.currentWallOffset() - this.wallOffset) / 1000);
    this.logger.info({ movedSeconds: moved }, `the wall clock moved by ${moved} s: the mapping state is written again with the leases' new end times`);
    try {
      await this.writeSnapshot({ mapped: [], unmapped: [] });
    } catch (err) {
      this.failed(err);
    }
  }

  /**
   * At shutdown, after the last compaction: records nothing more, so that the rules removed at
   * shutdown are reinstalled at the next start.
   */
  close(): void {
    this.closed = true;
    void this.file.close();
  }

  private async writeSnapshot(changes: MappingChanges): Promise<void> {
    // The directory may have been removed while upnpd runs: created again, as at start.
    await this.file.prepare();
    const byKey = new Map<string, PortMapping>();
    for (const m of this.table.mappings()) byKey.set(keyString(m), m);
    for (const k of changes.unmapped) byKey.delete(keyString(k));
    for (const m of changes.mapped) byKey.set(keyString(m), m);
    const pinholes = new Map<number, Pinhole>();
    for (const p of this.table.pinholes?.() ?? []) pinholes.set(p.id, p);
    for (const id of changes.closedPinholes ?? []) pinholes.delete(id);
    for (const p of changes.pinholes ?? []) pinholes.set(p.id, p);
    const wallOffset = this.currentWallOffset();
    await this.file.save(byKey.values(), (m) => this.table.remainingMs(m), pinholes.values(), this.table.lastPinholeId?.());
    this.records = 0;
    this.wallOffset = wallOffset;
  }

  private currentWallOffset(): number {
    return this.wallClock() - this.clock.now();
  }

  private wallClockStepped(): boolean {
    return Math.abs(this.currentWallOffset() - this.wallOffset) > WALL_CLOCK_STEP_MS;
  }

  private failed(err: unknown): void {
    const error = errorText(err);
    this.writeErrors++;
    if (!this.failing) this.status = { state: 'failing', since: this.isoNow(), lastError: error, directory: this.file.directory };
    else this.status = { ...this.status, lastError: error };
    const now = this.clock.now();
    if (now - this.lastErrorLog < this.options.errorLogIntervalMs) return;
    this.lastErrorLog = now;
    this.logger.error(
      { err, directory: this.file.directory, since: this.status.since },
      `cannot write the mapping state to ${this.file.directory} (${error}); changes are not kept across a restart until a write works again (tried with each change and every few seconds)`,
    );
  }

  private isoNow(): string {
    return new Date(this.wallClock()).toISOString();
  }
}

/** The error with its errno code in front (Node's messages of file system errors begin with it already). */
function errorText(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  const message = messageOf(err);
  return code && !message.startsWith(`${code}:`) ? `${code}: ${message}` : message;
}
