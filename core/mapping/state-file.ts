import { copyFile, mkdir, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import writeFileAtomic from 'write-file-atomic';
import { z } from 'zod';
import { messageOf } from '../errors.js';
import type { Logger } from '../logger.js';
import { PROTOCOLS, type MappingRequest, type PortMapping, type Requester } from './types.js';

/** The file in the state directory that holds the mappings across restarts. */
export const MAPPINGS_FILE = 'mappings.json';
const FORMAT_VERSION = 1;

/** A mapping as stored: its lease ends at a wall-clock time, which outlives the process (the monotonic clock does not). */
export interface StoredMapping extends MappingRequest {
  /** Wall-clock milliseconds since the epoch; null for a permanent lease. */
  readonly expiresAtWallMs: number | null;
  readonly createdBy: Requester;
}

/** A mapping to restore: the lease time it has left when upnpd starts. */
export interface RestoredMapping extends MappingRequest {
  /** Milliseconds left on the lease; null for a permanent one. */
  readonly remainingMs: number | null;
  readonly createdBy: Requester;
}

export interface LoadedMappings {
  readonly mappings: readonly RestoredMapping[];
  /** Leases that ended while upnpd was not running. */
  readonly expired: number;
  /** Entries that are not valid mappings (each is logged), skipped. */
  readonly invalid: number;
}

const storedMappingSchema = z
  .object({
    protocol: z.enum(PROTOCOLS),
    externalPort: z.number().int().min(1).max(65535),
    remoteHost: z.union([z.literal(''), z.ipv4()]),
    internalClient: z.ipv4(),
    internalPort: z.number().int().min(1).max(65535),
    enabled: z.boolean(),
    description: z.string(),
    leaseSeconds: z.number().int().min(0),
    expiresAtWallMs: z.number().int().nullable(),
    createdBy: z.object({ address: z.string(), via: z.string() }),
  })
  .strict();

const stateSchema = z.object({ version: z.literal(FORMAT_VERSION), savedAt: z.string(), mappings: z.array(z.unknown()) });

/**
 * `mappings.json` in the state directory: written whole and atomically (write-file-atomic: a
 * temporary file, fsync, rename), so a crash or power cut leaves the old file or the new one,
 * never half of one. What cannot be read is set aside and reported, never fatal.
 */
export class MappingStateFile {
  readonly path: string;

  constructor(
    readonly directory: string,
    private readonly logger: Logger,
    private readonly wallClock: () => number = Date.now,
  ) {
    this.path = join(directory, MAPPINGS_FILE);
  }

  /** Creates the directory (only root may read it: it names LAN hosts and their ports). */
  async prepare(): Promise<void> {
    await mkdir(this.directory, { recursive: true, mode: 0o700 });
  }

  /** The stored mappings whose leases have not ended. A missing file is an empty table. */
  async load(): Promise<LoadedMappings> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { mappings: [], expired: 0, invalid: 0 };
      throw err;
    }
    let saved: z.output<typeof stateSchema>;
    try {
      saved = stateSchema.parse(JSON.parse(text));
    } catch (err) {
      const aside = `${this.path}.unreadable-${this.timestamp()}`;
      await rename(this.path, aside);
      this.logger.error(
        { file: this.path, movedTo: aside },
        `${this.path} is not a mappings file upnpd can read (${firstLine(err)}); moved it to ${aside} and starting with no mappings`,
      );
      return { mappings: [], expired: 0, invalid: 0 };
    }
    const now = this.wallClock();
    const savedAt = Date.parse(saved.savedAt);
    const mappings: RestoredMapping[] = [];
    let expired = 0;
    let invalid = 0;
    for (const [index, entry] of saved.mappings.entries()) {
      const parsed = storedMappingSchema.safeParse(entry);
      if (!parsed.success) {
        invalid += 1;
        this.logger.warn({ file: this.path, index }, `${this.path}: mappings[${index}] skipped: ${z.prettifyError(parsed.error).replace(/\n/g, ' ')}`);
        continue;
      }
      const { expiresAtWallMs, ...stored } = parsed.data;
      if (expiresAtWallMs !== null && expiresAtWallMs <= now) {
        expired += 1;
        continue;
      }
      mappings.push({ ...stored, remainingMs: expiresAtWallMs === null ? null : leaseLeft(expiresAtWallMs, now, savedAt, stored.leaseSeconds) });
    }
    return { mappings, expired, invalid };
  }

  /** Copies the file next to itself as `mappings.json.<why>-<time>`; returns the copy's path. */
  async keepCopy(why: string): Promise<string> {
    const copy = `${this.path}.${why}-${this.timestamp()}`;
    await copyFile(this.path, copy);
    return copy;
  }

  private timestamp(): string {
    return new Date(this.wallClock()).toISOString().replace(/[:.]/g, '-');
  }

  /** Replaces the file with these mappings; `remainingMs` gives each one's lease left now (null: permanent). */
  async save(mappings: Iterable<PortMapping>, remainingMs: (mapping: PortMapping) => number | null): Promise<void> {
    const now = this.wallClock();
    const stored: StoredMapping[] = [];
    for (const m of mappings) {
      const left = remainingMs(m);
      stored.push({
        protocol: m.protocol,
        externalPort: m.externalPort,
        remoteHost: m.remoteHost,
        internalClient: m.internalClient,
        internalPort: m.internalPort,
        enabled: m.enabled,
        description: m.description,
        leaseSeconds: m.leaseSeconds,
        expiresAtWallMs: left === null ? null : Math.round(now + left),
        createdBy: { address: m.createdBy.address, via: m.createdBy.via },
      });
    }
    const text = `${JSON.stringify({ version: FORMAT_VERSION, savedAt: new Date(now).toISOString(), mappings: stored }, null, 1)}\n`;
    await writeFileAtomic(this.path, text, { mode: 0o600 });
  }
}

