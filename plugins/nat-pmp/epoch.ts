import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { messageOf, type Logger } from 'upnpd';

/** Where the epoch's starting point is kept in the state directory. */
export const EPOCH_FILE = 'pcp-epoch.json';

interface StoredEpoch {
  readonly version: 1;
  /** Wall-clock milliseconds at which the epoch began. */
  readonly startedAt: number;
  /** The external address the epoch belongs to (a change starts a new epoch). */
  readonly externalAddress: string | null;
}

/**
 * The server's epoch (RFC 6886 §3.6, RFC 6887 §8.5): seconds since the mapping state began. A
 * client that sees it go back, or advance much less than its own clock, concludes the gateway lost
 * its mappings and maps again. So it survives a restart that keeps the state (it is kept in the
 * state directory, next to the mappings), and starts again when the state is lost or the external
 * address changes. Without a state directory it counts from the process start.
 *
 * While the daemon runs it counts on the monotonic clock, so a step of the wall clock (NTP setting
 * the time of a gateway without a real-time clock, a correction back) neither makes it go back nor
 * jump; the wall clock only carries it across a restart (where the start was kept).
 */
export class Epoch {
  /** The monotonic time at which the epoch began (earlier than the process when it was kept across a restart). */
  private origin: number;
  /** Whether the last save failed (logged as an error once, until a save works again). */
  private saveFailing = false;

  private constructor(
    /** Wall-clock milliseconds at which the epoch began, as kept in the file. */
    private startedAt: number,
    private externalAddress: string | null,
    private readonly monotonicNow: () => number,
    private readonly wallNow: () => number,
    private readonly file: string | undefined,
    private readonly logger: Logger,
  ) {
    this.origin = monotonicNow() - (wallNow() - startedAt);
  }

  /** Counts from now on the monotonic clock; nothing is kept. */
  static inMemory(monotonicNow: () => number, logger: Logger): Epoch {
    return new Epoch(monotonicNow(), null, monotonicNow, monotonicNow, undefined, logger);
  }

  /**
   * Reads the epoch kept in `stateDir`, or starts one there, then counts on `monotonicNow`. Never
   * throws: a file that cannot be used starts a new epoch.
   */
  static async persisted(
    stateDir: string,
    logger: Logger,
    wallNow: () => number = Date.now,
    monotonicNow: () => number = () => performance.now(),
  ): Promise<Epoch> {
    const file = join(stateDir, EPOCH_FILE);
    const stored = await readStored(file, logger);
    // A start in the future means the wall clock went back: the count would be wrong, start again.
    if (stored && stored.startedAt <= wallNow()) return new Epoch(stored.startedAt, stored.externalAddress, monotonicNow, wallNow, file, logger);
    const epoch = new Epoch(wallNow(), stored?.externalAddress ?? null, monotonicNow, wallNow, file, logger);
    await epoch.save();
    return epoch;
  }

  /** Seconds since the epoch began (what every response carries). */
  seconds(): number {
    return Math.min(0xffffffff, Math.max(0, Math.floor((this.monotonicNow() - this.origin) / 1000)));
  }

  /**
   * The external address is `address` now: a different one than the epoch belongs to starts a new
   * epoch (RFC 6887 §8.5). Returns whether it did. No address (the WAN is down) changes nothing.
   */
  async externalAddressIs(address: string | undefined): Promise<boolean> {
    if (address === undefined || address === this.externalAddress) return false;
    const first = this.externalAddress === null;
    this.externalAddress = address;
    if (!first) {
      this.startedAt = this.wallNow();
      this.origin = this.monotonicNow();
    }
    await this.save();
    return !first;
  }

  /**
   * Starts a new epoch now: the gateway lost the mappings its clients were told of (RFC 6887 §8.5,
   * RFC 6886 §3.6: clients seeing the epoch start again map once more).
   */
  async startAgain(): Promise<void> {
    this.startedAt = this.wallNow();
    this.origin = this.monotonicNow();
    await this.save();
  }

  private async save(): Promise<void> {
    if (!this.file) return;
    const stored: StoredEpoch = { version: 1, startedAt: this.startedAt, externalAddress: this.externalAddress };
    try {
      await mkdir(join(this.file, '..'), { recursive: true, mode: 0o700 });
      await writeFile(`${this.file}.tmp`, `${JSON.stringify(stored)}\n`, { mode: 0o600 });
      await rename(`${this.file}.tmp`, this.file);
      if (this.saveFailing) this.logger.info({ file: this.file }, `the NAT-PMP/PCP epoch is kept in ${this.file} again`);
      this.saveFailing = false;
    } catch (err) {
      // Once per outage: every save until one works (the start, each address change) would say the same.
      const message = `cannot keep the NAT-PMP/PCP epoch in ${this.file}: ${messageOf(err)}; a restart will look like a reset to clients`;
      if (this.saveFailing) this.logger.debug({ err, file: this.file }, message);
      else this.logger.error({ err, file: this.file }, message);
      this.saveFailing = true;
    }
  }
}

async function readStored(file: string, logger: Logger): Promise<StoredEpoch | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') logger.warn({ err, file }, `cannot read ${file}: ${messageOf(err)}; a new epoch begins`);
    return undefined;
  }
  try {
    const value = JSON.parse(text) as Partial<StoredEpoch>;
    const validAddress = value.externalAddress === null || typeof value.externalAddress === 'string';
    if (value.version === 1 && Number.isSafeInteger(value.startedAt) && validAddress) return value as StoredEpoch;
  } catch {
    // Reported below.
  }
  logger.warn({ file }, `${file} is not an epoch file upnpd wrote; a new epoch begins`);
  return undefined;
}