/**
 * The lease time left at start. The wall clock can be wrong at boot (no real-time clock, NTP not
 * synced yet): a clock behind the save time would stretch the lease, so it is never longer than
 * what was left when saved, nor than the lease the client asked for.
 */
function leaseLeft(expiresAtWallMs: number, now: number, savedAt: number, leaseSeconds: number): number {
  const limits = [expiresAtWallMs - now];
  if (Number.isFinite(savedAt)) limits.push(expiresAtWallMs - savedAt);
  if (leaseSeconds > 0) limits.push(leaseSeconds * 1000);
  return Math.min(...limits);
}

function firstLine(err: unknown): string {
  return messageOf(err).split('\n')[0]!;
}

/**
 * Keeps the state file in step with the mapping table: a save after each committed change, at most
 * one every `delayMs` (a burst of 5000 adds is a handful of writes), and a last one on `flush`.
 * A failed write is logged and retried with the next change; mappings are never lost for it.
 */
export class MappingStateWriter {
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();
  private dirty = false;
  private stopped = false;

  constructor(
    private readonly file: MappingStateFile,
    private readonly snapshot: () => { mappings: PortMapping[]; remainingMs: (m: PortMapping) => number | null },
    private readonly logger: Logger,
    private readonly delayMs = 1_000,
  ) {}

  /** The table changed: save it soon. */
  changed(): void {
    if (this.stopped) return;
    this.dirty = true;
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      void this.write();
    }, this.delayMs);
  }

  /** Saves now if anything changed since the last save, and stops saving (at shutdown, before the table is emptied). */
  async flush(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.write();
  }

  private write(): Promise<void> {
    this.writing = this.writing.then(async () => {
      if (!this.dirty) return;
      this.dirty = false;
      try {
        const { mappings, remainingMs } = this.snapshot();
        await this.file.save(mappings, remainingMs);
      } catch (err) {
        this.dirty = true;
        this.logger.error({ err, file: this.file.path }, `could not save the mappings to ${this.file.path}: ${messageOf(err)}`);
      }
    });
    return this.writing;
  }
}
